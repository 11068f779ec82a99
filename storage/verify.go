package storage

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// ReadData downloads every indexed pack and checks every byte.
	ReadData bool
	// ReadDataSubset, if 0 < p ≤ 1, downloads only about this fraction of
	// the packs (ReadData need not be set), chosen deterministically from
	// Seed: rotate the seed to cover everything over several runs.
	ReadDataSubset float64
	Seed           uint64
	// Progress, if set, is called as Verify advances.
	Progress func(VerifyProgress)
	// NoDamageRecords: do not record the damaged blobs found (by default
	// Verify records them, so that no backup deduplicates against them).
	NoDamageRecords bool
}

// VerifyProgress reports one phase of Verify: "packs", "read", "snapshots".
type VerifyProgress struct {
	Phase       string
	Done, Total int
	Bytes       int64 // pack bytes read so far
}

// Problem kinds.
const (
	ProblemMissing            = "missing"             // an indexed pack does not exist
	ProblemCorrupt            = "corrupt"             // bytes that do not authenticate, hash or parse
	ProblemSize               = "size"                // a pack's size differs from the index
	ProblemUnindexedBlob      = "unindexed-blob"      // a snapshot references a blob no index lists
	ProblemUnreadableSnapshot = "unreadable-snapshot" // a snapshot or its file list does not load
	ProblemDamaged            = "damaged"             // the indexed copy of a blob is recorded damaged (damaged/) and no good copy is indexed
)

// Problem is one piece of repository damage. Object is a pack key
// (data/… or meta/…), a blob id (64 hex characters; Detail names its
// pack) or a snapshot key (snapshots/…).
type Problem struct {
	Object  string   `json:"object"`
	Kind    string   `json:"kind"`
	Detail  string   `json:"detail"`
	Backups []string `json:"backups,omitempty"` // backups this breaks, sorted
}

// VerifyReport is what Verify checked and found.
type VerifyReport struct {
	Snapshots int `json:"snapshots"`
	// LogArchives are the log archives checked as snapshots are; a
	// problem of one names it as logs/<id> among the backups it breaks.
	LogArchives int       `json:"log_archives"`
	Packs       int       `json:"packs"` // indexed packs
	Blobs       int       `json:"blobs"` // indexed blobs
	PacksRead   int       `json:"packs_read"`
	BytesRead   int64     `json:"bytes_read"`
	Problems    []Problem `json:"problems"`
}

// problemSet collects problems and which blobs each one breaks, so that
// the snapshot pass can name the backups that reference them.
type problemSet struct {
	mu      sync.Mutex
	list    []Problem
	backups []map[string]bool
	byBlob  map[ObjectID][]int // blob → problems it is part of
	unindex map[ObjectID]int   // unindexed blob → its problem
}

func newProblemSet() *problemSet {
	return &problemSet{byBlob: map[ObjectID][]int{}, unindex: map[ObjectID]int{}}
}

// add records p, broken by blobs (the caller holds no lock).
func (ps *problemSet) add(p Problem, blobs []ObjectID) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.addLocked(p, blobs)
}

// addFor records p, which breaks backup.
func (ps *problemSet) addFor(p Problem, backup string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.backups[ps.addLocked(p, nil)][backup] = true
}

func (ps *problemSet) addLocked(p Problem, blobs []ObjectID) int {
	i := len(ps.list)
	ps.list = append(ps.list, p)
	ps.backups = append(ps.backups, map[string]bool{})
	for _, b := range blobs {
		ps.byBlob[b] = append(ps.byBlob[b], i)
	}
	return i
}

// bad reports whether blob b is already part of a problem.
func (ps *problemSet) bad(b ObjectID) bool {
	_, ok := ps.byBlob[b]
	return ok
}

// known is bad for callers that hold no lock.
func (ps *problemSet) known(b ObjectID) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.bad(b)
}

func (ps *problemSet) result() []Problem {
	out := make([]Problem, len(ps.list))
	for i, p := range ps.list {
		for b := range ps.backups[i] {
			p.Backups = append(p.Backups, b)
		}
		sort.Strings(p.Backups)
		out[i] = p
	}
	slices.SortStableFunc(out, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Object, b.Object))
	})
	return out
}

