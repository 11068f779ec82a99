package storage

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// Carrying out GC's decision (classifyGC): repack, the new index, the
// saved plan (gcplan.go), the deletions; or, in a dry run, the report of
// what that would free.

// gcExecute repacks, writes the new index, saves the plan and deletes
// what it names. live is the referenced set d was computed from; gidx and
// segs are the index GC loaded.
func (r *Repository) gcExecute(ctx context.Context, opts GCOptions, d *gcDecision, live map[ObjectID]struct{},
	gidx *index.Index, segs *segmentSet, rep *GCReport, progress func(string, int, int)) error {
	// 5. Repack.
	rp := &repacker{r: r, nidx: index.New()}
	var repacked []ObjectID
	if len(d.repack) > 0 {
		byPack := map[ObjectID][]ObjectID{}
		want := setOf(d.repack)
		for id, loc := range gidx.All() {
			if _, ok := live[id]; ok && want[loc.Pack] {
				byPack[loc.Pack] = append(byPack[loc.Pack], id)
			}
		}
		for i, pid := range d.repack {
			progress("repack", i, len(d.repack))
			ok, err := rp.repackOne(ctx, pid, d.stats[pid], byPack[pid], gidx)
			if err != nil {
				return err
			}
			if ok {
				repacked = append(repacked, pid)
			} else {
				rep.Warnings = append(rep.Warnings, rp.warning)
			}
		}
		if err := rp.finishAll(ctx); err != nil {
			return err
		}
		progress("repack", len(d.repack), len(d.repack))
	}
	rep.PacksRepacked = len(repacked)
	rep.BytesFreed -= rp.written

	// 6. The new index: every blob of every pack that stays, then the
	// repacked blobs' new locations (already in rp.nidx).
	gone := setOf(d.condemned)
	for _, id := range repacked {
		gone[id] = true
	}
	for id, loc := range gidx.All() {
		if !gone[loc.Pack] {
			if _, err := rp.nidx.Add(id, loc); err != nil {
				return fmt.Errorf("gc: build index: %w", err)
			}
		}
	}
	newSegs := index.SegmentsFrom(rp.nidx, 0)
	rewrite := len(gone) > 0 || len(segs.keys) > len(newSegs)
	written := map[string]bool{}
	for _, k := range rp.keys {
		written[k] = true
	}
	if rewrite {
		if len(newSegs) > 0 {
			last := newSegs[len(newSegs)-1]
			for _, k := range segs.keys {
				if id, err := ParseObjectID(strings.TrimPrefix(k, indexPrefix)); err == nil {
					last.Supersedes = append(last.Supersedes, id)
				}
			}
		}
		for i, seg := range newSegs { // the superseding one last
			progress("index", i, len(newSegs))
			data, err := index.EncodeSegment(r.idxCi, seg)
			if err != nil {
				return fmt.Errorf("gc: encode index segment: %w", err)
			}
			key := indexPrefix + ObjectID(sha256.Sum256(data)).String()
			if err := r.be.Put(ctx, key, data, false); err != nil {
				return fmt.Errorf("gc: write index segment: %w", err)
			}
			written[key] = true
			rep.BytesFreed -= int64(len(data))
		}
		rep.SegmentsAfter = len(newSegs)
	} else {
		rep.SegmentsAfter = len(segs.keys)
	}

	// 7. The plan.
	p := &gcPlan{Created: time.Now().UTC()}
	add := func(key string, size int64) bool {
		if written[key] {
			return false // an unencrypted repack may reproduce a pack byte for byte
		}
		p.Delete = append(p.Delete, key)
		rep.BytesFreed += size
		return true
	}
	if rewrite {
		for _, k := range segs.keys {
			add(k, segs.sizes[k])
		}
	}
	for _, id := range d.condemned {
		k := packKey(d.stats[id].typ, id)
		if add(k, d.sizeOf(k, 0)) {
			rep.PacksDeleted++
		}
	}
	for _, id := range repacked {
		k := packKey(d.stats[id].typ, id)
		add(k, d.sizeOf(k, 0))
	}
	for _, k := range d.unindexed {
		if add(k, d.listed[k]) {
			rep.UnindexedPacksDeleted++
		}
	}
	if len(p.Delete) > 0 {
		// The last moment to find out that our exclusive lock lapsed: a
		// writer may then have deduplicated against what we are about to
		// condemn. After the plan exists, SyncIndex hides it from writers.
		if opts.LockID != "" {
			if err := r.RefreshLock(ctx, opts.LockID); err != nil {
				return fmt.Errorf("gc: before deleting: %w", err)
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		data, err := r.encodePlan(p)
		if err != nil {
			return err
		}
		if err := r.be.Put(ctx, gcPlanKey, data, false); err != nil {
			return fmt.Errorf("gc: write %s: %w", gcPlanKey, err)
		}
		// 8. Delete.
		if err := r.runPlan(ctx, p, progress); err != nil {
			return err
		}
	}
	return nil
}

// dryRunReport fills in what GC would delete and free, from the decision
// alone (repacked packs' new sizes are estimated: their live records plus
// footer entries and headers).
func dryRunReport(d *gcDecision, gidx *index.Index, segs *segmentSet, rep *GCReport) {
	rep.PacksDeleted = len(d.condemned)
	rep.PacksRepacked = len(d.repack)
	rep.UnindexedPacksDeleted = len(d.unindexed)
	for _, id := range d.condemned {
		rep.BytesFreed += d.sizeOf(packKey(d.stats[id].typ, id), d.stats[id].size)
	}
	for _, id := range d.repack {
		ps := d.stats[id]
		rep.BytesFreed += d.sizeOf(packKey(ps.typ, id), ps.size) - ps.liveBytes - int64(ps.live)*pack.EntrySize - 2*pack.HeaderSize
	}
	for _, k := range d.unindexed {
		rep.BytesFreed += d.listed[k]
	}
	// The segments the index would have (repacked blobs counted at their
	// old location: the number is what matters).
	nidx := index.New()
	gone := setOf(d.condemned)
	for id, loc := range gidx.All() {
		if !gone[loc.Pack] {
			nidx.Add(id, loc)
		}
	}
	newSegs := len(index.SegmentsFrom(nidx, 0))
	if d.summary.RewriteIndex || len(segs.keys) > newSegs {
		rep.SegmentsAfter = newSegs
	} else {
		rep.SegmentsAfter = len(segs.keys)
	}
}
