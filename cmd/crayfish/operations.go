package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
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
			ctx, stop := a.context(cmd)
			defer stop()
			op, err := a.client().StartBackup(ctx, req)
			if err != nil {
				return interrupted(ctx, err, "")
			}
			return a.started(ctx, op, wait)
		},
	}
	cmd.Flags().StringVar(&req.ID, "id", "", "operation id (idempotency key)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	return cmd
}

func (a *app) restoreCommand() *cobra.Command {
	var req api.StartRestoreRequest
	var wait bool
	cmd := &cobra.Command{
		Use:   "restore [BACKUP_ID]",
		Short: "Restore a backup (default: the latest) on every node",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				req.BackupID = args[0]
			}
			ctx, stop := a.context(cmd)
			defer stop()
			op, err := a.client().StartRestore(ctx, req)
			if err != nil {
				return interrupted(ctx, err, "")
			}
			return a.started(ctx, op, wait)
		},
	}
	cmd.Flags().StringVar(&req.ID, "id", "", "operation id (idempotency key)")
	cmd.Flags().StringVar(&req.Target, "target", "", "restore into this directory on each node instead of its configured root")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	return cmd
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
			ctx, stop := a.context(cmd)
			defer stop()
			op, err := a.client().StartDelete(ctx, req)
			if err != nil {
				return interrupted(ctx, err, "")
			}
			return a.started(ctx, op, wait)
		},
	}
	cmd.Flags().StringVar(&req.ID, "id", "", "operation id (idempotency key)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	return cmd
}

// started prints a started operation, or with wait follows it to its end.
func (a *app) started(ctx context.Context, op *api.Operation, wait bool) error {
	if !wait {
		return a.print(op, func(w io.Writer) error { return writeStarted(w, op) })
	}
	var onChange func(*api.Operation)
	if !a.json() {
		fmt.Fprintf(a.stderr, "Waiting for %s operation %s (Ctrl-C stops waiting, not the operation)\n", op.Kind, op.ID)
		onChange = newWatcher(a.stderr, a.now).update
	}
	final, err := a.client().WaitFinished(ctx, op.ID, onChange)
	if err != nil {
		return interrupted(ctx, err,
			fmt.Sprintf("; operation %s goes on, follow it with: crayfish status %s", op.ID, op.ID))
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
