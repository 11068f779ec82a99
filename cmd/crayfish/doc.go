// Command crayfish is the single binary of the crayfish backup system.
//
// "crayfish agent" runs the daemon on every node: it takes part in the
// Raft cluster and serves the HTTP JSON API (docs/api.md). Every other
// subcommand is a thin client of that API and talks to any agent, chosen
// with --url (default http://127.0.0.1:7300, or $CRAYFISH_URL); starting
// an operation needs the agent that is the Raft leader:
//
//	crayfish backup [--id ID] [--wait]
//	crayfish restore [BACKUP_ID] [--id ID] [--target DIR] [--wait]
//	crayfish list [--limit N] [--all]
//	crayfish describe BACKUP_ID [--files]
//	crayfish delete BACKUP_ID... [--id ID] [--wait]
//	crayfish status [OP_ID] [--limit N]
//	crayfish cluster
//	crayfish version
//
// With --output json each client command prints exactly one JSON document
// on stdout; text output is aligned tables. Diagnostics and --wait
// progress go to stderr. Exit status: 0 success, 1 an error (an API error,
// an unreachable agent, or an operation that did not succeed under
// --wait), 2 a usage error, 130 interrupted.
//
// The client version is set at build time:
//
//	go build -ldflags "-X main.version=1.2.3" ./cmd/crayfish
package main
