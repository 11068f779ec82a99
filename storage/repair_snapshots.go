package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
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
// (run it after repair packs and after a new backup had its chance to
// store the content again), or whose snapshot or file list is unreadable.
// With Forget it deletes their snapshot objects.
func (r *Repository) repairSnapshots(ctx context.Context, opts RepairOptions) (*RepairSnapshotsReport, error) {
	ids, err := r.ListBackupIDs(ctx)
	if err != nil {
		return nil, err
	}
	segs, _, err := r.resetIndex(ctx)
	if err != nil {
		return nil, err
	}
	listed, err := r.listPacks(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	idx := r.idx
	r.mu.Unlock()
	good := func(b ObjectID) bool {
		loc, ok := idx.Lookup(b)
		if !ok || segs.damaged.at(loc) {
			return false
		}
		_, ok = listed[packKey(BlobType(loc.PackType), loc.Pack)]
		return ok
	}
	rep := &RepairSnapshotsReport{}
	var mu sync.Mutex
	parallelEach(ctx, 8, ids, func(id string) {
		bb, ok := r.checkSnapshot(ctx, id, good)
		mu.Lock()
		defer mu.Unlock()
		if ok {
			rep.Snapshots++
		}
		if bb != nil {
			rep.Broken = append(rep.Broken, *bb)
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(rep.Broken, func(i, j int) bool { return rep.Broken[i].ID < rep.Broken[j].ID })
	if !opts.Forget || opts.DryRun {
		return rep, nil
	}
	for _, b := range rep.Broken {
		if err := r.DeleteSnapshot(ctx, b.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return rep, err
		}
		rep.Forgotten = append(rep.Forgotten, b.ID)
	}
	return rep, nil
}

// checkSnapshot returns the backup if it is broken; ok is false if its
// snapshot was deleted meanwhile.
func (r *Repository) checkSnapshot(ctx context.Context, id string, good func(ObjectID) bool) (bb *BrokenBackup, ok bool) {
	m, err := r.GetSnapshot(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, false
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, true
		}
		return &BrokenBackup{ID: id, Reason: "snapshot unreadable: " + err.Error()}, true
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
			if ctx.Err() == nil {
				reason = "file list unreadable: " + err.Error()
			}
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
		return nil, true
	}
	if reason == "" {
		reason = "referenced content has no good copy (not indexed, pack missing, or recorded damaged)"
	}
	bb = &BrokenBackup{ID: id, Reason: reason, BadBlobs: len(bad)}
	for b := range bad {
		bb.Examples = append(bb.Examples, b.String())
	}
	sort.Strings(bb.Examples)
	if len(bb.Examples) > brokenExamples {
		bb.Examples = bb.Examples[:brokenExamples]
	}
	return bb, true
}
