package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CommandType names a state transition.
type CommandType string

const (
	// CmdStart creates an operation with its plan and takes the cluster lock.
	CmdStart CommandType = "start"
	// CmdClaim makes the sender the coordinator; its log index becomes the
	// new fencing epoch.
	CmdClaim CommandType = "claim"
	// CmdStepStarted records the intent to run (or re-run) a step.
	CmdStepStarted CommandType = "step_started"
	// CmdStepProgress updates a running step's counters.
	CmdStepProgress CommandType = "step_progress"
	// CmdStepDone records a step's result.
	CmdStepDone CommandType = "step_done"
	// CmdStepFailed records a step's final failure; later steps that are not
	// Always are skipped.
	CmdStepFailed CommandType = "step_failed"
	// CmdFinish ends an operation whose steps are all finished and releases
	// the cluster lock.
	CmdFinish CommandType = "finish"
	// CmdNotified records that an operation's completion was delivered
	// to its webhooks (or given up on).
	CmdNotified CommandType = "notified"
	// CmdScheduleSet creates (Create) or redefines a schedule.
	CmdScheduleSet CommandType = "schedule_set"
	// CmdScheduleRemove deletes a schedule.
	CmdScheduleRemove CommandType = "schedule_remove"
	// CmdSchedulePause pauses or resumes (Paused false) a schedule.
	CmdSchedulePause CommandType = "schedule_pause"
	// CmdScheduleSlot records a slot the coordinator fired (OpID) or gave
	// up (Error).
	CmdScheduleSlot CommandType = "schedule_slot"
)

// Command is one entry of the Raft log. Fields not used by a type stay zero.
type Command struct {
	Type CommandType `json:"type"`
	// Time is stamped by the leader when it proposes the command; Apply
	// never reads a clock.
	Time  time.Time `json:"time"`
	OpID  string    `json:"op_id,omitempty"`
	Epoch uint64    `json:"epoch,omitempty"`
	Step  int       `json:"step,omitempty"`
	// Op is the operation to create (CmdStart).
	Op *Operation `json:"op,omitempty"`
	// Node is the claiming coordinator (CmdClaim).
	Node     string          `json:"node,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	Progress *Progress       `json:"progress,omitempty"`
	// KeepRunning (CmdStepFailed): the failed step's running siblings are
	// not skipped. The coordinator records several failures of one phase
	// this way, once all its steps have ended (a restore step that met
	// damaged content lets its siblings finish restoring).
	KeepRunning bool `json:"keep_running,omitempty"`
	// Schedule is the definition to set (CmdScheduleSet); Create refuses
	// to replace another definition of the same name.
	Schedule *Schedule `json:"schedule,omitempty"`
	Create   bool      `json:"create,omitempty"`
	// Name is the schedule of the other schedule commands.
	Name   string    `json:"name,omitempty"`
	Paused bool      `json:"paused,omitempty"`
	Slot   time.Time `json:"slot,omitzero"`
}

// MaxEntryBytes is the largest Raft log entry a command may encode to.
// Every replica keeps every entry until a snapshot, ships it to followers
// and applies it under the FSM's lock: large per-node data (skip lists,
// file lists) lives in the repository or on the node, and the log holds a
// reference or a summary (docs/design.md, "Bounded log entries").
const MaxEntryBytes = 1 << 20

// ErrEntryTooLarge marks a command refused because its entry would exceed
// MaxEntryBytes: nothing was proposed.
var ErrEntryTooLarge = errors.New("raft entry over the 1 MiB limit")

// Encode serializes c for the Raft log. A command that encodes to more than
// MaxEntryBytes is refused with an error marked ErrEntryTooLarge: every
// proposal goes through here (node.Store.Apply), so no entry over the
// limit reaches the log.
func (c Command) Encode() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxEntryBytes {
		what := string(c.Type)
		if c.OpID != "" {
			what += fmt.Sprintf(" of operation %s step %d", c.OpID, c.Step)
		}
		return nil, fmt.Errorf("%w: %s command is %d bytes (result %d bytes)", ErrEntryTooLarge, what, len(b), len(c.Result))
	}
	return b, nil
}

// DecodeCommand parses a Raft log entry.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrInvalidCommand, err)
	}
	return c, nil
}

// Errors returned by Apply through Response.Err. They are deterministic:
// every replica computes the same one.
var (
	ErrInvalidCommand    = errors.New("invalid command")
	ErrUnknownOperation  = errors.New("unknown operation")
	ErrInvalidTransition = errors.New("invalid transition")
	ErrStaleEpoch        = errors.New("stale coordinator epoch")
	ErrBusy              = errors.New("another operation is running")
	ErrIDConflict        = errors.New("operation id already used for a different request")
	ErrUnknownSchedule   = errors.New("unknown schedule")
)

// BusyError says which operation holds the cluster lock. It matches ErrBusy.
type BusyError struct{ RunningID string }

func (e *BusyError) Error() string { return fmt.Sprintf("%v: %s", ErrBusy, e.RunningID) }

// Is makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Response is what Apply returns for a command.
type Response struct {
	Op *Operation // a copy of the operation after the command, if any
	// Schedule is a copy of the schedule after a schedule command.
	Schedule *Schedule
	// Existing is true when CmdStart found the operation already there
	// (or a schedule command changed nothing).
	Existing bool
	Epoch    uint64
	Err      error
}
