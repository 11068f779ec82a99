package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

// Maintenance commands: gc, cleanup, verify. Through an agent they run as
// cluster operations; gc and verify also run offline against a repository
// (--repository) when no agent is up, e.g. in disaster recovery.

func (a *app) gcCommand() *cobra.Command {
	var f repoFlags
	var id string
	var wait, dryRun bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete blobs no backup references and repack wasteful packs",
		Long: "Through the agent (default) gc runs as a cluster operation. With --repository it runs\n" +
			"here, against the repository directly, holding its exclusive lock.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.url == "" {
				if dryRun {
					return usagef("--dry-run needs --repository")
				}
				return a.startOperation(cmd, fsm.KindGC, &id, wait, func(ctx context.Context) (*api.Operation, error) {
					return a.client().StartGC(ctx, api.StartGCRequest{ID: id, CallbackURL: a.callbackURL})
				})
			}
			ctx, stop := a.context(cmd)
			defer stop()
			r, err := f.open(ctx, a)
			if err != nil {
				return err
			}
			defer r.Close()
			var rep storage.GCReport
			err = withLock(ctx, r, storage.LockExclusive, "crayfish gc (offline)", func(lockID string) error {
				var err error
				rep, err = r.GC(ctx, storage.GCOptions{DryRun: dryRun, LockID: lockID})
				return err
			})
			if err != nil {
				return err
			}
			return a.print(rep, func(w io.Writer) error { return writeGCReport(w, rep, dryRun) })
		},
	}
	a.addRepoFlags(cmd, &f)
	cmd.Flags().StringVar(&id, "id", "", "operation id for safe retries: the same id returns the same operation (a finished one is not run again)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	a.addCallbackFlag(cmd)
	addProgressFlag(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "with --repository: report what would be deleted, delete nothing")
	return cmd
}

// withLock runs fn holding a repository lock, refreshed meanwhile.
func withLock(ctx context.Context, r *storage.Repository, kind storage.LockKind, owner string, fn func(lockID string) error) error {
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := "cli-" + hex.EncodeToString(b[:])
	if err := r.Lock(ctx, id, kind, owner); err != nil {
		return err
	}
	defer r.Unlock(context.WithoutCancel(ctx), id)
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(storage.LockRefreshEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = r.RefreshLock(ctx, id)
			}
		}
	}()
	return fn(id)
}

func (a *app) cleanupCommand() *cobra.Command {
	var id string
	var wait, dryRun bool
	var policy storage.RetentionPolicy
	var keepWithin time.Duration
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Delete the backups a retention policy drops, then garbage-collect",
		Long: "Apply a retention policy: --keep-last N, --keep-within DURATION, --min-keep M\n" +
			"(a backup is kept when any rule keeps it). Without flags the agent's configured\n" +
			"policy (retention_* settings) applies. --dry-run lists what would go.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			policy.KeepWithin = storage.Duration(keepWithin)
			var p *storage.RetentionPolicy
			if cmd.Flags().Changed("keep-last") || cmd.Flags().Changed("keep-within") || cmd.Flags().Changed("min-keep") {
				p = &policy
			}
			if dryRun {
				ctx, stop := a.context(cmd)
				defer stop()
				prev, err := a.client().CleanupPreview(ctx, p)
				if err != nil {
					return err
				}
				return a.print(prev, func(w io.Writer) error { return writePreview(w, prev) })
			}
			return a.startOperation(cmd, fsm.KindCleanup, &id, wait, func(ctx context.Context) (*api.Operation, error) {
				return a.client().StartCleanup(ctx, api.StartCleanupRequest{ID: id, CallbackURL: a.callbackURL, CleanupOptions: api.CleanupOptions{Policy: p}})
			})
		},
	}
	cmd.Flags().IntVar(&policy.KeepLast, "keep-last", 0, "keep the newest N backups")
	cmd.Flags().DurationVar(&keepWithin, "keep-within", 0, "keep backups younger than this (e.g. 720h)")
	cmd.Flags().IntVar(&policy.MinKeep, "min-keep", 0, "never keep fewer than this many backups")
	cmd.Flags().StringVar(&id, "id", "", "operation id for safe retries: the same id returns the same operation (a finished one is not run again)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	a.addCallbackFlag(cmd)
	addProgressFlag(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be deleted; change nothing")
	return cmd
}

func writePreview(w io.Writer, p *api.CleanupPreview) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKUP\tSTARTED\tDECISION\tWHY")
	for _, d := range p.Decisions {
		dec := "delete"
		if d.Keep {
			dec = "keep"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.BackupID, d.StartedAt.Local().Format("2006-01-02 15:04:05"), dec, orDash(strings.Join(d.Reasons, ", ")))
	}
	return tw.Flush()
}

