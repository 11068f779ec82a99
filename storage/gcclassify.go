package storage

import (
	"iter"
	"sort"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// GC's decision, as a pure function of what it read (classifyGC): no
// backend, no clock, no I/O, so every rule is table-tested on its own
// (gcclassify_test.go) and a dry run reports exactly what a real run
// carries out.

// gcListCap caps the pack lists a GCClassification carries: a report
// stays small on a repository with millions of packs; the counts and
// bytes are always complete.
const gcListCap = 1000

// GCClassification is what GC decided (a dry run: would do), before any
// write. Counts and bytes are complete; pack lists hold the first
// gcListCap (1000) by key.
type GCClassification struct {
	// Referenced: indexed blobs some snapshot references (stored bytes).
	Referenced GCTally `json:"referenced"`
	// Unreferenced: indexed blobs no snapshot references.
	Unreferenced GCTally `json:"unreferenced"`
	// Condemned: packs without a referenced blob, deleted whole.
	Condemned GCPackSet `json:"condemned"`
	// Repack: packs whose unreferenced bytes exceed MaxUnusedFraction of
	// their size; their referenced blobs are copied into new packs, then
	// they are deleted.
	Repack GCPackSet `json:"repack"`
	// UnindexedDeleted: listed packs that no index lists, older than
	// UnindexedGrace.
	UnindexedDeleted GCPackSet `json:"unindexed_deleted"`
	// UnindexedKept: listed packs that no index lists, within the grace
	// (they may belong to a writer that has not indexed them yet).
	UnindexedKept GCPackSet `json:"unindexed_kept"`
	// RewriteIndex: packs go, so every index segment is replaced by a new
	// set (GC may also rewrite them to compact the index).
	RewriteIndex bool `json:"rewrite_index"`
}

// GCTally counts blobs and their stored bytes.
type GCTally struct {
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
}

// GCPackSet is a set of pack objects: how many, their bytes, and the
// first of them by key.
type GCPackSet struct {
	Count int      `json:"count"`
	Bytes int64    `json:"bytes"`
	Packs []GCPack `json:"packs,omitempty"`
}

// GCPack is one pack object of a GCPackSet.
type GCPack struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
	// DeadBytes and DeadFraction: why a pack is repacked (its stored
	// bytes of unreferenced blobs, and their share of its size).
	DeadBytes    int64   `json:"dead_bytes,omitempty"`
	DeadFraction float64 `json:"dead_fraction,omitempty"`
}

func (s *GCPackSet) add(p GCPack) {
	s.Count++
	s.Bytes += p.Size
	if len(s.Packs) < gcListCap {
		s.Packs = append(s.Packs, p)
	}
}

// Keys returns the keys of the packs listed (at most 1000).
func (s GCPackSet) Keys() []string {
	out := make([]string, len(s.Packs))
	for i, p := range s.Packs {
		out[i] = p.Key
	}
	return out
}

// gcInput is everything classifyGC looks at, read beforehand.
type gcInput struct {
	// Live: every blob some snapshot references.
	Live map[ObjectID]struct{}
	// Blobs: the index, one location per blob (the first location of a
	// blob wins; a later copy counts as an unreferenced record of its
	// pack).
	Blobs iter.Seq2[pack.ID, index.Location]
	// Packs: the pack objects listed under data/ and meta/.
	Packs []backend.ObjectInfo
	// Pending: keys a pending gc/plan already condemns (a dry run's view);
	// they are neither indexed nor counted as unindexed.
	Pending map[string]bool
	// MaxUnusedFraction and UnindexedGrace as in GCOptions, defaults
	// applied (a negative fraction repacks any pack with a dead byte).
	MaxUnusedFraction float64
	UnindexedGrace    time.Duration
	// Now: the storage's clock.
	Now time.Time
}

