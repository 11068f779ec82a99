package fsm

import (
	"bytes"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// MaxFinishedOps bounds how many finished operations the state keeps;
// older ones are dropped (their backups live on in the repository).
const MaxFinishedOps = 1000

// State is the whole replicated state. The zero value is not ready: use NewState.
type State struct {
	Ops map[string]*Operation `json:"ops"`
	// Order lists operation ids in creation order.
	Order []string `json:"order"`
	// Active is the id of the operation holding the cluster lock, or "".
	Active string `json:"active,omitempty"`
	// Epoch is the current coordinator's fencing epoch (the log index of its claim).
	Epoch uint64 `json:"epoch"`
	// Coordinator is the node that claimed Epoch.
	Coordinator  string `json:"coordinator,omitempty"`
	AppliedIndex uint64 `json:"applied_index"`
	// LatestTime is the latest time any command carried: a new leader
	// whose clock is behind stamps later than it, so times (and the
	// backup ids made from them) never go backwards across leaders.
	LatestTime time.Time `json:"latest_time,omitzero"`
	// Totals count over the whole log what pruning forgets: the metrics
	// every node reports alike.
	Totals *Totals `json:"totals,omitempty"`
	// Schedules are the recurring operations, by name.
	Schedules map[string]*Schedule `json:"schedules,omitempty"`
}

// Totals are counts over every operation the log ever held, and the last
// finished and last succeeded operation of each kind (kept past pruning).
type Totals struct {
	// Started and Finished count operations by kind, and by kind and
	// outcome ("backup/succeeded").
	Started  map[OpKind]uint64 `json:"started"`
	Finished map[string]uint64 `json:"finished"`
	// StepAttemptsFailed counts the attempts that ended without success,
	// by step name and reason ("restore/retried": the step was started
	// again, after an error or a leader change; "restore/failed": its
	// final failure). StepFailureKey makes the key.
	StepAttemptsFailed map[string]uint64 `json:"step_attempts_failed"`
	// LastSucceeded is the last succeeded operation of each kind, and
	// LastFinished the last finished one, whatever its outcome.
	LastSucceeded map[OpKind]*Operation `json:"last_succeeded"`
	LastFinished  map[OpKind]*Operation `json:"last_finished"`
}

// Clone deep-copies t (a nil t gives empty maps).
func (t *Totals) Clone() Totals {
	out := Totals{Started: map[OpKind]uint64{}, Finished: map[string]uint64{},
		StepAttemptsFailed: map[string]uint64{}, LastSucceeded: map[OpKind]*Operation{}, LastFinished: map[OpKind]*Operation{}}
	if t == nil {
		return out
	}
	maps.Copy(out.Started, t.Started)
	maps.Copy(out.Finished, t.Finished)
	maps.Copy(out.StepAttemptsFailed, t.StepAttemptsFailed)
	for k, op := range t.LastSucceeded {
		out.LastSucceeded[k] = op.Clone()
	}
	for k, op := range t.LastFinished {
		out.LastFinished[k] = op.Clone()
	}
	return out
}

// Reasons a step attempt ended without success.
const (
	FailureRetried = "retried" // started again: it failed, or its coordinator went
	FailureFinal   = "failed"  // failed for good
)

// StepFailureKey is the Totals.StepAttemptsFailed key of step and reason.
func StepFailureKey(step, reason string) string { return step + "/" + reason }

// SplitStepFailureKey is StepFailureKey's inverse; a key written before
// reasons were recorded has reason "unknown".
func SplitStepFailureKey(key string) (step, reason string) {
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		return key[:i], key[i+1:]
	}
	return key, "unknown"
}

func (s *State) totals() *Totals {
	if s.Totals == nil {
		t := (*Totals)(nil).Clone()
		s.Totals = &t
	}
	return s.Totals
}

// NewState returns an empty state.
func NewState() *State { return &State{Ops: map[string]*Operation{}} }

var opIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidOpID reports whether id may name an operation.
func ValidOpID(id string) bool { return opIDPattern.MatchString(id) }

// Apply performs cmd as the log entry at index. It is deterministic and
// never panics on bad input: invalid commands come back as Response.Err
// and leave the state unchanged.
func (s *State) Apply(index uint64, cmd Command) Response {
	s.AppliedIndex = index
	if cmd.Time.After(s.LatestTime) {
		s.LatestTime = cmd.Time
	}
	switch cmd.Type {
	case CmdClaim:
		if cmd.Node == "" {
			return Response{Err: fmt.Errorf("%w: claim without node", ErrInvalidCommand)}
		}
		s.Epoch = index
		s.Coordinator = cmd.Node
		return Response{Epoch: s.Epoch}
	case CmdStart:
		return s.start(index, cmd)
	case CmdStepStarted, CmdStepProgress, CmdStepDone, CmdStepFailed, CmdFinish:
		return s.advance(index, cmd)
	case CmdNotified:
		return s.notified(cmd)
	case CmdScheduleSet, CmdScheduleRemove, CmdSchedulePause, CmdScheduleSlot:
		return s.applySchedule(cmd)
	default:
		return Response{Err: fmt.Errorf("%w: unknown type %q", ErrInvalidCommand, cmd.Type)}
	}
}