// Verify checks the repository and reports damage in Problems; its error
// is only for failing to run (listing fails, the context ends).
//
// Checks: every snapshot decodes and its file lists load; every tree blob
// and chunk a snapshot references is indexed ("unindexed-blob"); every
// indexed pack exists ("missing") with the size the index says ("size").
// With ReadData or ReadDataSubset, each selected pack is downloaded whole:
// its name must be the SHA-256 of its bytes, its footer must authenticate
// and agree with the index, and every blob in it must authenticate and
// hash to its id ("corrupt"). Each problem names the backups it breaks.
func (r *Repository) Verify(ctx context.Context, opts VerifyOptions) (VerifyReport, error) {
	var rep VerifyReport
	progress := func(p VerifyProgress) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	if opts.NoDamageRecords {
		ctx = withoutDamageRecords(ctx)
	}
	roots, err := r.listRoots(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	segs, plan, err := r.resetIndex(ctx)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			// A damaged index segment or plan is damage, but nothing else
			// can be checked without the index.
			return rep, fmt.Errorf("verify: cannot load the index: %w", err)
		}
		return rep, fmt.Errorf("verify: %w", err)
	}
	_, doomed := plan.doomed()
	vidx, err := segs.build(doomed)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	rep.Blobs = vidx.Len()

	type vpack struct {
		typ   BlobType
		size  int64
		blobs []ObjectID
	}
	packs := map[ObjectID]*vpack{}
	for id, loc := range vidx.All() {
		p := packs[loc.Pack]
		if p == nil {
			p = &vpack{typ: BlobType(loc.PackType), size: int64(loc.PackSize)}
			packs[loc.Pack] = p
		}
		p.blobs = append(p.blobs, id)
	}
	rep.Packs = len(packs)
	listed := map[string]int64{}
	for _, prefix := range []string{dataPrefix, metaPrefix} {
		err := r.be.List(ctx, prefix, func(oi backend.ObjectInfo) error {
			listed[oi.Key] = oi.Size
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("verify: list packs: %w", err)
		}
	}

	ps := newProblemSet()
	order := make([]ObjectID, 0, len(packs))
	for id := range packs {
		order = append(order, id)
	}
	sortIDs(order)
	var toRead []ObjectID
	for i, id := range order {
		progress(VerifyProgress{Phase: "packs", Done: i, Total: len(order)})
		p := packs[id]
		key := packKey(p.typ, id)
		size, ok := listed[key]
		switch {
		case !ok:
			ps.add(Problem{Object: key, Kind: ProblemMissing, Detail: fmt.Sprintf("indexed pack with %d blobs does not exist", len(p.blobs))}, p.blobs)
		case p.size != 0 && size != p.size:
			ps.add(Problem{Object: key, Kind: ProblemSize, Detail: fmt.Sprintf("%d bytes, the index says %d", size, p.size)}, p.blobs)
		case selected(opts, id):
			toRead = append(toRead, id)
		}
	}

	// Read the selected packs.
	if len(toRead) > 0 {
		var (
			mu   sync.Mutex
			done int
		)
		_ = pool.Each(ctx, 4, slices.Values(toRead), func(_ context.Context, id ObjectID) error {
			p := packs[id]
			n := r.checkPackData(ctx, packKey(p.typ, id), id, p.size, p.blobs, vidx, ps)
			mu.Lock()
			defer mu.Unlock()
			done++
			rep.PacksRead++
			rep.BytesRead += n
			progress(VerifyProgress{Phase: "read", Done: done, Total: len(toRead), Bytes: rep.BytesRead})
			return nil
		})
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("verify: %w", err)
		}
	}
	r.checkDamageRecords(ctx, vidx, segs.damaged, setOf(toRead), ps, opts)

	// Snapshots: decode, load file lists, check references, and name the
	// backups each problem breaks.
	var (
		mu   sync.Mutex
		done int
	)
	_ = pool.Each(ctx, 8, slices.Values(roots), func(_ context.Context, root gcRoot) error {
		ok := r.verifySnapshot(ctx, root, vidx, ps)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ok && root.log:
			rep.LogArchives++
		case ok:
			rep.Snapshots++
		}
		done++
		progress(VerifyProgress{Phase: "snapshots", Done: done, Total: len(roots), Bytes: rep.BytesRead})
		return nil
	})
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	rep.Problems = ps.result()
	if !opts.NoDamageRecords {
		if err := r.recordProblems(ctx, rep.Problems); err != nil {
			return rep, fmt.Errorf("verify: %w", err)
		}
	}
	return rep, nil
}

