package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/client"
)

// Commands that start operations: backup, restore, delete.

func (a *app) backupCommand() *cobra.Command {
	var req api.StartBackupRequest
	var wait bool
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up every node of the cluster",
		Long: "Start a backup of every node. With --id the request is idempotent: the same id\n" +
			"returns the same operation, so it is safe to retry.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.startOperation(cmd, fsm.KindBackup, &req.ID, wait, func(ctx context.Context) (*api.Operation, error) {
				req.CallbackURL = a.callbackURL
				return a.client().StartBackup(ctx, req)
			})
		},
	}
	cmd.Flags().StringVar(&req.ID, "id", "", "operation id for safe retries: the same id returns the same operation (a finished one is not run again)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	a.addCallbackFlag(cmd)
	addProgressFlag(cmd)
	return cmd
}

func (a *app) restoreCommand() *cobra.Command {
	var req api.StartRestoreRequest
	var wait, dryRun bool
	var mapping []string
	var toTime string
	cmd := &cobra.Command{
		Use:   "restore [BACKUP_ID]",
		Short: "Restore a backup (default: the latest) on every node",
		Long: "Each current node receives the backed-up node of the same id, else one of its zone, else\n" +
			"the next by order of ids; --map NODE=BACKUP_NODE decides by hand.\n\n" +
			"Into the nodes' configured roots a restore mirrors the backup: what the backup lacks is\n" +
			"deleted (paths the include/exclude patterns leave out stay). Into --target it is additive:\n" +
			"the backup's files are created or overwritten and nothing else is touched, unless --delete.\n" +
			"A target that is, contains or lies inside the agent's data dir or a file:// repository, /,\n" +
			"or a system directory (/etc, /usr, ...) is refused before anything is written. When several\n" +
			"nodes restore into one --target, each writes into <target>/<backup node id>/; {node} in the\n" +
			"target places that id explicitly. --dry-run prints what each node would create, overwrite\n" +
			"and delete, the bytes to download and the free space, and changes nothing.",
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				req.BackupID = args[0]
			}
			for _, m := range mapping {
				cur, src, ok := strings.Cut(m, "=")
				if !ok || cur == "" || src == "" {
					return usageError{fmt.Errorf("--map %q: want NODE=BACKUP_NODE", m)}
				}
				if req.Mapping == nil {
					req.Mapping = map[string]string{}
				}
				req.Mapping[cur] = src
			}
			if err := checkSelection(cmd, req); err != nil {
				return err
			}
			if cmd.Flags().Changed("to-time") {
				t, err := time.Parse(time.RFC3339Nano, toTime)
				if err != nil {
					return usagef("--to-time %q: want an RFC 3339 time such as 2026-12-04T21:30:00Z (%v)", toTime, err)
				}
				req.ToTime = &t
			}
			if dryRun {
				return a.previewRestore(cmd, req)
			}
			return a.startOperation(cmd, fsm.KindRestore, &req.ID, wait, func(ctx context.Context) (*api.Operation, error) {
				req.CallbackURL = a.callbackURL
				return a.client().StartRestore(ctx, req)
			})
		},
	}
	cmd.Flags().StringVar(&req.ID, "id", "", "operation id: a retry with the same id returns the same operation instead of starting another")
	cmd.Flags().StringVar(&req.Target, "target", "", "restore into this directory on each node instead of its configured root (additive; {node} is replaced by the backup node's id)")
	cmd.Flags().BoolVar(&req.Delete, "delete", false, "with --target: also delete what the backup lacks in the target")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what each node would create, overwrite and delete; change nothing")
	cmd.Flags().StringVar(&req.Node, "node", "", "restore this node only")
	cmd.Flags().StringArrayVar(&mapping, "map", nil, "NODE=BACKUP_NODE: restore the backup's BACKUP_NODE onto NODE (repeatable)")
	cmd.Flags().BoolVar(&req.ClearUnmapped, "clear-unmapped", false, "empty current nodes that have no counterpart in the backup instead of refusing")
	cmd.Flags().StringSliceVar(&req.Select, "select", nil, "restore only what these patterns select, as the backup's plugin reads them (comma-separated): files: path globs such as etc/app.conf or data/**/*.db; cassandra: ks.table or ks.* into the running cluster")
	cmd.Flags().StringSliceVar(&req.Tables, "tables", nil, "Cassandra: --select under its older name (ks.table or ks.*, comma-separated)")
	cmd.Flags().StringVar(&toTime, "to-time", "", "restore the data as of this RFC 3339 time: the newest backup finished by then (or BACKUP_ID) plus the database log shipped since or carried by later backups (Cassandra with cassandra_commitlog_archive: every node, --select tables or one --node)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	a.addCallbackFlag(cmd)
	addProgressFlag(cmd)
	return cmd
}

// checkSelection refuses empty selection values before anything is sent:
// an unset shell variable in --tables or --node must not widen a restore
// to everything.
func checkSelection(cmd *cobra.Command, req api.StartRestoreRequest) error {
	if cmd.Flags().Changed("tables") && cmd.Flags().Changed("select") {
		return usagef("--tables is --select under its older name: give one of them")
	}
	for flag, list := range map[string][]string{"tables": req.Tables, "select": req.Select} {
		if !cmd.Flags().Changed(flag) {
			continue
		}
		if len(list) == 0 {
			return usagef("--%s is empty: name at least one pattern, or leave --%s out to restore everything", flag, flag)
		}
		for _, t := range list {
			if strings.TrimSpace(t) == "" {
				return usagef("--%s %q holds an empty pattern", flag, strings.Join(list, ","))
			}
		}
	}
	if cmd.Flags().Changed("node") && strings.TrimSpace(req.Node) == "" {
		return usagef("--node is empty: name a node, or leave --node out to restore every node")
	}
	if cmd.Flags().Changed("target") && strings.TrimSpace(req.Target) == "" {
		return usagef("--target is empty: name a directory, or leave --target out to restore into the nodes' roots")
	}
	return nil
}

