package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

// Read-only commands: list, describe, status, cluster, version.

func (a *app) listCommand() *cobra.Command {
	var (
		limit  int
		all    bool
		cursor string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List backups, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit must not be negative")
			}
			ctx, stop := a.context(cmd)
			defer stop()
			c := a.client()
			list, err := c.Backups(ctx, limit, cursor)
			if err != nil {
				return interrupted(ctx, err, "")
			}
			seen := map[string]bool{cursor: true}
			for all && list.NextCursor != "" {
				if seen[list.NextCursor] {
					return fmt.Errorf("agent returned cursor %q twice", list.NextCursor)
				}
				seen[list.NextCursor] = true
				page, err := c.Backups(ctx, limit, list.NextCursor)
				if err != nil {
					return interrupted(ctx, err, "")
				}
				list.Backups = append(list.Backups, page.Backups...)
				list.NextCursor = page.NextCursor
			}
			if list.Backups == nil {
				list.Backups = []storage.Summary{}
			}
			return a.print(list, func(w io.Writer) error {
				if len(list.Backups) == 0 {
					_, err := fmt.Fprintln(w, "No backups.")
					return err
				}
				if err := writeBackups(w, list.Backups); err != nil {
					return err
				}
				if list.NextCursor != "" {
					_, err := fmt.Fprintf(w, "More backups: crayfish list --all, or --cursor %s\n", list.NextCursor)
					return err
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "backups per page (0: the agent's default)")
	cmd.Flags().BoolVar(&all, "all", false, "follow the pages to list every backup")
	cmd.Flags().StringVar(&cursor, "cursor", "", "start at this page (next_cursor of a previous answer)")
	return cmd
}

func (a *app) describeCommand() *cobra.Command {
	var files bool
	cmd := &cobra.Command{
		Use:   "describe BACKUP_ID",
		Short: "Show one backup: totals, nodes and optionally its files",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			d, err := a.client().Backup(ctx, args[0], files)
			if err != nil {
				return interrupted(ctx, err, "")
			}
			return a.print(d, func(w io.Writer) error { return writeBackupDetail(w, d) })
		},
	}
	cmd.Flags().BoolVar(&files, "files", false, "list the files of each node")
	return cmd
}

func (a *app) statusCommand() *cobra.Command {
	var (
		limit int
		full  bool
	)
	cmd := &cobra.Command{
		Use:   "status [OP_ID]",
		Short: "Show an operation and its steps, or the latest operations",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usagef("--limit must not be negative")
			}
			ctx, stop := a.context(cmd)
			defer stop()
			c := a.client()
			if len(args) == 1 {
				op, err := c.Operation(ctx, args[0])
				if err != nil {
					return interrupted(ctx, err, "")
				}
				if full {
					// Large results come cut; fetch them whole, page by page.
					if err := c.FullResults(ctx, op); err != nil {
						return interrupted(ctx, err, "")
					}
				}
				return a.print(op, func(w io.Writer) error {
					if err := writeOperation(w, op, a.now()); err != nil {
						return err
					}
					return writePagedNote(w, op)
				})
			}
			l, err := c.Operations(ctx, limit)
			if err != nil {
				return interrupted(ctx, err, "")
			}
			if l.Operations == nil {
				l.Operations = []*api.Operation{}
			}
			return a.print(l, func(w io.Writer) error {
				if len(l.Operations) == 0 {
					_, err := fmt.Fprintln(w, "No operations.")
					return err
				}
				return writeOperations(w, l.Operations, a.now())
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 10, "number of operations to list without OP_ID")
	cmd.Flags().BoolVar(&full, "full-results", false, "with OP_ID: fetch large step results whole, following their pages (the agent serves them cut)")
	return cmd
}

func (a *app) clusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the cluster (gossip members, Raft roles, leader) as the agent sees it",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			s, err := a.client().Cluster(ctx)
			if err != nil {
				return interrupted(ctx, err, "")
			}
			return a.print(s, func(w io.Writer) error { return writeCluster(w, s) })
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "remove NODE",
		Short: "Remove a member that is dead or gone from the cluster",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			if err := a.client().RemoveNode(ctx, args[0]); err != nil {
				return interrupted(ctx, err, "")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}, &cobra.Command{
		Use:   "leave",
		Short: "Make the agent at --url leave its cluster for good",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			if err := a.client().Leave(ctx); err != nil {
				return interrupted(ctx, err, "")
			}
			fmt.Fprintln(cmd.OutOrStdout(), "left the cluster; stop the agent now")
			return nil
		},
	})
	return cmd
}

// versions is the JSON output of the version command.
type versions struct {
	Client api.Version  `json:"client"`
	Agent  *api.Version `json:"agent,omitempty"`
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the client's and the agent's versions",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			v := versions{Client: api.Version{Version: version, GoVersion: runtime.Version()}}
			agent, agentErr := a.client().Version(ctx)
			v.Agent = agent
			err := a.print(v, func(w io.Writer) error {
				tw := newTable(w)
				fmt.Fprintf(tw, "Client:\t%s (%s)\n", v.Client.Version, v.Client.GoVersion)
				if agent != nil {
					fmt.Fprintf(tw, "Agent:\t%s (%s)\n", agent.Version, agent.GoVersion)
				}
				return tw.Flush()
			})
			if agentErr != nil {
				return interrupted(ctx, fmt.Errorf("agent version: %w", agentErr), "")
			}
			return err
		},
	}
}
