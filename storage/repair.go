package storage

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// Repair kinds (crayfish repair index|packs|snapshots).
const (
	RepairIndex     = "index"
	RepairPacks     = "packs"
	RepairSnapshots = "snapshots"
)

// ErrUnknownRepair: a repair kind other than index, packs, snapshots.
var ErrUnknownRepair = errors.New("storage: unknown repair (want index, packs or snapshots)")

// RepairOptions configure Repair.
type RepairOptions struct {
	// DryRun computes the report; nothing is written or deleted.
	DryRun bool
	// Forget (snapshots only) deletes the snapshots of broken backups.
	Forget bool
	// LockID is the caller's exclusive lock, checked and refreshed as GC
	// does. Empty: the caller guarantees exclusivity.
	LockID string
}

// RepairReport is what a repair found and did (in a dry run: would do).
type RepairReport struct {
	Kind      string                 `json:"kind"`
	DryRun    bool                   `json:"dry_run"`
	Index     *RepairIndexReport     `json:"index,omitempty"`
	Packs     *RepairPacksReport     `json:"packs,omitempty"`
	Snapshots *RepairSnapshotsReport `json:"snapshots,omitempty"`
}

// Repair runs one repair under the caller's exclusive lock. Every repair
// computes its plan without writing, then (unless DryRun) carries it out
// the way GC does: new packs and index segments first, the superseding
// segment last, then a gc/plan naming what goes, then the deletions.
func (r *Repository) Repair(ctx context.Context, kind string, opts RepairOptions) (rep RepairReport, err error) {
	rep = RepairReport{Kind: kind, DryRun: opts.DryRun}
	if kind != RepairIndex && kind != RepairPacks && kind != RepairSnapshots {
		return rep, fmt.Errorf("repair %q: %w", kind, ErrUnknownRepair)
	}
	rctx := ctx
	if opts.LockID != "" {
		lf, err := r.readLock(ctx, opts.LockID)
		if errors.Is(err, ErrNotFound) {
			return rep, fmt.Errorf("repair %s: %w: %w", kind, ErrLockLost, err)
		}
		if err != nil {
			return rep, fmt.Errorf("repair %s: %w", kind, err)
		}
		if lf.Kind != LockExclusive {
			return rep, fmt.Errorf("repair %s: lock %s is %s, not exclusive", kind, opts.LockID, lf.Kind)
		}
		if !opts.DryRun {
			if err := r.RefreshLock(ctx, opts.LockID); err != nil {
				return rep, fmt.Errorf("repair %s: %w", kind, err)
			}
			var stop func()
			rctx, stop = r.keepLock(ctx, opts.LockID)
			defer stop()
		}
	}
	if opts.DryRun {
		rctx = withoutDamageRecords(rctx)
	} else if err := r.resumePlan(rctx); err != nil {
		return rep, fmt.Errorf("repair %s: %w", kind, err)
	}
	switch kind {
	case RepairIndex:
		rep.Index, err = r.repairIndex(rctx, opts)
	case RepairPacks:
		rep.Packs, err = r.repairPacks(rctx, opts)
	default:
		rep.Snapshots, err = r.repairSnapshots(rctx, opts)
	}
	if err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (%v)", context.Cause(rctx), err)
		}
		return rep, fmt.Errorf("repair %s: %w", kind, err)
	}
	return rep, nil
}

// resumePlan finishes an interrupted collection's or repair's deletions.
func (r *Repository) resumePlan(ctx context.Context) error {
	plan, err := r.readPlan(ctx)
	if err != nil || plan == nil {
		return err
	}
	return r.runPlan(ctx, plan, func(string, int, int) {})
}