// gcDecision is classifyGC's result: the complete lists GC acts on and
// the summary it reports.
type gcDecision struct {
	stats     map[ObjectID]*packStat // every indexed pack
	condemned []ObjectID             // sorted
	repack    []ObjectID             // sorted
	unindexed []string               // keys to delete, sorted
	listed    map[string]int64       // listed pack sizes by key
	summary   GCClassification
}

type packStat struct {
	typ                 BlobType
	size                int64
	live, dead          int
	liveBytes, deadByte int64
}

// sizeOf is a pack's listed size, or fallback if it was not listed.
func (d *gcDecision) sizeOf(key string, fallback int64) int64 {
	if s, ok := d.listed[key]; ok {
		return s
	}
	return fallback
}

// classifyGC decides what GC does with every pack: packs without a
// referenced blob are condemned; packs whose dead (unreferenced) bytes
// exceed MaxUnusedFraction of their size are repacked; listed packs that
// no index lists are deleted once older than UnindexedGrace by Now, kept
// otherwise. It is pure.
func classifyGC(in gcInput) *gcDecision {
	d := &gcDecision{stats: map[ObjectID]*packStat{}, listed: make(map[string]int64, len(in.Packs))}
	for _, oi := range in.Packs {
		d.listed[oi.Key] = oi.Size
	}
	sum := &d.summary
	seen := map[ObjectID]bool{}
	for id, loc := range in.Blobs {
		ps := d.stats[loc.Pack]
		if ps == nil {
			ps = &packStat{typ: BlobType(loc.PackType), size: int64(loc.PackSize)}
			d.stats[loc.Pack] = ps
		}
		_, live := in.Live[id]
		if live && !seen[id] {
			seen[id] = true
			ps.live++
			ps.liveBytes += int64(loc.StoredLen)
			sum.Referenced.Blobs++
			sum.Referenced.Bytes += int64(loc.StoredLen)
		} else {
			ps.dead++
			ps.deadByte += int64(loc.StoredLen)
			sum.Unreferenced.Blobs++
			sum.Unreferenced.Bytes += int64(loc.StoredLen)
		}
	}
	for id, ps := range d.stats {
		switch {
		case ps.live == 0:
			d.condemned = append(d.condemned, id)
		case ps.deadByte > 0 && float64(ps.deadByte) > in.MaxUnusedFraction*float64(max(ps.size, 1)):
			d.repack = append(d.repack, id)
		}
	}
	sortIDs(d.condemned)
	sortIDs(d.repack)
	var kept []string
	for _, oi := range in.Packs {
		_, id, _ := parsePackKey(oi.Key)
		if d.stats[id] != nil || in.Pending[oi.Key] {
			continue
		}
		if in.Now.Sub(oi.ModTime) > in.UnindexedGrace {
			d.unindexed = append(d.unindexed, oi.Key)
		} else {
			kept = append(kept, oi.Key)
		}
	}
	sort.Strings(d.unindexed)
	sort.Strings(kept)

	// The summary, lists by key.
	byKey := func(ids []ObjectID) []GCPack {
		out := make([]GCPack, 0, len(ids))
		for _, id := range ids {
			ps := d.stats[id]
			k := packKey(ps.typ, id)
			size := d.sizeOf(k, ps.size)
			out = append(out, GCPack{Key: k, Size: size, DeadBytes: ps.deadByte,
				DeadFraction: float64(ps.deadByte) / float64(max(size, 1))})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
		return out
	}
	for _, p := range byKey(d.condemned) {
		p.DeadBytes, p.DeadFraction = 0, 0 // all dead: the reason is no live blob
		sum.Condemned.add(p)
	}
	for _, p := range byKey(d.repack) {
		sum.Repack.add(p)
	}
	for _, k := range d.unindexed {
		sum.UnindexedDeleted.add(GCPack{Key: k, Size: d.listed[k]})
	}
	for _, k := range kept {
		sum.UnindexedKept.add(GCPack{Key: k, Size: d.listed[k]})
	}
	sum.RewriteIndex = len(d.condemned)+len(d.repack) > 0
	return d
}