func (a *app) verifyCommand() *cobra.Command {
	var f repoFlags
	var id, subset string
	var wait, readData bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the repository: structure, and with --read-data every byte",
		Long: "Check that every backup's blobs are indexed and every indexed pack exists with the\n" +
			"right size; --read-data downloads and authenticates everything, --read-data-subset=P%\n" +
			"a deterministic share of the packs. Exits non-zero when anything is wrong, naming\n" +
			"each missing or corrupt object and the backups it breaks. Every damaged blob found is\n" +
			"recorded in the repository, so no later backup deduplicates against it (the next\n" +
			"backup stores it again; docs/operations.md is the runbook). Through the agent by\n" +
			"default; with --repository it runs here (no agent needed).",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := api.VerifyOptions{ReadData: readData}
			if subset != "" {
				p, err := parseFraction(subset)
				if err != nil {
					return usagef("--read-data-subset: %v", err)
				}
				opts.ReadDataSubset = p
			}
			if f.url == "" {
				err := a.startOperation(cmd, fsm.KindVerify, &id, wait, func(ctx context.Context) (*api.Operation, error) {
					return a.client().StartVerify(ctx, api.StartVerifyRequest{ID: id, CallbackURL: a.callbackURL, VerifyOptions: opts})
				})
				return err
			}
			ctx, stop := a.context(cmd)
			defer stop()
			r, err := f.open(ctx, a)
			if err != nil {
				return err
			}
			defer r.Close()
			var rep storage.VerifyReport
			err = withLock(ctx, r, storage.LockShared, "crayfish verify (offline)", func(string) error {
				var err error
				rep, err = r.Verify(ctx, storage.VerifyOptions{ReadData: opts.ReadData, ReadDataSubset: opts.ReadDataSubset})
				return err
			})
			if err != nil {
				return err
			}
			if err := a.print(rep, func(w io.Writer) error { return writeVerifyReport(w, rep) }); err != nil {
				return err
			}
			if len(rep.Problems) > 0 {
				return opFailedError{fmt.Sprintf("%d problems found", len(rep.Problems))}
			}
			return nil
		},
	}
	a.addRepoFlags(cmd, &f)
	cmd.Flags().BoolVar(&readData, "read-data", false, "download and authenticate every pack")
	cmd.Flags().StringVar(&subset, "read-data-subset", "", "download this share of the packs, e.g. 10%")
	cmd.Flags().StringVar(&id, "id", "", "operation id for safe retries: the same id returns the same operation (a finished one is not run again)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	a.addCallbackFlag(cmd)
	addProgressFlag(cmd)
	return cmd
}

// parseFraction reads "10%" or "0.1" as 0.1.
func parseFraction(s string) (float64, error) {
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a percentage", s)
	}
	if pct {
		v /= 100
	}
	if v <= 0 || v > 1 {
		return 0, fmt.Errorf("%q is outside (0%%, 100%%]", s)
	}
	return v, nil
}

func writeVerifyReport(w io.Writer, rep storage.VerifyReport) error {
	fmt.Fprintf(w, "snapshots %d, log archives %d, packs %d, blobs %d, packs read %d (%s)\n", rep.Snapshots, rep.LogArchives, rep.Packs, rep.Blobs, rep.PacksRead, humanBytes(rep.BytesRead))
	if len(rep.Problems) == 0 {
		_, err := fmt.Fprintln(w, "no problems found")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tOBJECT\tBACKUPS\tDETAIL")
	for _, p := range rep.Problems {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Kind, p.Object, orDash(strings.Join(p.Backups, ",")), p.Detail)
	}
	return tw.Flush()
}

// writeStruct prints a report struct as aligned "Field: value" lines.
// writeGCReport prints what a garbage collection decided (and did),
// category by category, naming the first packs of each.
func writeGCReport(w io.Writer, rep storage.GCReport, dryRun bool) error {
	c := rep.Classification
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	deleted, repacked := "deleted", "repacked"
	if dryRun {
		deleted, repacked = "would be deleted", "would be repacked"
	}
	fmt.Fprintf(tw, "Snapshots:\t%d\n", rep.Snapshots)
	fmt.Fprintf(tw, "Referenced blobs:\t%d (%s)\n", c.Referenced.Blobs, humanBytes(c.Referenced.Bytes))
	fmt.Fprintf(tw, "Unreferenced blobs:\t%d (%s)\n", c.Unreferenced.Blobs, humanBytes(c.Unreferenced.Bytes))
	sets := []struct {
		name string
		set  storage.GCPackSet
	}{
		{"Packs " + deleted + " (nothing referenced)", c.Condemned},
		{"Packs " + repacked + " (too much unreferenced)", c.Repack},
		{"Unindexed packs " + deleted, c.UnindexedDeleted},
		{"Unindexed packs kept (within the grace)", c.UnindexedKept},
	}
	for _, s := range sets {
		fmt.Fprintf(tw, "%s:\t%d (%s)\n", s.name, s.set.Count, humanBytes(s.set.Bytes))
	}
	if !dryRun {
		fmt.Fprintf(tw, "Bytes freed:\t%s\n", humanBytes(rep.BytesFreed))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range sets {
		for i, p := range s.set.Packs {
			if i == 10 {
				fmt.Fprintf(w, "  ... %d more\n", s.set.Count-10)
				break
			}
			fmt.Fprintf(w, "  %s: %s %s", strings.ToLower(s.name[:1])+s.name[1:], p.Key, humanBytes(p.Size))
			if p.DeadFraction > 0 {
				fmt.Fprintf(w, ", %.0f%% unreferenced", 100*p.DeadFraction)
			}
			fmt.Fprintln(w)
		}
	}
	for _, warn := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	return nil
}

func writeStruct(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s:\t%v\n", k, m[k])
	}
	return tw.Flush()
}
