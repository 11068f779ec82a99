package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// writeDamage lists the files restore steps left out because their
// chunks are damaged in the repository, each with its chunk and pack.
func writeDamage(w io.Writer, op *api.Operation) error {
	header := false
	for _, s := range op.Steps {
		if s.Name != wire.StepRestore || len(s.Result) == 0 {
			continue
		}
		var res wire.RestoreResult
		if json.Unmarshal(s.Result, &res) != nil || res.DamagedTotal == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nDamaged files, not restored (chunks missing or corrupt in the repository):")
			header = true
		}
		tw := newTable(w)
		fmt.Fprintf(tw, "NODE\tPATH\tCHUNK\tPROBLEM\tPACK\n")
		for _, f := range res.Damaged {
			for _, c := range f.Chunks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(s.Node), cell(f.Path), c.ID, c.Problem, orDash(c.Pack))
			}
			if f.ChunksTotal > len(f.Chunks) {
				fmt.Fprintf(tw, "%s\t%s\t(%d more chunks)\t\t\n", cell(s.Node), cell(f.Path), f.ChunksTotal-len(f.Chunks))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if n := res.DamagedTotal - int64(len(res.Damaged)); n > 0 {
			fmt.Fprintf(w, "... and %d more damaged files on %s (its log names them all)\n", n, s.Node)
		}
	}
	return nil
}
