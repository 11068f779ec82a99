package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

// repairCommand groups the repairs of a damaged repository:
// docs/operations.md has the runbook that says when to run which.
func (a *app) repairCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Repair a damaged repository: index, packs, snapshots (see docs/operations.md)",
		Long: "Each repair runs under the repository's exclusive lock: through the agent (default)\n" +
			"as a cluster operation, or with --repository here, against the repository directly.\n" +
			"--dry-run reports what would change and changes nothing.",
		Args: noArgs,
	}
	cmd.AddCommand(
		a.repairKindCommand(storage.RepairIndex, "Rebuild the index from the packs' authenticated footers",
			"Lists every pack, reads and authenticates its footer and writes an index listing every\n"+
				"blob found; the old index segments are then deleted. A pack whose footer does not\n"+
				"authenticate keeps the entries the old index had for it. Use it when index segments\n"+
				"are lost or damaged."),
		a.repairKindCommand(storage.RepairPacks, "Salvage the readable blobs of damaged packs and drop the packs",
			"Every pack recorded as damaged (by verify, a restore or any read) or indexed but\n"+
				"missing: its blobs are read and verified; those that verify are written into new\n"+
				"packs, those that have a good copy elsewhere are left to it, the rest are dropped\n"+
				"from the index (listed as lost); then the damaged packs are deleted. Take a new\n"+
				"backup from the nodes that still hold the data first: it stores damaged content again."),
		a.repairKindCommand(storage.RepairSnapshots, "List (and with --forget delete) backups whose content is gone for good",
			"A backup is broken when it references a blob that no index lists, whose pack is\n"+
				"missing, or whose only copy is recorded damaged, or when its snapshot or file list\n"+
				"does not load. Without --forget the broken backups are listed; --forget deletes\n"+
				"their snapshots (the data of other backups is untouched). Exits non-zero when\n"+
				"broken backups remain."),
	)
	return cmd
}

func (a *app) repairKindCommand(kind, short, long string) *cobra.Command {
	var f repoFlags
	var id string
	var wait, dryRun, forget bool
	cmd := &cobra.Command{
		Use:   kind,
		Short: short,
		Long:  long,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := api.RepairOptions{Kind: kind, DryRun: dryRun, Forget: forget}
			if f.url == "" {
				err := a.startOperation(cmd, fsm.KindRepair, &id, wait, func(ctx context.Context) (*api.Operation, error) {
					return a.client().StartRepair(ctx, api.StartRepairRequest{ID: id, CallbackURL: a.callbackURL, RepairOptions: opts})
				})
				if wait && !a.json() {
					a.printRepairResult(cmd, id)
				}
				return err
			}
			ctx, stop := a.context(cmd)
			defer stop()
			r, err := f.open(ctx, a)
			if err != nil {
				return err
			}
			defer r.Close()
			var rep storage.RepairReport
			err = withLock(ctx, r, storage.LockExclusive, "crayfish repair "+kind+" (offline)", func(lockID string) error {
				var err error
				rep, err = r.Repair(ctx, kind, storage.RepairOptions{DryRun: dryRun, Forget: forget, LockID: lockID})
				return err
			})
			if err != nil {
				return err
			}
			if err := a.print(rep, func(w io.Writer) error { return writeRepairReport(w, rep) }); err != nil {
				return err
			}
			if s := rep.Snapshots; s != nil && len(s.Broken) > len(s.Forgotten) {
				return opFailedError{fmt.Sprintf("%d broken backups", len(s.Broken)-len(s.Forgotten))}
			}
			return nil
		},
	}
	a.addRepoFlags(cmd, &f)
	cmd.Flags().StringVar(&id, "id", "", "operation id for safe retries: the same id returns the same operation (a finished one is not run again)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	a.addCallbackFlag(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would change; change nothing")
	if kind == storage.RepairSnapshots {
		cmd.Flags().BoolVar(&forget, "forget", false, "delete the snapshots of the broken backups")
	}
	addProgressFlag(cmd)
	return cmd
}

// printRepairResult prints the report a finished repair operation
// recorded, after the operation itself (text mode; JSON has it in the
// step result).
func (a *app) printRepairResult(cmd *cobra.Command, id string) {
	ctx, stop := a.context(cmd)
	defer stop()
	op, err := a.client().Operation(ctx, id)
	if err != nil {
		return
	}
	for _, st := range op.Steps {
		var rep storage.RepairReport
		if st.Name == "repair" && len(st.Result) > 0 && json.Unmarshal(st.Result, &rep) == nil {
			fmt.Fprintln(a.stdout)
			_ = writeRepairReport(a.stdout, rep)
		}
	}
}

func writeRepairReport(w io.Writer, rep storage.RepairReport) error {
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: nothing was changed")
	}
	switch {
	case rep.Index != nil:
		return writeStruct(w, rep.Index)
	case rep.Packs != nil:
		return writeStruct(w, rep.Packs)
	case rep.Snapshots != nil:
		s := rep.Snapshots
		fmt.Fprintf(w, "snapshots checked %d, broken %d, forgotten %d\n", s.Snapshots, len(s.Broken), len(s.Forgotten))
		if len(s.Broken) == 0 {
			return nil
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "BACKUP\tBAD BLOBS\tREASON\tEXAMPLES")
		for _, b := range s.Broken {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", b.ID, b.BadBlobs, b.Reason, orDash(strings.Join(b.Examples, ",")))
		}
		return tw.Flush()
	}
	return nil
}
