package fsm

import (
	"encoding/json"
	"slices"
	"time"
)

// OpKind is what an operation does.
type OpKind string

const (
	KindBackup  OpKind = "backup"
	KindRestore OpKind = "restore"
	KindDelete  OpKind = "delete"
	KindGC      OpKind = "gc"      // garbage collection of unreferenced blobs
	KindCleanup OpKind = "cleanup" // retention policy, then garbage collection
	KindVerify  OpKind = "verify"  // repository integrity check
	KindRepair  OpKind = "repair"  // repair index, packs or snapshots (exclusive)
	KindDrill   OpKind = "drill"   // restore into scratch space, check every byte, remove
)

// Kinds lists every kind.
func Kinds() []OpKind {
	return []OpKind{KindBackup, KindRestore, KindDelete, KindGC, KindCleanup, KindVerify, KindRepair, KindDrill}
}

// Valid reports whether k is a known kind.
func (k OpKind) Valid() bool { return slices.Contains(Kinds(), k) }

// OpState is the lifecycle state of an operation. Only forward moves exist:
// running → succeeded | failed.
type OpState string

const (
	OpRunning   OpState = "running"
	OpSucceeded OpState = "succeeded"
	OpFailed    OpState = "failed"
)

// Terminal reports whether no further change can happen.
func (s OpState) Terminal() bool { return s == OpSucceeded || s == OpFailed }

// StepState is the lifecycle state of one step.
//
//	pending → running → done | failed
//	running → running (a new attempt after a failover or a retry)
//	pending → skipped (an earlier step failed and this one is not Always)
type StepState string

const (
	StepPending StepState = "pending"
	StepRunning StepState = "running"
	StepDone    StepState = "done"
	StepFailed  StepState = "failed"
	StepSkipped StepState = "skipped"
)

// Finished reports whether the step will not run again.
func (s StepState) Finished() bool { return s == StepDone || s == StepFailed || s == StepSkipped }

// Progress is a step's work counter, reported while it runs.
type Progress struct {
	FilesDone  int64 `json:"files_done"`
	FilesTotal int64 `json:"files_total"`
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	// Waiting says why the step makes no progress (its node does not
	// answer, and until when the coordinator keeps trying); empty while
	// it moves.
	Waiting string `json:"waiting,omitempty"`
}

// Step is one entry of an operation's plan.
type Step struct {
	Name string `json:"name"`
	// Node is the node that performs the step; empty for cluster steps
	// that the coordinator (the leader) performs itself.
	Node string `json:"node,omitempty"`
	// Always marks cleanup steps that run even after an earlier step failed.
	Always bool `json:"always,omitempty"`
	// Phase groups consecutive steps that may run at the same time (the
	// per-node steps of one stage); 0 means a phase of its own.
	Phase int `json:"phase,omitempty"`
	// Input is the step's own parameters, fixed when the operation
	// starts (a restore step's source node).
	Input      json.RawMessage `json:"input,omitempty"`
	State      StepState       `json:"state"`
	Attempts   int             `json:"attempts"`
	Epoch      uint64          `json:"epoch,omitempty"` // epoch of the latest attempt
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	Error      string          `json:"error,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
	Progress   *Progress       `json:"progress,omitempty"`
	// ResultPaged is never in the replicated state: the API sets it on the
	// copy it serves when it cut a large Result to the first items of each
	// list; the whole result pages at
	// GET /v1/operations/{id}/steps/{n}/result.
	ResultPaged *ResultPaged `json:"result_paged,omitempty"`
}

// ResultPaged says a served step result was cut (Step.ResultPaged).
type ResultPaged struct {
	// Bytes is the size of the whole result.
	Bytes int `json:"bytes"`
	// Lists are the full lengths of the result's lists (its top-level
	// fields that are arrays); the served result has their first items.
	Lists map[string]int `json:"lists"`
}

// Params are the inputs of an operation, fixed when it starts.
type Params struct {
	// BackupID is the backup a restore reads.
	BackupID string `json:"backup_id,omitempty"`
	// BackupIDs are the backups a delete removes.
	BackupIDs []string `json:"backup_ids,omitempty"`
	// Target, for restore, is a directory to restore into instead of each
	// node's configured root.
	Target string `json:"target,omitempty"`
	// Options are kind-specific settings (retention policy, verify depth),
	// as JSON, fixed when the operation starts.
	Options json.RawMessage `json:"options,omitempty"`
	// CallbackURL receives a POST when the operation ends.
	CallbackURL string `json:"callback_url,omitempty"`
}

// Operation is one backup, restore or delete and its plan.
type Operation struct {
	ID     string  `json:"id"`
	Kind   OpKind  `json:"kind"`
	State  OpState `json:"state"`
	Params Params  `json:"params"`
	// BackupID is the backup this operation creates (backup), reads
	// (restore); empty for delete.
	BackupID   string     `json:"backup_id,omitempty"`
	Steps      []Step     `json:"steps"`
	Error      string     `json:"error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// Revision is the Raft log index of the last change; watchers wait for
	// it to move.
	Revision uint64 `json:"revision"`
	// Epoch is the coordinator epoch that last changed the operation.
	Epoch uint64 `json:"epoch"`
	// Notified: the completion went to its webhooks (NotifyError says
	// what was given up), or there were none.
	Notified    bool   `json:"notified,omitempty"`
	NotifyError string `json:"notify_error,omitempty"`
}

// NextStep returns the index of the first step that is not finished, or -1.
// A failed operation still runs its Always steps; other pending steps are
// skipped by the coordinator.
func (op *Operation) NextStep() int {
	for i := range op.Steps {
		if !op.Steps[i].State.Finished() {
			return i
		}
	}
	return -1
}

// Runnable lists the unfinished steps that may run now: the first
// unfinished step and the unfinished steps of its phase.
func (op *Operation) Runnable() []int {
	next := op.NextStep()
	if next < 0 {
		return nil
	}
	out := []int{next}
	if phase := op.Steps[next].Phase; phase != 0 {
		for i := next + 1; i < len(op.Steps) && op.Steps[i].Phase == phase; i++ {
			if !op.Steps[i].State.Finished() {
				out = append(out, i)
			}
		}
	}
	return out
}

// HasFailedStep reports whether any step failed.
func (op *Operation) HasFailedStep() bool {
	for i := range op.Steps {
		if op.Steps[i].State == StepFailed {
			return true
		}
	}
	return false
}

// Clone returns a deep copy so callers can read it without holding locks.
func (op *Operation) Clone() *Operation {
	if op == nil {
		return nil
	}
	c := *op
	c.Params.BackupIDs = append([]string(nil), op.Params.BackupIDs...)
	c.Params.Options = append(json.RawMessage(nil), op.Params.Options...)
	c.Steps = make([]Step, len(op.Steps))
	for i, s := range op.Steps {
		if s.Progress != nil {
			p := *s.Progress
			s.Progress = &p
		}
		s.Result = append(json.RawMessage(nil), s.Result...)
		s.Input = append(json.RawMessage(nil), s.Input...)
		c.Steps[i] = s
	}
	return &c
}
