package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// RepairPacksReport: damaged packs salvaged and dropped.
type RepairPacksReport struct {
	// DamagedPacks are the packs repaired (recorded damaged, or indexed
	// and missing); every one is deleted after its readable blobs moved.
	DamagedPacks []string `json:"damaged_packs"`
	MissingPacks []string `json:"missing_packs,omitempty"`
	// BlobsSalvaged were read, verified and written into new packs.
	BlobsSalvaged int `json:"blobs_salvaged"`
	// BlobsSuperseded: damaged copies whose blob has a good copy in
	// another pack already (the index locates it there).
	BlobsSuperseded int `json:"blobs_superseded"`
	// BlobsLost did not verify and have no other copy: no index lists them
	// any more (repair snapshots names the backups that need them).
	BlobsLost    []string `json:"blobs_lost,omitempty"`
	PacksWritten int      `json:"packs_written"`
	// RecordsRemoved: damage records of the dropped packs and stale ones.
	RecordsRemoved int `json:"records_removed"`
}

// packsRepairPlan is what repair packs will do, computed without writing.
type packsRepairPlan struct {
	gidx    *index.Index                // the index now
	bad     map[ObjectID]bool           // packs to drop
	keys    map[ObjectID]string         // their keys (for the existing ones)
	salvage map[ObjectID][]ObjectID     // pack → blobs that verify
	alt     map[ObjectID]index.Location // blob → a good copy in a pack that stays
	lost    []ObjectID
	stale   map[ObjectID]bool // packs of records that are neither listed nor indexed
	// superseded counts recorded damaged copies in bad packs whose blob
	// the index locates elsewhere.
	superseded int
}

func (r *Repository) repairPacks(ctx context.Context, opts RepairOptions) (*RepairPacksReport, error) {
	segs, plan, err := r.resetIndex(ctx)
	if err != nil {
		return nil, err
	}
	_, doomed := plan.doomed()
	pl, err := r.planPacksRepair(ctx, segs, doomed)
	if err != nil {
		return nil, err
	}
	rep := &RepairPacksReport{}
	var badIDs []ObjectID
	for id := range pl.bad {
		badIDs = append(badIDs, id)
	}
	sortIDs(badIDs)
	for _, id := range badIDs {
		if k, ok := pl.keys[id]; ok {
			rep.DamagedPacks = append(rep.DamagedPacks, k)
		} else {
			rep.MissingPacks = append(rep.MissingPacks, id.String())
		}
	}
	for _, bs := range pl.salvage {
		rep.BlobsSalvaged += len(bs)
	}
	rep.BlobsSuperseded = len(pl.alt) + pl.superseded
	for _, b := range pl.lost {
		rep.BlobsLost = append(rep.BlobsLost, b.String())
	}
	sort.Strings(rep.BlobsLost)
	if opts.DryRun || (len(pl.bad) == 0 && len(pl.stale) == 0) {
		return rep, nil
	}

	// Execute: salvaged blobs into new packs, the index without the bad
	// packs, then the deletions.
	rp, err := r.salvage(ctx, pl, badIDs)
	if err != nil {
		return nil, err
	}
	rep.PacksWritten = len(rp.keys)
	nidx, err := pl.indexAfter(rp.nidx)
	if err != nil {
		return nil, err
	}
	var drop []string
	for _, id := range badIDs {
		if k, ok := pl.keys[id]; ok {
			drop = append(drop, k)
		}
	}
	if _, err := r.replaceIndex(ctx, nidx, segs.keys, drop, opts); err != nil {
		return nil, err
	}
	for id := range pl.stale {
		pl.bad[id] = true
	}
	// The plan's deletions removed the records of the deleted packs; the
	// missing and stale ones remain.
	if _, err = r.deleteDamaged(ctx, pl.bad); err != nil {
		return nil, err
	}
	for c := range segs.damaged {
		if pl.bad[c.pack] {
			rep.RecordsRemoved++
		}
	}
	if _, _, err := r.resetIndex(ctx); err != nil {
		return nil, fmt.Errorf("done, but reloading the index failed: %w", err)
	}
	return rep, nil
}

// planPacksRepair finds the packs to repair (recorded damaged, or indexed
// and missing) and reads every blob the index locates in them: those that
// verify are salvaged, the others are replaced by a copy in a pack that
// stays or lost. It writes nothing.
func (r *Repository) planPacksRepair(ctx context.Context, segs *segmentSet, doomed map[ObjectID]bool) (*packsRepairPlan, error) {
	gidx, err := segs.build(doomed)
	if err != nil {
		return nil, err
	}
	listed, err := r.listPacks(ctx)
	if err != nil {
		return nil, err
	}
	exists := map[ObjectID]string{}
	for k := range listed {
		if _, id, _ := parsePackKey(k); !doomed[id] {
			exists[id] = k
		}
	}
	pl := &packsRepairPlan{gidx: gidx, bad: map[ObjectID]bool{}, keys: map[ObjectID]string{},
		salvage: map[ObjectID][]ObjectID{}, alt: map[ObjectID]index.Location{}, stale: map[ObjectID]bool{}}
	byPack := pl.findBad(segs.damaged, exists)
	pl.findOtherCopies(segs, exists)
	if err := r.readBadPacks(ctx, pl, byPack); err != nil {
		return nil, err
	}
	return pl, nil
}