// rootNodes reads a snapshot's nodes, or a log archive's one node. A
// log archive is named logs/<id> among the backups its problems break.
func (r *Repository) rootNodes(ctx context.Context, root gcRoot) (id, key string, nodes []NodeManifest, err error) {
	if root.log {
		key = logArchiveKey(root.id)
		a, err := r.GetLogArchive(ctx, root.id)
		if err != nil {
			return key, key, nil, err
		}
		return key, key, []NodeManifest{a.Node}, nil
	}
	m, err := r.GetManifest(ctx, root.id)
	if err != nil {
		return root.id, snapshotKey(root.id), nil, err
	}
	return root.id, snapshotKey(root.id), m.Nodes, nil
}

// checkDamageRecords reports the blobs whose indexed copy is recorded
// damaged and that no check of this run found bad already. A record whose
// copy was just read and verified is wrong (a transient read error, say)
// and is removed, unless NoDamageRecords.
func (r *Repository) checkDamageRecords(ctx context.Context, vidx *index.Index, damaged damageSet, read map[ObjectID]bool, ps *problemSet, opts VerifyOptions) {
	for id, loc := range vidx.All() {
		if !damaged.at(loc) || ps.known(id) {
			continue
		}
		key := packKey(BlobType(loc.PackType), loc.Pack)
		if !read[loc.Pack] {
			ps.add(Problem{Object: ObjectID(id).String(), Kind: ProblemDamaged,
				Detail: fmt.Sprintf("in pack %s, recorded damaged; no good copy is indexed (back the content up again, or run repair packs)", key)}, []ObjectID{id})
			continue
		}
		if !opts.NoDamageRecords {
			if err := r.be.Delete(ctx, damagedKey(copyAt(loc))); err == nil || errors.Is(err, backend.ErrNotFound) {
				r.mu.Lock()
				delete(r.damaged, copyAt(loc))
				r.mu.Unlock()
			}
		}
	}
}

// recordProblems records the blobs of pack and blob problems as damaged.
func (r *Repository) recordProblems(ctx context.Context, problems []Problem) error {
	byReason := map[string][]ObjectID{}
	var byPack map[ObjectID][]ObjectID // built once, if a whole pack is bad
	r.mu.Lock()
	for _, p := range problems {
		switch p.Kind {
		case ProblemMissing, ProblemCorrupt, ProblemSize:
		default:
			continue
		}
		reason := "verify: " + p.Kind + ": " + p.Detail
		if id, err := ParseObjectID(p.Object); err == nil {
			byReason[reason] = append(byReason[reason], id)
		} else if _, pid, ok := parsePackKey(p.Object); ok {
			if byPack == nil {
				byPack = map[ObjectID][]ObjectID{}
				for b, loc := range r.idx.All() {
					byPack[loc.Pack] = append(byPack[loc.Pack], b)
				}
			}
			byReason[reason] = append(byReason[reason], byPack[pid]...)
		}
	}
	r.mu.Unlock()
	for reason, ids := range byReason {
		if err := r.MarkDamaged(ctx, ids, reason); err != nil {
			return err
		}
	}
	return nil
}

// selected reports whether pack id is read: deterministically from the
// seed, so that a subset is reproducible and a new seed picks others.
func selected(opts VerifyOptions, id ObjectID) bool {
	if opts.ReadDataSubset > 0 {
		if opts.ReadDataSubset >= 1 {
			return true
		}
		var b [8 + 32]byte
		binary.LittleEndian.PutUint64(b[:8], opts.Seed)
		copy(b[8:], id[:])
		h := sha256.Sum256(b[:])
		return float64(binary.LittleEndian.Uint64(h[:8]))/math.MaxUint64 < opts.ReadDataSubset
	}
	return opts.ReadData
}

