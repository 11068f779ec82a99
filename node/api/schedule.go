package api

import (
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
)

// ScheduleRequest is the body of POST /v1/schedules (create) and
// PUT /v1/schedules/{name} (define or redefine).
type ScheduleRequest struct {
	fsm.ScheduleSpec
	// Paused creates the schedule paused.
	Paused bool `json:"paused,omitempty"`
}

// Schedule is a schedule as GET /v1/schedules shows it: its definition,
// run state, next run and the outcome of the operation it last started.
type Schedule struct {
	fsm.Schedule
	// NextRun is when the next slot fires (jitter included); absent if
	// the expression has no further slot.
	NextRun *time.Time `json:"next_run,omitempty"`
	// LastState and LastOpError are those of the operation LastOpID
	// names, while the replicated state still holds it.
	LastState   fsm.OpState `json:"last_state,omitempty"`
	LastOpError string      `json:"last_op_error,omitempty"`
}

// ScheduleList is the body of GET /v1/schedules.
type ScheduleList struct {
	Schedules []Schedule `json:"schedules"`
}

// DrillOptions say what a restore drill restores, and where.
type DrillOptions struct {
	// BackupID is the backup to restore; empty means the latest.
	BackupID string `json:"backup_id,omitempty"`
	// Nodes are the current nodes that restore; empty means each
	// backed-up node on the member of the same id, the others spread
	// over the members.
	Nodes []string `json:"nodes,omitempty"`
}

// StartDrillRequest is the body of POST /v1/drills.
type StartDrillRequest struct {
	ID string `json:"id,omitempty"`
	// CallbackURL receives a POST when the operation ends (docs/operations.md).
	CallbackURL string `json:"callback_url,omitempty"`
	DrillOptions
}
