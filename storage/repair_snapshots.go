package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/crayfish-backup/crayfish/internal/pool"
)

// RepairSnapshotsReport: backups whose content is gone for good.
type RepairSnapshotsReport struct {
	Snapshots int            `json:"snapshots"` // checked
	Broken    []BrokenBackup `json:"broken"`
	Forgotten []string       `json:"forgotten,omitempty"` // snapshot objects deleted (--forget)
}

// BrokenBackup is a backup that references content with no good copy.
type BrokenBackup struct {
	ID       string   `json:"id"`
	Reason   string   `json:"reason"`
	BadBlobs int      `json:"bad_blobs"`          // distinct referenced blobs without a good copy
	Examples []string `json:"examples,omitempty"` // a few of them
}

const brokenExamples = 5

// repairSnapshots lists the backups that reference a blob that no index
// lists, whose pack is missing, or whose indexed copy is recorded damaged
// and does not verify when read again (run it after repair packs and
// after a new backup had its chance to store the content again), or whose
// snapshot or file list is damaged. With Forget it deletes their snapshot
// objects. A read that fails for another reason (a failing store) stops
// it: a backup is never forgotten on a transient error.
func (r *Repository) repairSnapshots(ctx context.Context, opts RepairOptions) (*RepairSnapshotsReport, error) {
	ids, err := r.ListBackupIDs(ctx)
	if err != nil {
		return nil, err
	}
	segs, plan, err := r.resetIndex(ctx)
	if err != nil {
		return nil, err
	}
	// A private copy: reads below may reload the handle's index meanwhile.
	_, doomed := plan.doomed()
	idx, err := segs.build(doomed)
	if err != nil {
		return nil, err
	}
	listed, err := r.listPacks(ctx)
	if err != nil {
		return nil, err
	}
	// Reads from here on record nothing: a listing decides nothing by
	// side effect, and damage records are checked, not trusted.
	ctx, cancel := context.WithCancelCause(withoutDamageRecords(ctx))
	defer cancel(nil)
	var (
		mu      sync.Mutex
		checked = map[ObjectID]bool{} // recorded damaged copies read again: verified?
	)
	good := func(b ObjectID) bool {
		loc, ok := idx.Lookup(b)
		if !ok {
			return false
		}
		if _, ok := listed[packKey(BlobType(loc.PackType), loc.Pack)]; !ok {
			return false
		}
		if !segs.damaged.at(loc) {
			return true
		}
		// A record may come from a transient failure: read the copy.
		mu.Lock()
		v, seen := checked[b]
		mu.Unlock()
		if seen {
			return v
		}
		_, _, damage, err := r.loadAt(ctx, b, loc)
		if err != nil && damage == "" {
			cancel(err)
			return false
		}
		mu.Lock()
		checked[b] = err == nil
		mu.Unlock()
		return err == nil
	}
	rep := &RepairSnapshotsReport{}
	_ = pool.Each(ctx, 8, slices.Values(ids), func(_ context.Context, id string) error {
		bb, ok, err := r.checkSnapshot(ctx, id, good)
		if err != nil {
			cancel(err)
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if ok {
			rep.Snapshots++
		}
		if bb != nil {
			rep.Broken = append(rep.Broken, *bb)
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	sort.Slice(rep.Broken, func(i, j int) bool { return rep.Broken[i].ID < rep.Broken[j].ID })
	if !opts.Forget || opts.DryRun {
		return rep, nil
	}
	for _, b := range rep.Broken {
		if err := r.DeleteManifest(ctx, b.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return rep, err
		}
		rep.Forgotten = append(rep.Forgotten, b.ID)
	}
	return rep, nil
}

// isDamage reports whether err says stored data is damaged or gone, as
// opposed to a failing store or an ended context.
func isDamage(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidManifest)
}

// checkSnapshot returns the backup if it is broken; ok is false if its
// snapshot was deleted meanwhile; err is a failure that is not damage.
func (r *Repository) checkSnapshot(ctx context.Context, id string, good func(ObjectID) bool) (bb *BrokenBackup, ok bool, err error) {
	m, err := r.GetManifest(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		if !isDamage(err) {
			return nil, true, err
		}
		return &BrokenBackup{ID: id, Reason: "snapshot unreadable: " + err.Error()}, true, nil
	}
	bad := map[ObjectID]bool{}
	var reason string
	for i := range m.Nodes {
		n := &m.Nodes[i]
		treeOK := true
		for _, t := range n.Tree {
			if !good(t) {
				bad[t], treeOK = true, false
			}
		}
		if !treeOK {
			reason = fmt.Sprintf("file list of node %s has no good copy", n.NodeID)
			continue
		}
		files, err := r.LoadFiles(ctx, n)
		if err != nil {
			if !isDamage(err) {
				return nil, true, err
			}
			reason = "file list unreadable: " + err.Error()
			continue
		}
		for _, f := range files {
			for _, c := range f.Chunks {
				if !good(c) {
					bad[c] = true
				}
			}
		}
	}
	if len(bad) == 0 && reason == "" {
		return nil, true, nil
	}
	if reason == "" {
		reason = "referenced content has no good copy (not indexed, pack missing, or damaged)"
	}
	bb = &BrokenBackup{ID: id, Reason: reason, BadBlobs: len(bad)}
	for b := range bad {
		bb.Examples = append(bb.Examples, b.String())
	}
	sort.Strings(bb.Examples)
	if len(bb.Examples) > brokenExamples {
		bb.Examples = bb.Examples[:brokenExamples]
	}
	return bb, true, nil
}
