package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
)

// ---------------------------------------------------------------------------
// Garbage collection.

// GCOptions configure GC.
type GCOptions struct {
	// MaxUnusedFraction: a pack is repacked when its dead bytes exceed
	// this fraction of its size (0: 0.10; negative: any dead byte).
	MaxUnusedFraction float64
	// UnindexedGrace: packs that no index lists are deleted only when older
	// than this by the storage's clock (0: 1h). They may belong to a writer
	// that has not written its index segment yet.
	UnindexedGrace time.Duration
	// DryRun computes the report; nothing is written or deleted (the
	// repack figures are estimates).
	DryRun bool
	// LockID is the caller's exclusive lock (recommended). GC checks that
	// it is exclusive, refreshes it every LockRefreshEvery while it runs,
	// and refuses to delete anything (aborting with ErrLockLost) if it was
	// lost. Empty: the caller guarantees exclusivity and refreshes.
	LockID string
	// Progress, if set, is called as GC advances.
	Progress func(GCProgress)
}

// GCProgress reports one phase of GC: "resume", "snapshots", "classify",
// "repack", "index", "delete", "locks".
type GCProgress struct {
	Phase       string
	Done, Total int
}

// GCReport says what GC found and did (in a dry run: would do).
type GCReport struct {
	Snapshots             int   `json:"snapshots"`
	LiveBlobs             int   `json:"live_blobs"`
	DeadBlobs             int   `json:"dead_blobs"`
	PacksTotal            int   `json:"packs_total"`
	PacksDeleted          int   `json:"packs_deleted"`
	PacksRepacked         int   `json:"packs_repacked"`
	UnindexedPacksDeleted int   `json:"unindexed_packs_deleted"`
	SegmentsBefore        int   `json:"segments_before"`
	SegmentsAfter         int   `json:"segments_after"`
	BytesBefore           int64 `json:"bytes_before"` // packs and index segments
	BytesFreed            int64 `json:"bytes_freed"`  // deleted minus written
	Resumed               bool  `json:"resumed"`      // finished an interrupted GC's deletions first
	// Classification: what GC decided before writing anything (a dry run
	// reports it in full; a real run carries it out, except packs a
	// Warning names).
	Classification GCClassification `json:"classification"`
	// Warnings: packs left alone (e.g. unreadable when repacking); verify
	// tells more.
	Warnings []string `json:"warnings,omitempty"`
}

// GC deletes what no snapshot references. The caller holds an exclusive
// lock (pass it as LockID).
//
// Algorithm. An interrupted collection's gc/plan is carried out first.
// Then: list snapshots, then load the index from scratch (in that order:
// a snapshot is written only after its blobs' segments, so every listed
// snapshot's blobs are in the loaded index); the live set is every tree
// blob and every chunk of every node of every snapshot. A snapshot that
// cannot be read, or a live blob that no index lists, stops GC with an
// error: nothing is deleted on incomplete information. Each indexed pack
// is classified by its live and dead bytes: packs without a live blob are
// deleted, packs whose dead bytes exceed MaxUnusedFraction are repacked
// (their live blobs are read, verified and written into new packs);
// listed packs that no index entry points to are deleted once older than
// UnindexedGrace. Then one new set of index segments listing every blob
// that remains (the last one written carries Supersedes with every old
// segment), then gc/plan naming every object to delete, then the
// deletions (old segments, then packs), then the plan, then stale locks.
//
// Safety (docs/gc-safety.md has the full argument). A blob referenced by
// a committed snapshot is live, and stays indexed, in a pack that is
// neither deleted nor left without an index entry, at every step. A blob
// an in-flight backup deduplicated against cannot be deleted: the backup
// holds a shared lock from before it reads the index until its snapshot is
// written, so this collection (exclusive) cannot have run in between
// unless one of the two locks went stale, and each side detects that by
// storage time before acting — the writer's RefreshLock before its commit
// and this collection's refresh before it writes the plan; a writer that
// starts afterwards loads its index with SyncIndex, which drops whatever
// a pending plan condemns and anything a finished collection deleted.
//
// Crash points: before the plan, only new packs and segments exist (the
// union of old and new segments still describes every pack; new packs are
// at worst unindexed and deleted by a later GC after the grace); after the
// plan, everything it names is invisible to SyncIndex and the next GC
// finishes the deletions (Resumed).
//
// Assumptions: listings are consistent after a PUT (read-your-writes of
// the key set), the storage's modification times are one clock, a lock is
// refreshed far more often than it goes stale, and no writer pauses
// longer than UnindexedGrace between uploading a pack and indexing it.
// Locks use distinct ids per operation, so fileblob's non-atomic
// IfNotExist plays no part.
//
// Afterwards this handle's index reflects the new state.
func (r *Repository) GC(ctx context.Context, opts GCOptions) (rep GCReport, err error) {
	if opts.MaxUnusedFraction == 0 {
		opts.MaxUnusedFraction = 0.10
	}
	if opts.UnindexedGrace <= 0 {
		opts.UnindexedGrace = time.Hour
	}
	progress := func(phase string, done, total int) {
		if opts.Progress != nil {
			opts.Progress(GCProgress{Phase: phase, Done: done, Total: total})
		}
	}
	gctx := ctx
	if opts.LockID != "" {
		lf, err := r.readLock(ctx, opts.LockID)
		if errors.Is(err, ErrNotFound) {
			return rep, fmt.Errorf("gc: %w: %w", ErrLockLost, err)
		}
		if err != nil {
			return rep, fmt.Errorf("gc: %w", err)
		}
		if lf.Kind != LockExclusive {
			return rep, fmt.Errorf("gc: lock %s is %s, not exclusive", opts.LockID, lf.Kind)
		}
		if !opts.DryRun {
			if err := r.RefreshLock(ctx, opts.LockID); err != nil {
				return rep, fmt.Errorf("gc: %w", err)
			}
			var stop func()
			gctx, stop = r.keepLock(ctx, opts.LockID)
			defer stop()
			defer func() {
				if err != nil && gctx.Err() != nil && ctx.Err() == nil {
					err = fmt.Errorf("gc: %w (%v)", context.Cause(gctx), err)
				}
			}()
		}
	}
	if err := r.gc(gctx, opts, &rep, progress); err != nil {
		return rep, err
	}
	return rep, nil
}

