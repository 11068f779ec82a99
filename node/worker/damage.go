package worker

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// Bounds of the damage a restore step records: its result lives in the
// FSM, so a repository that lost most of its packs must not blow up every
// snapshot of the Raft log. The totals count everything; the node's log
// names every damaged file.
const (
	maxDamagedFiles      = 1000 // files listed in RestoreResult.Damaged
	maxDamagedFileChunks = 16   // chunks listed per file
	maxDamagedBlobs      = 1000 // ids listed in RestoreResult.DamagedBlobs
)

// recordDamage fills res's damage fields from what tree.Restore left out,
// naming each chunk's pack with packOf.
func recordDamage(res *wire.RestoreResult, files []tree.DamagedFile, packOf func(storage.ObjectID) (storage.ObjectID, bool)) {
	res.DamagedTotal = int64(len(files))
	blobs := map[storage.ObjectID]bool{}
	for _, f := range files {
		for _, c := range f.Chunks {
			blobs[c.ID] = true
		}
		if len(res.Damaged) >= maxDamagedFiles {
			continue
		}
		df := wire.DamagedFile{Path: f.Path, ChunksTotal: len(f.Chunks)}
		for _, c := range f.Chunks[:min(len(f.Chunks), maxDamagedFileChunks)] {
			dc := wire.DamagedChunk{Index: c.Index, ID: c.ID, Problem: wire.DamageCorrupt}
			if c.Missing {
				dc.Problem = wire.DamageMissing
			}
			if p, ok := packOf(c.ID); ok {
				dc.Pack = p.String()
			}
			df.Chunks = append(df.Chunks, dc)
		}
		res.Damaged = append(res.Damaged, df)
	}
	res.DamagedBlobsTotal = int64(len(blobs))
	ids := make([]storage.ObjectID, 0, len(blobs))
	for id := range blobs {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b storage.ObjectID) int { return bytes.Compare(a[:], b[:]) })
	res.DamagedBlobs = ids[:min(len(ids), maxDamagedBlobs)]
}

// damageSummary names the first few damaged files for an error message.
func damageSummary(res *wire.RestoreResult) string {
	var parts []string
	for _, f := range res.Damaged[:min(len(res.Damaged), 3)] {
		c := f.Chunks[0]
		where := "no index entry"
		if c.Pack != "" {
			where = "pack " + c.Pack
		}
		parts = append(parts, fmt.Sprintf("%s (chunk %s %s, %s)", f.Path, c.ID, c.Problem, where))
	}
	more := ""
	if n := res.DamagedTotal - int64(len(parts)); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return strings.Join(parts, ", ") + more
}

// damageFailure is the error of a restore step that left damaged files
// out: permanent (a retry would download everything again to meet the same
// damage), and marked so the coordinator records the result.
func damageFailure(res *wire.RestoreResult) error {
	return wire.Permanent(wire.MarkDamaged(fmt.Errorf("%w: %d files not restored: %s; every other file was restored",
		wire.ErrDamaged, res.DamagedTotal, damageSummary(res))))
}

// pluginDamageFailure is damageFailure for a plugin restore: the plugin is
// not called, and the error names what it would have refused to load.
func pluginDamageFailure(name string, p plugin.Plugin, res *wire.RestoreResult) error {
	if n, ok := p.(plugin.DamageNamer); ok {
		paths := make([]string, len(res.Damaged))
		for i, f := range res.Damaged {
			paths[i] = f.Path
		}
		if units := n.DamagedUnits(paths); len(units) > 0 {
			return wire.Permanent(wire.MarkDamaged(fmt.Errorf("%w: %s restore refused before touching the database: %s have damaged files: %d files: %s",
				wire.ErrDamaged, name, strings.Join(units, ", "), res.DamagedTotal, damageSummary(res))))
		}
	}
	return wire.Permanent(wire.MarkDamaged(fmt.Errorf("%w: %s restore refused before touching the database: %d files: %s",
		wire.ErrDamaged, name, res.DamagedTotal, damageSummary(res))))
}

// logDamage names every damaged file in the node's log: the step result
// keeps only the first maxDamagedFiles.
func (w *LocalWorker) logDamage(ref wire.StepRef, files []tree.DamagedFile) {
	for _, f := range files {
		for _, c := range f.Chunks {
			w.log.Error("damaged file not restored", "op", ref.OpID, "path", f.Path, "chunk", c.ID, "index", c.Index, "missing", c.Missing, "err", c.Detail)
		}
	}
}
