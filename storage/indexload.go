package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
)

// Loading the index from scratch, aware of garbage collection: every
// writer and reader calls SyncIndex before it relies on the index (gc.go
// writes the plans it reads).

type keyedSegment struct {
	key string
	id  ObjectID
	seg *index.Segment
}

// segmentSet is every index segment the storage lists at one moment.
type segmentSet struct {
	keys    []string         // every listed segment key, sorted
	sizes   map[string]int64 // their sizes
	segs    []keyedSegment   // decoded, except those a GC plan condemns; by key
	damaged damageSet        // damage records listed after the segments
}

// loadSegments lists index/ and decodes every segment the plan does not
// condemn. A segment that vanished since the listing is skipped.
func (r *Repository) loadSegments(ctx context.Context, doomed map[string]bool) (*segmentSet, error) {
	s := &segmentSet{sizes: map[string]int64{}}
	err := r.be.List(ctx, indexPrefix, func(oi backend.ObjectInfo) error {
		s.keys = append(s.keys, oi.Key)
		s.sizes[oi.Key] = oi.Size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list index: %w", err)
	}
	sort.Strings(s.keys)
	var todo []string
	for _, k := range s.keys {
		if !doomed[k] {
			todo = append(todo, k)
		}
	}
	out := make([]keyedSegment, len(todo))
	errs := make([]error, len(todo))
	// Every segment is read (no first-error stop): the error names every
	// damaged one.
	err = pool.Each(ctx, 8, pool.Indices(len(todo)), func(ctx context.Context, i int) error {
		key := todo[i]
		id, err := ParseObjectID(strings.TrimPrefix(key, indexPrefix))
		if err != nil {
			errs[i] = fmt.Errorf("index segment %s: bad name: %w", key, ErrCorrupt)
			return nil
		}
		data, err := r.be.Get(ctx, key)
		if errors.Is(err, backend.ErrNotFound) {
			return nil // deleted while we listed (a plan being carried out)
		}
		if err != nil {
			errs[i] = fmt.Errorf("index segment %s: %w", key, err)
			return nil
		}
		seg, err := index.DecodeSegment(r.idxCi, data)
		if err != nil {
			errs[i] = fmt.Errorf("index segment %s: %w: %v", key, ErrCorrupt, err)
			return nil
		}
		out[i] = keyedSegment{key: key, id: id, seg: seg}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, ks := range out {
		if ks.seg != nil {
			s.segs = append(s.segs, ks)
		}
	}
	if s.damaged, err = r.listDamagedKeys(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// build returns an index of every blob of the set, leaving out locations
// in the doomed packs. Locations from segments that no other segment
// supersedes come first (an id keeps its first location), then those of
// superseded segments: a garbage collection writes the superseding
// segment last, so the union is complete at every crash point, and a
// superseded segment only adds what the newer ones dropped, in packs that
// still exist (packs are deleted only through a plan, which condemns the
// superseded segments too).
func (s *segmentSet) build(doomedPacks map[ObjectID]bool) (*index.Index, error) {
	superseded := map[ObjectID]bool{}
	for _, ks := range s.segs {
		for _, id := range ks.seg.Supersedes {
			superseded[id] = true
		}
	}
	x := index.New()
	for _, second := range []bool{false, true} {
		for _, ks := range s.segs {
			if superseded[ks.id] != second {
				continue
			}
			for _, e := range ks.seg.Entries {
				p := ks.seg.Packs[e.PackOrd]
				if doomedPacks[p.ID] {
					continue
				}
				if err := addLocation(x, s.damaged, e.ID, index.Location{Pack: p.ID, PackType: p.Type, PackSize: p.Size,
					Offset: e.Offset, StoredLen: e.StoredLen, RawLen: e.RawLen, Type: e.Type, Codec: e.Codec}); err != nil {
					return nil, fmt.Errorf("index segment %s: %w: %v", ks.key, ErrCorrupt, err)
				}
			}
		}
	}
	return x, nil
}

// installIndex makes x (built from s) this handle's index. Packs this
// process uploaded that no segment lists yet stay indexed. The caller
// holds r.segMu, so no segment of this process is written meanwhile.
func (r *Repository) installIndex(s *segmentSet, x *index.Index) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idx = x
	r.damaged = s.damaged
	for _, sp := range r.session {
		r.addPackLocked(sp)
	}
	r.loadedSegments = make(map[string]bool, len(s.keys))
	for _, k := range s.keys {
		// Condemned segments count as loaded so that ReloadIndex never
		// brings their blobs back.
		r.loadedSegments[k] = true
	}
}

// resetIndex rebuilds this handle's index from scratch (see SyncIndex).
func (r *Repository) resetIndex(ctx context.Context) (*segmentSet, *gcPlan, error) {
	r.segMu.Lock()
	defer r.segMu.Unlock()
	plan, err := r.readPlan(ctx)
	if err != nil {
		return nil, nil, err
	}
	keys, packs := plan.doomed()
	s, err := r.loadSegments(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	x, err := s.build(packs)
	if err != nil {
		return nil, nil, err
	}
	r.installIndex(s, x)
	return s, plan, nil
}

// SyncIndex brings this handle's index up to date in a way that is safe
// against garbage collection. Call it after taking the repository lock and
// before deduplicating against the index (backup upload) or reading blobs
// (restore), on every handle that takes part, instead of ReloadIndex.
//
// ReloadIndex only adds segments: a handle that loaded the index before a
// garbage collection keeps the locations of blobs the collection deleted,
// would deduplicate against them and commit a snapshot that references
// nothing. SyncIndex lists index/ and reads gc/plan; when a segment it had
// loaded is gone, or a plan is pending, it rebuilds the index from scratch
// without what the plan condemns. Otherwise it loads the new segments of
// the same listing, as ReloadIndex does.
func (r *Repository) SyncIndex(ctx context.Context) error {
	plan, err := r.readPlan(ctx)
	if err != nil {
		return err
	}
	var keys []string
	err = r.be.List(ctx, indexPrefix, func(oi backend.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list index: %w", err)
	}
	damaged, err := r.listDamagedKeys(ctx)
	if err != nil {
		return err
	}
	listed := make(map[string]bool, len(keys))
	for _, k := range keys {
		listed[k] = true
	}
	vanished := false
	r.mu.Lock()
	for k := range r.loadedSegments {
		if !listed[k] {
			vanished = true
			break
		}
	}
	// A new damage record may condemn the copy this handle locates while
	// a good one is listed by a segment it already loaded: rebuild.
	for c := range damaged {
		vanished = vanished || !r.damaged[c]
	}
	r.mu.Unlock()
	if plan == nil && !vanished {
		return r.loadNewSegments(ctx, keys, damaged)
	}
	_, _, err = r.resetIndex(ctx)
	return err
}
