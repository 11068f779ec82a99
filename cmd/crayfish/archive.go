package main

import (
	"github.com/spf13/cobra"

	"github.com/crayfish-backup/crayfish/cassandra"
)

// newArchiveSegmentCommand is the archive_command the Cassandra plugin
// writes into commitlog_archiving.properties: Cassandra runs it for every
// closed commit-log segment and waits for it before deleting the
// segment. Hidden: operators never run it.
func newArchiveSegmentCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "cassandra-archive-segment SPOOL PATH NAME",
		Short:  "Archive a closed Cassandra commit-log segment into the agent's spool (run by Cassandra)",
		Hidden: true,
		Args:   cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cassandra.ArchiveSegment(args[0], args[1], args[2])
		},
	}
}
