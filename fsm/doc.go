// Package fsm owns the replicated state of a crayfish cluster: every
// operation (backup, restore, delete), its fixed plan of steps and each
// step's progress, the cluster lock (at most one running operation), the
// coordinator fencing epoch, and the totals over the whole log that the
// metrics report (operations by kind and outcome, failed step attempts,
// the last succeeded operation of each kind), kept when old operations
// are pruned; the schedules (definition, last slot handled and its
// outcome) and which finished operations' completions were delivered.
//
// The core (State.Apply) is pure and deterministic: it must not read clocks,
// draw random numbers or perform I/O. Times arrive stamped in commands by
// the leader; revisions are Raft log indexes. Machine is the thin
// hashicorp/raft adapter around State (decode, snapshot, restore, change
// notification). The package knows nothing about HTTP, repositories or files.
package fsm