// keepLock refreshes lock id every lockRefreshEvery until stop; if a
// refresh fails for good the returned context is cancelled with the
// refresh error as cause.
func (r *Repository) keepLock(ctx context.Context, id string) (context.Context, func()) {
	cctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(lockRefreshEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-cctx.Done():
				return
			case <-t.C:
				if err := r.RefreshLock(cctx, id); err != nil && cctx.Err() == nil {
					if errors.Is(err, ErrLockLost) {
						cancel(err)
						return
					}
					// A transient failure: the next tick tries again; the
					// check before the plan is authoritative.
				}
			}
		}
	}()
	return cctx, func() {
		close(done)
		wg.Wait()
		cancel(nil)
	}
}

func (r *Repository) gc(ctx context.Context, opts GCOptions, rep *GCReport, progress func(string, int, int)) error {
	plan, err := r.readPlan(ctx)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if plan != nil && !opts.DryRun {
		progress("resume", 0, len(plan.Delete))
		if err := r.runPlan(ctx, plan, progress); err != nil {
			return fmt.Errorf("gc: finishing the interrupted collection: %w", err)
		}
		rep.Resumed = true
		plan = nil
	}
	doomedKeys, doomedPacks := plan.doomed() // a dry run's view of a pending plan

	// 1. Snapshots and log archives before the index.
	roots, err := r.listRoots(ctx)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	// 2. The index, from scratch; this handle gets the same view.
	r.segMu.Lock()
	segs, err := r.loadSegments(ctx, doomedKeys)
	var gidx, hidx *index.Index
	if err == nil {
		if gidx, err = segs.build(doomedPacks); err == nil {
			hidx, err = segs.build(doomedPacks)
		}
	}
	if err == nil {
		r.installIndex(segs, hidx)
	}
	r.segMu.Unlock()
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	rep.SegmentsBefore = len(segs.keys)
	for _, k := range segs.keys {
		rep.BytesBefore += segs.sizes[k]
	}

	// 3. The live set.
	live, n, err := r.markLive(ctx, roots, progress)
	if err != nil {
		return err
	}
	rep.Snapshots = n
	var missing []string
	for id := range live {
		if !gidx.Has(id) {
			missing = append(missing, id.String())
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("gc: %d blobs referenced by snapshots are in no index (first: %s): %w; refusing to delete anything (run verify)",
			len(missing), missing[0], ErrNotFound)
	}
	rep.LiveBlobs = len(live)
	rep.DeadBlobs = gidx.Len() - len(live)

	// 4. Classify.
	progress("classify", 0, 0)
	var (
		listed []backend.ObjectInfo
		newest time.Time
	)
	for _, prefix := range []string{dataPrefix, metaPrefix} {
		err := r.be.List(ctx, prefix, func(oi backend.ObjectInfo) error {
			if _, _, ok := parsePackKey(oi.Key); ok {
				listed = append(listed, oi)
				rep.PacksTotal++
				rep.BytesBefore += oi.Size
				if oi.ModTime.After(newest) {
					newest = oi.ModTime
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("gc: list packs: %w", err)
		}
	}
	now, err := r.gcNow(ctx, opts, newest)
	if err != nil {
		return fmt.Errorf("gc: read the storage clock: %w", err)
	}
	d := classifyGC(gcInput{Live: live, Blobs: gidx.All(), Packs: listed, Pending: doomedKeys,
		MaxUnusedFraction: opts.MaxUnusedFraction, UnindexedGrace: opts.UnindexedGrace, Now: now})
	rep.Classification = d.summary

	if opts.DryRun {
		dryRunReport(d, gidx, segs, rep)
		return nil
	}
	if err := r.gcExecute(ctx, opts, d, live, gidx, segs, rep, progress); err != nil {
		return err
	}

	// 9. Stale locks and leftover clock probes.
	if err := r.removeStale(ctx, opts, progress); err != nil {
		return err
	}
	// 10. This handle's index.
	if _, _, err := r.resetIndex(ctx); err != nil {
		return fmt.Errorf("gc: done, but reloading the index failed: %w", err)
	}
	return nil
}

// gcNow is the storage's "now": our lock's modification time after a
// refresh, or a probe's; in a dry run (which writes nothing) the newest
// modification time seen, a lower bound, so every age is underestimated
// and nothing is judged old too early.
func (r *Repository) gcNow(ctx context.Context, opts GCOptions, newest time.Time) (time.Time, error) {
	switch {
	case opts.DryRun:
		if locks, err := r.listLocks(ctx); err == nil {
			for _, oi := range locks {
				if oi.ModTime.After(newest) {
					newest = oi.ModTime
				}
			}
		}
		return newest, nil
	case opts.LockID != "":
		return r.lockNow(ctx, opts.LockID)
	default:
		return r.storageNow(ctx)
	}
}

// removeStale deletes locks that went stale (by the storage's clock) and
// clock probes left by a crash.
func (r *Repository) removeStale(ctx context.Context, opts GCOptions, progress func(string, int, int)) error {
	progress("locks", 0, 0)
	now, err := r.gcNow(ctx, GCOptions{LockID: opts.LockID}, time.Time{})
	if err != nil {
		return fmt.Errorf("gc: read the storage clock: %w", err)
	}
	var stale []string
	locks, err := r.listLocks(ctx)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	for key, oi := range locks {
		if key != lockKey(opts.LockID) && now.Sub(oi.ModTime) > lockStaleAfter {
			stale = append(stale, key)
		}
	}
	err = r.be.List(ctx, clockPrefix, func(oi backend.ObjectInfo) error {
		if now.Sub(oi.ModTime) > lockStaleAfter {
			stale = append(stale, oi.Key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: list %s: %w", clockPrefix, err)
	}
	sort.Strings(stale)
	return r.deleteAll(ctx, stale, func() {})
}

// gcRoot is what keeps blobs alive: a snapshot, or a log archive.
type gcRoot struct {
	id  string
	log bool
}

// listRoots lists every snapshot and log archive.
func (r *Repository) listRoots(ctx context.Context) ([]gcRoot, error) {
	ids, err := r.ListBackupIDs(ctx)
	if err != nil {
		return nil, err
	}
	logs, err := r.ListLogArchiveIDs(ctx)
	if err != nil {
		return nil, err
	}
	roots := make([]gcRoot, 0, len(ids)+len(logs))
	for _, id := range ids {
		roots = append(roots, gcRoot{id: id})
	}
	for _, id := range logs {
		roots = append(roots, gcRoot{id: id, log: true})
	}
	return roots, nil
}

// markLive loads the file lists of every snapshot and log archive and
// returns every tree blob and chunk they reference; n counts the
// snapshots. Any root that cannot be read is an error.
func (r *Repository) markLive(ctx context.Context, roots []gcRoot, progress func(string, int, int)) (map[ObjectID]struct{}, int, error) {
	live := map[ObjectID]struct{}{}
	var (
		mu      sync.Mutex
		done, n int
	)
	err := pool.Each(ctx, 8, slices.Values(roots), func(ctx context.Context, root gcRoot) error {
		refs, err := r.rootRefs(ctx, root)
		mu.Lock()
		defer mu.Unlock()
		done++
		progress("snapshots", done, len(roots))
		switch {
		case errors.Is(err, errSnapshotGone):
		case err != nil:
			return fmt.Errorf("%w; refusing to collect garbage on incomplete information", err)
		default:
			if !root.log {
				n++
			}
			for _, b := range refs {
				live[b] = struct{}{}
			}
		}
		return nil
	})
	if err != nil {
		return live, n, fmt.Errorf("gc: %w", err)
	}
	return live, n, nil
}

func (r *Repository) rootRefs(ctx context.Context, root gcRoot) ([]ObjectID, error) {
	if root.log {
		return r.logArchiveRefs(ctx, root.id)
	}
	return r.snapshotRefs(ctx, root.id)
}

var errSnapshotGone = errors.New("snapshot deleted meanwhile")

// snapshotRefs returns every blob backup id references (tree blobs and
// chunks, with repeats).
func (r *Repository) snapshotRefs(ctx context.Context, id string) ([]ObjectID, error) {
	m, err := r.GetManifest(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errSnapshotGone
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %s unreadable: %w", id, err)
	}
	var refs []ObjectID
	for i := range m.Nodes {
		n := &m.Nodes[i]
		refs = append(refs, n.Tree...)
		files, err := r.LoadFiles(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s unreadable: %w", id, err)
		}
		for _, f := range files {
			refs = append(refs, f.Chunks...)
		}
	}
	return refs, nil
}

func sortIDs(ids []ObjectID) {
	slices.SortFunc(ids, func(a, b ObjectID) int { return bytes.Compare(a[:], b[:]) })
}

func setOf(ids []ObjectID) map[ObjectID]bool {
	m := make(map[ObjectID]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}
