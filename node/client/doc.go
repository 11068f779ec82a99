// Package client is the Go client of the crayfish agent's HTTP JSON API
// (/v1), described in docs/api.md. Any agent of a cluster answers reads
// (operations, backups, cluster, version) and long-polls; starting an
// operation needs the Raft leader, and another agent answers 503 no_leader.
//
// Start an operation, then follow it with long-polls:
//
//	c := client.New("http://127.0.0.1:7300", nil)
//	op, err := c.StartBackup(ctx, api.StartBackupRequest{ID: "nightly-2024-05-01"})
//	if err != nil {
//		return err
//	}
//	op, err = c.WaitFinished(ctx, op.ID, func(op *api.Operation) { log.Println(op.State) })
//
// Non-2xx answers are returned as *APIError; test them with errors.Is
// against ErrNotFound, ErrBusy, ErrConflict, ErrNoLeader, ErrBadRequest and
// ErrInternal, or with errors.As to read the HTTP status and, for ErrBusy,
// the id of the running operation.
//
// Starting an operation with an explicit id is idempotent: retrying the
// same request after a 503 (no_leader) or a timeout returns the same
// operation. Start calls are never retried by the client itself; WaitFinished
// retries transient failures (see IsTransient) until its context ends,
// because the agent may be restarting.
package client