func (s *State) start(index uint64, cmd Command) Response {
	in := cmd.Op
	if in == nil || !ValidOpID(in.ID) || !in.Kind.Valid() || len(in.Steps) == 0 {
		return Response{Err: fmt.Errorf("%w: start needs a valid id, kind and plan", ErrInvalidCommand)}
	}
	if old, ok := s.Ops[in.ID]; ok {
		// The same id again is a retry of the same request, unless it asks
		// for something else.
		if old.Kind != in.Kind || !sameParams(old.Params, in.Params) {
			return Response{Err: fmt.Errorf("%w: %s", ErrIDConflict, in.ID)}
		}
		return Response{Op: old.Clone(), Existing: true, Epoch: s.Epoch}
	}
	if s.Active != "" {
		return Response{Err: &BusyError{RunningID: s.Active}}
	}
	op := &Operation{
		ID: in.ID, Kind: in.Kind, State: OpRunning, Params: in.Params, BackupID: in.BackupID,
		CreatedAt: cmd.Time, UpdatedAt: cmd.Time, Revision: index, Epoch: s.Epoch,
	}
	for _, st := range in.Steps {
		if st.Name == "" {
			return Response{Err: fmt.Errorf("%w: step without name", ErrInvalidCommand)}
		}
		if st.Phase != 0 && len(op.Steps) > 0 {
			// A phase's steps are consecutive: Runnable relies on it.
			for _, prev := range op.Steps[:len(op.Steps)-1] {
				if prev.Phase == st.Phase && op.Steps[len(op.Steps)-1].Phase != st.Phase {
					return Response{Err: fmt.Errorf("%w: phase %d is not contiguous", ErrInvalidCommand, st.Phase)}
				}
			}
		}
		op.Steps = append(op.Steps, Step{Name: st.Name, Node: st.Node, Always: st.Always, Phase: st.Phase, Input: st.Input, State: StepPending})
	}
	op = op.Clone() // own every slice the command carried
	s.Ops[op.ID] = op
	s.Order = append(s.Order, op.ID)
	s.Active = op.ID
	s.totals().Started[op.Kind]++
	s.prune()
	return Response{Op: op.Clone(), Epoch: s.Epoch}
}

func sameParams(a, b Params) bool {
	if a.BackupID != b.BackupID || a.Target != b.Target || a.CallbackURL != b.CallbackURL || len(a.BackupIDs) != len(b.BackupIDs) || !bytes.Equal(a.Options, b.Options) {
		return false
	}
	for i := range a.BackupIDs {
		if a.BackupIDs[i] != b.BackupIDs[i] {
			return false
		}
	}
	return true
}