// salvage writes the blobs that verified into new packs. It reads each
// pack again rather than hold every salvaged blob in memory; what
// verified during planning must verify now, or the repair stops before
// anything is deleted.
func (r *Repository) salvage(ctx context.Context, pl *packsRepairPlan, badIDs []ObjectID) (*repacker, error) {
	rp := &repacker{r: r, nidx: index.New()}
	for _, id := range badIDs {
		if len(pl.salvage[id]) == 0 {
			continue
		}
		data, err := r.be.Get(ctx, pl.keys[id])
		if err != nil {
			return nil, fmt.Errorf("salvage pack %s: %w", pl.keys[id], err)
		}
		for _, b := range pl.salvage[id] {
			loc, _ := pl.gidx.Lookup(b)
			pt, err := openBlobAt(r, loc, b, data)
			if err != nil {
				return nil, fmt.Errorf("salvage blob %s of pack %s: it verified a moment ago and no longer does: %w", b, pl.keys[id], err)
			}
			if err := rp.add(ctx, BlobType(loc.PackType), plainBlob{id: b, typ: loc.Type, data: pt}); err != nil {
				return nil, err
			}
		}
	}
	return rp, rp.finishAll(ctx)
}

// indexAfter is the whole index once the bad packs are gone: salvaged
// (already in salvaged), moved to another copy, or left out (lost).
func (pl *packsRepairPlan) indexAfter(salvaged *index.Index) (*index.Index, error) {
	for id, loc := range pl.gidx.All() {
		if pl.bad[loc.Pack] {
			a, ok := pl.alt[id]
			if !ok {
				continue // salvaged or lost
			}
			loc = a
		}
		if _, err := salvaged.Add(id, loc); err != nil {
			return nil, fmt.Errorf("build index: %w", err)
		}
	}
	return salvaged, nil
}

// findBad marks the packs with damage records (stale if the pack is
// neither listed nor indexed) and the indexed packs that do not exist,
// and returns the blobs the index locates in each pack.
func (pl *packsRepairPlan) findBad(damaged damageSet, exists map[ObjectID]string) map[ObjectID][]ObjectID {
	indexed := pl.gidx.Packs()
	located := map[storedCopy]bool{}
	byPack := map[ObjectID][]ObjectID{}
	for id, loc := range pl.gidx.All() {
		located[copyAt(loc)] = true
		byPack[loc.Pack] = append(byPack[loc.Pack], id)
		if _, ok := exists[loc.Pack]; !ok {
			pl.bad[loc.Pack] = true
		}
	}
	for c := range damaged {
		_, isListed := exists[c.pack]
		_, isIndexed := indexed[c.pack]
		switch {
		case isListed || isIndexed: // an indexed, missing one was recorded, then lost
			pl.bad[c.pack] = true
			if !located[c] {
				pl.superseded++
			}
		default:
			pl.stale[c.pack] = true
		}
	}
	for id := range pl.bad {
		if k, ok := exists[id]; ok {
			pl.keys[id] = k
		}
	}
	return byPack
}

// findOtherCopies finds, for the blobs located in bad packs, an undamaged
// copy in an existing pack that stays.
func (pl *packsRepairPlan) findOtherCopies(segs *segmentSet, exists map[ObjectID]string) {
	for _, ks := range segs.segs {
		for _, e := range ks.seg.Entries {
			p := ks.seg.Packs[e.PackOrd]
			if loc, ok := pl.gidx.Lookup(e.ID); !ok || !pl.bad[loc.Pack] || pl.bad[p.ID] || segs.damaged[storedCopy{p.ID, e.Offset}] {
				continue
			}
			if _, ok := exists[p.ID]; !ok {
				continue
			}
			if _, seen := pl.alt[e.ID]; !seen {
				pl.alt[e.ID] = index.Location{Pack: p.ID, PackType: p.Type, PackSize: p.Size,
					Offset: e.Offset, StoredLen: e.StoredLen, RawLen: e.RawLen, Type: e.Type, Codec: e.Codec}
			}
		}
	}
}

// readBadPacks reads each bad pack whole and sorts the blobs the index
// locates in it: another copy exists, the blob verifies (salvage), or it
// is lost. A read that fails for another reason than a missing pack stops
// the repair: dropping blobs on a transient error would lose them.
func (r *Repository) readBadPacks(ctx context.Context, pl *packsRepairPlan, byPack map[ObjectID][]ObjectID) error {
	for pid := range pl.bad {
		var data []byte
		if k, ok := pl.keys[pid]; ok {
			var err error
			if data, err = r.be.Get(ctx, k); err != nil {
				if !errors.Is(err, backend.ErrNotFound) {
					return fmt.Errorf("read pack %s: %w", k, err)
				}
				data = nil // gone since it was listed: every blob needs another copy
			}
		}
		for _, b := range byPack[pid] {
			if _, ok := pl.alt[b]; ok {
				continue
			}
			loc, _ := pl.gidx.Lookup(b)
			if data != nil {
				if _, err := openBlobAt(r, loc, b, data); err == nil {
					pl.salvage[pid] = append(pl.salvage[pid], b)
					continue
				}
			}
			pl.lost = append(pl.lost, b)
		}
	}
	return nil
}

// openBlobAt verifies and opens blob id at loc in the whole pack data.
func openBlobAt(r *Repository, loc index.Location, id ObjectID, data []byte) ([]byte, error) {
	end := int64(loc.Offset) + int64(loc.StoredLen)
	if end > int64(len(data)) {
		return nil, fmt.Errorf("blob %s lies beyond the pack's %d bytes: %w", id, len(data), ErrCorrupt)
	}
	return pack.OpenBlob(r.data, loc.Entry(id), data[loc.Offset:end])
}