// listPacks returns every pack object (data/ and meta/) by key with its size.
func (r *Repository) listPacks(ctx context.Context) (map[string]int64, error) {
	listed := map[string]int64{}
	for _, prefix := range []string{dataPrefix, metaPrefix} {
		err := r.be.List(ctx, prefix, func(oi backend.ObjectInfo) error {
			if _, _, ok := parsePackKey(oi.Key); ok {
				listed[oi.Key] = oi.Size
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list packs: %w", err)
		}
	}
	return listed, nil
}

// replaceIndex makes nidx the whole index: its segments are written (the
// last superseding every segment in old), then a gc/plan names the old
// segments and the packs in drop, then they are deleted. The caller holds
// the exclusive lock; a crash at any point leaves an index that is the
// union of old and new (see GC).
func (r *Repository) replaceIndex(ctx context.Context, nidx *index.Index, old []string, drop []string, opts RepairOptions) (int, error) {
	segs := index.SegmentsFrom(nidx, 0)
	if len(segs) > 0 {
		last := segs[len(segs)-1]
		for _, k := range old {
			if id, err := ParseObjectID(strings.TrimPrefix(k, indexPrefix)); err == nil {
				last.Supersedes = append(last.Supersedes, id)
			}
		}
	}
	written := map[string]bool{}
	for _, seg := range segs {
		data, err := index.EncodeSegment(r.idxCi, seg)
		if err != nil {
			return 0, fmt.Errorf("encode index segment: %w", err)
		}
		key := indexPrefix + ObjectID(sha256.Sum256(data)).String()
		if err := r.be.Put(ctx, key, data, false); err != nil {
			return 0, fmt.Errorf("write index segment: %w", err)
		}
		written[key] = true
	}
	p := &gcPlan{Created: time.Now().UTC()}
	for _, k := range append(append([]string(nil), old...), drop...) {
		if !written[k] {
			p.Delete = append(p.Delete, k)
		}
	}
	if len(p.Delete) > 0 {
		if opts.LockID != "" {
			if err := r.RefreshLock(ctx, opts.LockID); err != nil {
				return 0, fmt.Errorf("before deleting: %w", err)
			}
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		data, err := r.encodePlan(p)
		if err != nil {
			return 0, err
		}
		if err := r.be.Put(ctx, gcPlanKey, data, false); err != nil {
			return 0, fmt.Errorf("write %s: %w", gcPlanKey, err)
		}
		if err := r.runPlan(ctx, p, func(string, int, int) {}); err != nil {
			return 0, err
		}
	}
	return len(segs), nil
}

// ---------------------------------------------------------------------------
// repair index

// RepairIndexReport: the index rebuilt from the packs' footers.
type RepairIndexReport struct {
	Packs          int `json:"packs"` // packs whose footer authenticated
	Blobs          int `json:"blobs"` // blobs in the rebuilt index
	SegmentsBefore int `json:"segments_before"`
	SegmentsAfter  int `json:"segments_after"`
	// BlobsAdded were in no loadable index segment before.
	BlobsAdded int `json:"blobs_added"`
	// EntriesDropped: index entries in packs that do not exist or whose
	// footer does not list the blob.
	EntriesDropped int `json:"entries_dropped"`
	// UnreadableSegments could not be read or did not authenticate.
	UnreadableSegments []string `json:"unreadable_segments,omitempty"`
	// UnreadablePacks: the footer does not authenticate; the old index's
	// entries for them are kept (repair packs salvages what it can).
	UnreadablePacks []string `json:"unreadable_packs,omitempty"`
}

// loadSegmentsTolerant decodes every listed segment it can, for a
// rebuild that must not stop at a damaged one.
func (r *Repository) loadSegmentsTolerant(ctx context.Context) (keys []string, segs []*index.Segment, bad []string, err error) {
	err = r.be.List(ctx, indexPrefix, func(oi backend.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list index: %w", err)
	}
	sort.Strings(keys)
	out := make([]*index.Segment, len(keys))
	gone := make([]bool, len(keys))
	_ = pool.Each(ctx, 8, pool.Indices(len(keys)), func(_ context.Context, i int) error {
		data, err := r.be.Get(ctx, keys[i])
		if err == nil {
			out[i], err = index.DecodeSegment(r.idxCi, data)
		}
		if err != nil {
			out[i], gone[i] = nil, errors.Is(err, backend.ErrNotFound)
		}
		return nil
	})
	for i, s := range out {
		if gone[i] {
			continue
		}
		if s == nil {
			bad = append(bad, keys[i])
		} else {
			segs = append(segs, s)
		}
	}
	return keys, segs, bad, ctx.Err()
}

func (r *Repository) repairIndex(ctx context.Context, opts RepairOptions) (*RepairIndexReport, error) {
	rep := &RepairIndexReport{}
	damaged, err := r.listDamagedKeys(ctx)
	if err != nil {
		return nil, err
	}
	keys, segs, bad, err := r.loadSegmentsTolerant(ctx)
	if err != nil {
		return nil, err
	}
	rep.SegmentsBefore, rep.UnreadableSegments = len(keys), bad
	oldIdx := index.New()
	for _, s := range segs {
		for _, e := range s.Entries {
			p := s.Packs[e.PackOrd]
			_ = addLocation(oldIdx, damaged, e.ID, index.Location{Pack: p.ID, PackType: p.Type, PackSize: p.Size,
				Offset: e.Offset, StoredLen: e.StoredLen, RawLen: e.RawLen, Type: e.Type, Codec: e.Codec})
		}
	}
	footers, err := r.readAllFooters(ctx)
	if err != nil {
		return nil, err
	}
	nidx, err := indexFromFooters(footers, oldIdx, damaged, rep)
	if err != nil {
		return nil, err
	}
	for id := range nidx.All() {
		if !oldIdx.Has(id) {
			rep.BlobsAdded++
		}
	}
	for id := range oldIdx.All() {
		if !nidx.Has(id) {
			rep.EntriesDropped++
		}
	}
	rep.Blobs = nidx.Len()
	if opts.DryRun {
		rep.SegmentsAfter = len(index.SegmentsFrom(nidx, 0))
		return rep, nil
	}
	if rep.SegmentsAfter, err = r.replaceIndex(ctx, nidx, keys, nil, opts); err != nil {
		return nil, err
	}
	if _, _, err := r.resetIndex(ctx); err != nil {
		return nil, fmt.Errorf("done, but reloading the index failed: %w", err)
	}
	return rep, nil
}

// packFooter is one listed pack and its footer, or why it did not read.
type packFooter struct {
	key     string
	size    int64
	entries []pack.Entry
	err     error // wraps pack.ErrCorrupt or backend.ErrNotFound
}

// readAllFooters reads and authenticates the footer of every listed pack,
// in key order. A read that fails for another reason than damage (a
// failing store) is an error: an index built without that pack would
// leave it to GC as unindexed.
func (r *Repository) readAllFooters(ctx context.Context) ([]packFooter, error) {
	listed, err := r.listPacks(ctx)
	if err != nil {
		return nil, err
	}
	footers := make([]packFooter, 0, len(listed))
	for k, size := range listed {
		footers = append(footers, packFooter{key: k, size: size})
	}
	sort.Slice(footers, func(i, j int) bool { return footers[i].key < footers[j].key })
	_ = pool.Each(ctx, 8, pool.Indices(len(footers)), func(_ context.Context, i int) error {
		f := &footers[i]
		f.entries, f.err = r.readPackFooter(ctx, f.key, f.size)
		return nil
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, f := range footers {
		if f.err != nil && !errors.Is(f.err, pack.ErrCorrupt) && !errors.Is(f.err, backend.ErrNotFound) {
			return nil, fmt.Errorf("read the footer of %s: %w", f.key, f.err)
		}
	}
	return footers, nil
}

// indexFromFooters builds the index of every blob the footers list,
// preferring undamaged copies; a pack whose footer did not read keeps the
// locations oldIdx had in it. It fills rep.Packs and rep.UnreadablePacks.
func indexFromFooters(footers []packFooter, oldIdx *index.Index, damaged damageSet, rep *RepairIndexReport) (*index.Index, error) {
	nidx := index.New()
	unreadable := map[ObjectID]bool{}
	for _, f := range footers {
		t, pid, _ := parsePackKey(f.key)
		if f.err != nil {
			rep.UnreadablePacks = append(rep.UnreadablePacks, f.key)
			unreadable[pid] = true
			continue
		}
		rep.Packs++
		for _, e := range f.entries {
			if err := addLocation(nidx, damaged, e.ID, index.Location{Pack: pid, PackType: pack.BlobType(t), PackSize: uint32(f.size),
				Offset: e.Offset, StoredLen: e.StoredLen, RawLen: e.RawLen, Type: e.Type, Codec: e.Codec}); err != nil {
				return nil, fmt.Errorf("pack %s: %w", f.key, err)
			}
		}
	}
	for id, loc := range oldIdx.All() {
		if unreadable[loc.Pack] {
			if err := addLocation(nidx, damaged, id, loc); err != nil {
				return nil, err
			}
		}
	}
	return nidx, nil
}