func (s *State) advance(index uint64, cmd Command) Response {
	op, ok := s.Ops[cmd.OpID]
	if !ok {
		return Response{Err: fmt.Errorf("%w: %s", ErrUnknownOperation, cmd.OpID)}
	}
	// Fencing: only the current coordinator may move operations. A deposed
	// leader's late command lands here with an older epoch.
	if cmd.Epoch != s.Epoch {
		return Response{Err: fmt.Errorf("%w: command epoch %d, current %d", ErrStaleEpoch, cmd.Epoch, s.Epoch)}
	}
	if op.State.Terminal() {
		return Response{Err: fmt.Errorf("%w: operation %s already %s", ErrInvalidTransition, op.ID, op.State)}
	}
	if cmd.Type == CmdFinish {
		return s.finish(index, cmd, op)
	}
	if cmd.Step < 0 || cmd.Step >= len(op.Steps) {
		return Response{Err: fmt.Errorf("%w: step %d out of range", ErrInvalidCommand, cmd.Step)}
	}
	st := &op.Steps[cmd.Step]
	t := cmd.Time
	switch cmd.Type {
	case CmdStepStarted:
		// Steps run in plan order, a phase's steps side by side.
		if !slices.Contains(op.Runnable(), cmd.Step) {
			return Response{Err: fmt.Errorf("%w: step %d started but the runnable steps are %v", ErrInvalidTransition, cmd.Step, op.Runnable())}
		}
		if st.Attempts > 0 {
			s.totals().StepAttemptsFailed[StepFailureKey(st.Name, FailureRetried)]++ // the attempt before did not succeed
		}
		st.State = StepRunning
		st.Attempts++
		st.Epoch = cmd.Epoch
		st.StartedAt = &t
		st.Error = ""
	case CmdStepProgress:
		if st.State != StepRunning {
			return Response{Err: fmt.Errorf("%w: progress for step %d in state %s", ErrInvalidTransition, cmd.Step, st.State)}
		}
		if cmd.Progress != nil {
			p := *cmd.Progress
			st.Progress = &p
		}
	case CmdStepDone, CmdStepFailed:
		if st.State != StepRunning {
			return Response{Err: fmt.Errorf("%w: step %d is %s, not running", ErrInvalidTransition, cmd.Step, st.State)}
		}
		st.FinishedAt = &t
		if cmd.Progress != nil {
			p := *cmd.Progress
			st.Progress = &p
		}
		if cmd.Type == CmdStepDone {
			st.State = StepDone
			st.Result = append(st.Result[:0:0], cmd.Result...)
		} else {
			st.State = StepFailed
			s.totals().StepAttemptsFailed[StepFailureKey(st.Name, FailureFinal)]++
			// A failed step may still report what it found (a verify's problems).
			st.Result = append(st.Result[:0:0], cmd.Result...)
			st.Error = cmd.Error
			if st.Error == "" {
				st.Error = "step failed"
			}
			// Later steps are skipped, and so are the failed step's
			// siblings in its phase, running or not: the coordinator stops
			// them and their late results are refused. With KeepRunning
			// the running siblings have ended and report their own outcome.
			for i := range op.Steps {
				sib := op.Steps[i].Phase != 0 && op.Steps[i].Phase == st.Phase
				stop := sib && op.Steps[i].State == StepRunning && !cmd.KeepRunning
				if (i > cmd.Step || sib) && !op.Steps[i].Always && (op.Steps[i].State == StepPending || stop) {
					op.Steps[i].State = StepSkipped
				}
			}
		}
	}
	op.UpdatedAt = t
	op.Revision = index
	op.Epoch = cmd.Epoch
	return Response{Op: op.Clone(), Epoch: s.Epoch}
}

func (s *State) finish(index uint64, cmd Command, op *Operation) Response {
	if next := op.NextStep(); next >= 0 {
		return Response{Err: fmt.Errorf("%w: operation %s has unfinished step %d", ErrInvalidTransition, op.ID, next)}
	}
	t := cmd.Time
	op.State = OpSucceeded
	for _, st := range op.Steps {
		if st.State == StepFailed {
			op.State = OpFailed
			if op.Error == "" {
				op.Error = fmt.Sprintf("step %s: %s", st.Name, st.Error)
			}
		}
	}
	op.FinishedAt = &t
	op.UpdatedAt = t
	op.Revision = index
	op.Epoch = cmd.Epoch
	if s.Active == op.ID {
		s.Active = ""
	}
	tot := s.totals()
	tot.Finished[string(op.Kind)+"/"+string(op.State)]++
	tot.LastFinished[op.Kind] = op.Clone()
	if op.State == OpSucceeded {
		tot.LastSucceeded[op.Kind] = op.Clone()
	}
	s.prune()
	return Response{Op: op.Clone(), Epoch: s.Epoch}
}

// notified marks a finished operation's completion delivered.
func (s *State) notified(cmd Command) Response {
	op, ok := s.Ops[cmd.OpID]
	switch {
	case !ok:
		return Response{Err: fmt.Errorf("%w: %s", ErrUnknownOperation, cmd.OpID)}
	case !op.State.Terminal():
		return Response{Err: fmt.Errorf("%w: operation %s is still %s", ErrInvalidTransition, op.ID, op.State)}
	case cmd.Epoch != s.Epoch:
		return Response{Err: fmt.Errorf("%w: command epoch %d, current %d", ErrStaleEpoch, cmd.Epoch, s.Epoch)}
	}
	op.Notified = true
	op.NotifyError = cmd.Error
	return Response{Op: op.Clone(), Epoch: s.Epoch}
}

// prune drops the oldest finished operations beyond MaxFinishedOps.
func (s *State) prune() {
	finished := 0
	for _, id := range s.Order {
		if s.Ops[id].State.Terminal() {
			finished++
		}
	}
	if finished <= MaxFinishedOps {
		return
	}
	drop := finished - MaxFinishedOps
	kept := s.Order[:0]
	for _, id := range s.Order {
		if drop > 0 && s.Ops[id].State.Terminal() {
			delete(s.Ops, id)
			drop--
			continue
		}
		kept = append(kept, id)
	}
	s.Order = kept
}
