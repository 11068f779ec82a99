package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

// addCallbackFlag adds --callback-url to a command that starts an
// operation.
func (a *app) addCallbackFlag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.callbackURL, "callback-url", "", "URL that receives a JSON POST when the operation ends (signed when the agent has notify_secret_file)")
}

func (a *app) drillCommand() *cobra.Command {
	var req api.StartDrillRequest
	var wait bool
	cmd := &cobra.Command{
		Use:   "drill [BACKUP_ID]",
		Short: "Prove a backup restores: restore it into scratch space, check every byte, remove it",
		Long: "Restore each backed-up node of a backup (default: the latest) on a member into scratch\n" +
			"space under that member's data dir, read every file back against the backup's manifest\n" +
			"(size and SHA-256), run the plugin's own check (Cassandra: every sstable's components\n" +
			"present and its data matching its digest), and remove the scratch space. Nothing the\n" +
			"database uses is touched. --nodes chooses the members that restore.",
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				req.BackupID = args[0]
			}
			return a.startOperation(cmd, fsm.KindDrill, &req.ID, wait, func(ctx context.Context) (*api.Operation, error) {
				req.CallbackURL = a.callbackURL
				return a.client().StartDrill(ctx, req)
			})
		},
	}
	cmd.Flags().StringVar(&req.ID, "id", "", "operation id for safe retries: the same id returns the same operation (a finished one is not run again)")
	cmd.Flags().StringSliceVar(&req.Nodes, "nodes", nil, "members that restore (comma-separated; default: each backed-up node on the member of its id)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the operation finishes; exit 1 unless it succeeded")
	a.addCallbackFlag(cmd)
	addProgressFlag(cmd)
	return cmd
}

func (a *app) scheduleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Recurring backups, cleanups, verifies and drills, fired by the cluster's leader",
		Long: "Schedules live in the replicated state: whichever node leads fires each slot once,\n" +
			"also across a leader change (the operation id derives from schedule and slot).",
	}
	cmd.AddCommand(a.scheduleAddCommand(), a.scheduleListCommand(), a.scheduleRemoveCommand(),
		a.schedulePauseCommand(true), a.schedulePauseCommand(false))
	return cmd
}

func (a *app) scheduleAddCommand() *cobra.Command {
	var req api.ScheduleRequest
	var kind, options string
	var jitter, maxWait time.Duration
	var replace bool
	cmd := &cobra.Command{
		Use:   "add NAME CRON",
		Short: "Add a schedule: CRON is five fields (\"0 2 * * *\") or a descriptor (@daily, \"@every 6h\")",
		Long: "Add a schedule NAME firing at each slot of CRON, read in --time-zone (default UTC).\n" +
			"--kind is backup, cleanup, verify or drill; --options the operation's options as JSON\n" +
			"(cleanup: {\"policy\":{\"keep_last\":7}}; verify: {\"read_data_subset\":0.1}; drill:\n" +
			"{\"nodes\":[\"n1\"]}). --missed says what a slot the cluster could not fire on time becomes:\n" +
			"skip (default) or run_once (one run after an outage). --jitter delays each slot by a fixed\n" +
			"share of it; --max-wait bounds the wait for a busy cluster (default 1h). An existing\n" +
			"schedule of the same name is an error unless --replace.",
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name, req.Cron, req.Kind = args[0], args[1], fsm.OpKind(kind)
			req.Jitter, req.MaxWait = fsm.Duration(jitter), fsm.Duration(maxWait)
			if options != "" {
				if !json.Valid([]byte(options)) {
					return usagef("--options %q is not JSON", options)
				}
				req.Options = json.RawMessage(options)
			}
			ctx, stop := a.context(cmd)
			defer stop()
			sc, err := a.client().SetSchedule(ctx, req, replace)
			if err != nil {
				return err
			}
			return a.print(sc, func(w io.Writer) error { return writeSchedules(w, []api.Schedule{*sc}) })
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "backup", "backup, cleanup, verify or drill")
	cmd.Flags().StringVar(&options, "options", "", "the operation's options as JSON")
	cmd.Flags().StringVar(&req.TimeZone, "time-zone", "", "IANA time zone the cron fields are read in (default UTC)")
	cmd.Flags().StringVar(&req.Missed, "missed", fsm.MissedSkip, "a late slot: skip, or run_once after an outage")
	cmd.Flags().DurationVar(&jitter, "jitter", 0, "delay each slot by a fixed share of this")
	cmd.Flags().DurationVar(&maxWait, "max-wait", 0, "how long a slot waits for a busy cluster (default 1h)")
	cmd.Flags().BoolVar(&req.Paused, "paused", false, "add it paused")
	cmd.Flags().BoolVar(&replace, "replace", false, "redefine an existing schedule of that name (its last run is kept)")
	return cmd
}

func (a *app) scheduleListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the schedules with their next and last runs",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			list, err := a.client().Schedules(ctx)
			if err != nil {
				return err
			}
			return a.print(list, func(w io.Writer) error { return writeSchedules(w, list.Schedules) })
		},
	}
}

func (a *app) scheduleRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a schedule (the operations it started stay)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			if err := a.client().RemoveSchedule(ctx, args[0]); err != nil {
				return err
			}
			return a.print(map[string]string{"removed": args[0]}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "removed schedule %s\n", args[0])
				return err
			})
		},
	}
}

func (a *app) schedulePauseCommand(pause bool) *cobra.Command {
	use, short := "resume NAME", "Resume a schedule: its next slot fires, under its missed policy"
	if pause {
		use, short = "pause NAME", "Pause a schedule: no slot fires until it is resumed"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := a.context(cmd)
			defer stop()
			sc, err := a.client().PauseSchedule(ctx, args[0], pause)
			if err != nil {
				return err
			}
			return a.print(sc, func(w io.Writer) error { return writeSchedules(w, []api.Schedule{*sc}) })
		},
	}
}

// writeSchedules prints one line a schedule: when it fires, what, its
// next run and its last run with the outcome.
func writeSchedules(w io.Writer, list []api.Schedule) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCRON\tKIND\tNEXT RUN\tLAST RUN\tLAST OUTCOME")
	for _, sc := range list {
		cron := sc.Cron
		if sc.TimeZone != "" {
			cron += " (" + sc.TimeZone + ")"
		}
		next := "-"
		switch {
		case sc.Paused:
			next = "paused"
		case sc.NextRun != nil:
			next = formatTime(*sc.NextRun)
		}
		last, outcome := "-", "-"
		if !sc.LastSlot.IsZero() {
			last = formatTime(sc.LastSlot)
			switch {
			case sc.LastOpID == "":
				outcome = "not run: " + sc.LastError
			case sc.LastState != "":
				outcome = string(sc.LastState) + " " + sc.LastOpID
				if sc.LastOpError != "" {
					outcome += ": " + sc.LastOpError
				}
			default:
				outcome = sc.LastOpID
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sc.Name, cron, sc.Kind, next, last, outcome)
	}
	return tw.Flush()
}