// previewRestore prints a restore's dry run.
func (a *app) previewRestore(cmd *cobra.Command, req api.StartRestoreRequest) error {
	ctx, stop := a.context(cmd)
	defer stop()
	p, err := a.client().PreviewRestore(ctx, req)
	if err != nil {
		return interrupted(ctx, err, "")
	}
	if err := a.print(p, func(w io.Writer) error { return writeRestorePreview(w, p) }); err != nil {
		return err
	}
	for _, n := range p.Nodes {
		if n.Error != "" {
			return opFailedError{fmt.Sprintf("dry run: %s", n.Error)}
		}
	}
	return nil
}

func (a *app) deleteCommand() *cobra.Command {
	var req api.StartDeleteRequest
	var wait bool
	cmd := &cobra.Command{
		Use:   "delete BACKUP_ID...",
		Short: "Delete backups",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.BackupIDs = args
			return a.startOperation(cmd, fsm.KindDelete, &req.ID, wait, func(ctx context.Context) (*api.Operation, error) {
				req.CallbackURL = a.callbackURL
				return a.client().StartDelete(ctx, req)
			})
		},
	}
	cmd.Flags().StringVar(&req.ID, "id", "", "operation id for safe retries: the same id returns the same operation (a finished one is not run again)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	a.addCallbackFlag(cmd)
	addProgressFlag(cmd)
	return cmd
}

// startRetryFor bounds how long a start request is retried while the
// agent has no leader or cannot be reached (it may be starting up).
const startRetryFor = 30 * time.Second

// startRetrying sends a start request, retrying transient failures. It
// fixes the operation id first (generating one if *id is empty), so a
// retry after an unknown outcome can only return the same operation.
func startRetrying(ctx context.Context, kind fsm.OpKind, id *string, start func(context.Context) (*api.Operation, error)) (*api.Operation, error) {
	if *id == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		*id = string(kind) + "-" + hex.EncodeToString(b[:])
	}
	deadline := time.Now().Add(startRetryFor)
	delay := 100 * time.Millisecond
	for {
		op, err := start(ctx)
		if err == nil || !client.IsTransient(err) || time.Now().Add(delay).After(deadline) {
			return op, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// startOperation starts an operation (see startRetrying) and prints it or,
// with wait, follows it to its end.
func (a *app) startOperation(cmd *cobra.Command, kind fsm.OpKind, id *string, wait bool, start func(context.Context) (*api.Operation, error)) error {
	ctx, stop := a.context(cmd)
	defer stop()
	op, err := startRetrying(ctx, kind, id, start)
	if err != nil {
		return interrupted(ctx, err, "")
	}
	if op.State != fsm.OpRunning {
		// The id names an operation that ran already: --id makes retries
		// safe, it does not repeat work (a cron job with a fixed id would
		// otherwise never back up again without a word).
		finished := "earlier"
		if op.FinishedAt != nil {
			finished = "at " + formatTime(*op.FinishedAt)
		}
		fmt.Fprintf(a.stderr, "operation %s already finished %s (%s); not started again\n", op.ID, finished, op.State)
	}
	return a.started(ctx, op, wait, noProgress(cmd))
}

// started prints a started operation, or with wait follows it to its end
// (with a live progress bar on a terminal, unless noProgress).
func (a *app) started(ctx context.Context, op *api.Operation, wait, noProgress bool) error {
	if !wait {
		return a.print(op, func(w io.Writer) error { return writeStarted(w, op) })
	}
	var onChange func(*api.Operation)
	stopWatch := func() {}
	if !a.json() {
		fmt.Fprintf(a.stderr, "Waiting for %s operation %s (Ctrl-C stops waiting, not the operation)\n", op.Kind, op.ID)
		onChange, stopWatch = waitWatcher(a.stderr, a.now, noProgress)
	}
	final, err := a.client().WaitFinished(ctx, op.ID, onChange)
	stopWatch()
	if err != nil {
		return interrupted(ctx, err,
			fmt.Sprintf("; operation %s goes on, follow it with: crayfish status %s", op.ID, op.ID))
	}
	// The outcome is printed whole: the agent serves large step results
	// cut, so follow their pages (a script reading --output json gets what
	// it got before paging).
	if err := a.client().FullResults(ctx, final); err != nil {
		return interrupted(ctx, err, fmt.Sprintf("; operation %s ended %s, see it with: crayfish status %s --full-results", op.ID, final.State, op.ID))
	}
	if err := a.print(final, func(w io.Writer) error { return writeOperation(w, final, a.now()) }); err != nil {
		return err
	}
	if final.State != fsm.OpSucceeded {
		msg := final.Error
		if msg == "" {
			msg = fmt.Sprintf("operation %s %s", final.ID, final.State)
		}
		return opFailedError{msg}
	}
	return nil
}