// checkPackData downloads one pack and checks every byte of it; it returns
// the number of bytes read.
func (r *Repository) checkPackData(ctx context.Context, key string, id ObjectID, size int64, located []ObjectID, vidx *index.Index, ps *problemSet) int64 {
	data, err := r.be.Get(ctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		kind := ProblemCorrupt
		if errors.Is(err, backend.ErrNotFound) {
			kind = ProblemMissing
		}
		ps.add(Problem{Object: key, Kind: kind, Detail: fmt.Sprintf("cannot read: %v", err)}, located)
		return 0
	}
	n := int64(len(data))
	if size != 0 && n != size {
		ps.add(Problem{Object: key, Kind: ProblemSize, Detail: fmt.Sprintf("read %d bytes, the index says %d", n, size)}, located)
		return n
	}
	found := false
	var header []byte
	if len(data) >= pack.HeaderSize {
		header = data[:pack.HeaderSize]
	}
	var entries []pack.Entry
	if header == nil {
		err = fmt.Errorf("%d bytes cannot hold a header", len(data))
	} else {
		entries, err = pack.ReadFooter(r.data, header, data, n)
	}
	if err != nil {
		ps.add(Problem{Object: key, Kind: ProblemCorrupt, Detail: fmt.Sprintf("footer: %v", err)}, located)
		return n
	}
	here := setOf(located)
	footer := make(map[ObjectID]pack.Entry, len(entries))
	for _, e := range entries {
		footer[e.ID] = e
	}
	for _, b := range located {
		loc, _ := vidx.Lookup(b)
		fe, ok := footer[b]
		if !ok {
			ps.add(Problem{Object: b.String(), Kind: ProblemCorrupt, Detail: fmt.Sprintf("indexed in pack %s, whose footer does not list it", key)}, []ObjectID{b})
			found = true
		} else if fe != loc.Entry(b) {
			ps.add(Problem{Object: b.String(), Kind: ProblemCorrupt, Detail: fmt.Sprintf("pack %s: the footer says %+v, the index %+v", key, fe, loc.Entry(b))}, []ObjectID{b})
			found = true
		}
	}
	for _, e := range entries {
		if _, err := pack.OpenBlob(r.data, e, data[e.Offset:e.End()]); err != nil {
			found = true
			// A copy the index does not locate here is dead weight (a good
			// copy elsewhere superseded it); gc drops it.
			if here[e.ID] && !ps.known(e.ID) {
				ps.add(Problem{Object: ObjectID(e.ID).String(), Kind: ProblemCorrupt, Detail: fmt.Sprintf("in pack %s: %v", key, err)}, []ObjectID{e.ID})
			}
		}
	}
	if !found && ObjectID(sha256.Sum256(data)) != id {
		ps.add(Problem{Object: key, Kind: ProblemCorrupt, Detail: "content does not hash to the pack's name"}, located)
	}
	return n
}

// verifySnapshot checks one snapshot (or log archive) and attributes
// problems to it. It returns false if it was deleted meanwhile.
func (r *Repository) verifySnapshot(ctx context.Context, root gcRoot, vidx *index.Index, ps *problemSet) bool {
	id, key, nodes, err := r.rootNodes(ctx, root)
	if errors.Is(err, ErrNotFound) {
		return false
	}
	if err != nil {
		if ctx.Err() == nil {
			ps.addFor(Problem{Object: key, Kind: ProblemUnreadableSnapshot, Detail: err.Error()}, id)
		}
		return true
	}
	ref := func(b ObjectID) (ok bool) {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		if !vidx.Has(b) {
			i, seen := ps.unindex[b]
			if !seen {
				i = ps.addLocked(Problem{Object: b.String(), Kind: ProblemUnindexedBlob, Detail: "referenced by a snapshot, listed by no index segment"}, nil)
				ps.unindex[b] = i
			}
			ps.backups[i][id] = true
			return false
		}
		for _, i := range ps.byBlob[b] {
			ps.backups[i][id] = true
		}
		return !ps.bad(b)
	}
	for i := range nodes {
		n := &nodes[i]
		explained := false
		for _, t := range n.Tree {
			if !ref(t) {
				explained = true
			}
		}
		files, err := r.LoadFiles(ctx, n)
		if err != nil {
			if !explained && ctx.Err() == nil {
				ps.addFor(Problem{Object: key, Kind: ProblemUnreadableSnapshot, Detail: err.Error()}, id)
			}
			continue
		}
		for _, f := range files {
			for _, c := range f.Chunks {
				ref(c)
			}
		}
	}
	return true
}
