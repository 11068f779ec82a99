package fsm

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/crayfish-backup/crayfish/internal/duration"
)

// Schedule is a recurring operation the leader starts at each slot of its
// cron expression. The definition (Spec) comes from an API call or the
// agent's configuration; the run state (Last*) from the leader, which
// records each slot it fired so that a new leader fires the next one,
// never the same one again. Parsing the expression and computing slots is
// the scheduler's (it reads clocks and time zones); the FSM only stores.
type Schedule struct {
	ScheduleSpec
	Paused    bool      `json:"paused,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// LastSlot is the latest slot handled (fired, or given up); the next
	// slot is the first after it.
	LastSlot time.Time `json:"last_slot,omitzero"`
	// LastOpID is the operation the last fired slot started ("" if the
	// slot was given up); LastError says why a slot was given up.
	LastOpID  string    `json:"last_op_id,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	LastFired time.Time `json:"last_fired,omitzero"`
	// FiredSlots counts slots that started an operation; GivenUpSlots
	// those given up.
	FiredSlots   uint64 `json:"fired_slots"`
	GivenUpSlots uint64 `json:"given_up_slots"`
}

// ScheduleSpec is a schedule's definition.
type ScheduleSpec struct {
	Name string `json:"name"`
	// Cron is five standard fields or a descriptor (@daily, @every 1h).
	Cron string `json:"cron"`
	// TimeZone is an IANA zone name the fields are read in ("" is UTC).
	TimeZone string `json:"time_zone,omitempty"`
	Kind     OpKind `json:"kind"`
	// Options are the operation's options (as its API request takes them).
	Options json.RawMessage `json:"options,omitempty"`
	// Missed says what a slot the cluster could not fire in time (no
	// leader, an outage) becomes: MissedSkip or MissedRunOnce.
	Missed string `json:"missed,omitempty"`
	// Jitter delays each slot by a deterministic fraction of it.
	Jitter Duration `json:"jitter,omitempty"`
	// MaxWait bounds how long a slot waits for the cluster lock.
	MaxWait Duration `json:"max_wait,omitempty"`
	// Source is "api" or "config" (the agent's configuration keeps
	// those in step on each new leader).
	Source string `json:"source,omitempty"`
}

// Missed-run policies.
const (
	MissedSkip    = "skip"     // a late slot is dropped; the next one runs on time
	MissedRunOnce = "run_once" // after an outage, one run for all missed slots
)

// Duration is a time.Duration that reads and writes as text ("90s").
type Duration = duration.Duration

var scheduleNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidScheduleName reports whether name may name a schedule: 1-63 of
// a-z 0-9 -, starting with a letter or digit (it becomes part of the
// operation ids the schedule starts).
func ValidScheduleName(name string) bool { return scheduleNamePattern.MatchString(name) }

// Schedulable lists the kinds a schedule may start.
func Schedulable(k OpKind) bool {
	return k == KindBackup || k == KindCleanup || k == KindVerify || k == KindDrill
}

func (sp *ScheduleSpec) check() error {
	switch {
	case !ValidScheduleName(sp.Name):
		return fmt.Errorf("%w: invalid schedule name %q", ErrInvalidCommand, sp.Name)
	case sp.Cron == "":
		return fmt.Errorf("%w: schedule %s has no cron expression", ErrInvalidCommand, sp.Name)
	case !Schedulable(sp.Kind):
		return fmt.Errorf("%w: schedule %s: kind %q cannot be scheduled", ErrInvalidCommand, sp.Name, sp.Kind)
	case sp.Missed != MissedSkip && sp.Missed != MissedRunOnce:
		return fmt.Errorf("%w: schedule %s: missed policy %q", ErrInvalidCommand, sp.Name, sp.Missed)
	case sp.Jitter < 0 || sp.MaxWait < 0:
		return fmt.Errorf("%w: schedule %s: negative duration", ErrInvalidCommand, sp.Name)
	}
	return nil
}

// Equal reports whether two definitions are the same.
func (sp ScheduleSpec) Equal(o ScheduleSpec) bool {
	a, _ := json.Marshal(sp)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// Clone deep-copies s.
func (s *Schedule) Clone() *Schedule {
	if s == nil {
		return nil
	}
	c := *s
	c.Options = append(json.RawMessage(nil), s.Options...)
	return &c
}

// applySchedule performs the schedule commands.
func (s *State) applySchedule(cmd Command) Response {
	if s.Schedules == nil {
		s.Schedules = map[string]*Schedule{}
	}
	switch cmd.Type {
	case CmdScheduleSet:
		if cmd.Schedule == nil {
			return Response{Err: fmt.Errorf("%w: schedule_set without schedule", ErrInvalidCommand)}
		}
		sp := cmd.Schedule.ScheduleSpec
		if err := sp.check(); err != nil {
			return Response{Err: err}
		}
		old, ok := s.Schedules[sp.Name]
		if ok && cmd.Create {
			if old.ScheduleSpec.Equal(sp) {
				return Response{Schedule: old.Clone(), Existing: true}
			}
			return Response{Err: fmt.Errorf("%w: schedule %s exists with another definition", ErrIDConflict, sp.Name)}
		}
		if !ok {
			old = &Schedule{CreatedAt: cmd.Time, Paused: cmd.Schedule.Paused}
			s.Schedules[sp.Name] = old
		}
		// A new definition keeps the run state: the next slot is still
		// the first after the last one handled.
		old.ScheduleSpec = sp
		old.Options = append(json.RawMessage(nil), sp.Options...)
		old.UpdatedAt = cmd.Time
		return Response{Schedule: old.Clone()}
	}
	sc, ok := s.Schedules[cmd.Name]
	if !ok {
		return Response{Err: fmt.Errorf("%w: schedule %q", ErrUnknownSchedule, cmd.Name)}
	}
	switch cmd.Type {
	case CmdScheduleRemove:
		delete(s.Schedules, cmd.Name)
		return Response{Schedule: sc.Clone()}
	case CmdSchedulePause:
		sc.Paused = cmd.Paused
		sc.UpdatedAt = cmd.Time
	case CmdScheduleSlot:
		// Only the coordinator records slots, and only forward: a deposed
		// leader's late record, or a slot recorded twice, changes nothing.
		if cmd.Epoch != s.Epoch {
			return Response{Err: fmt.Errorf("%w: command epoch %d, current %d", ErrStaleEpoch, cmd.Epoch, s.Epoch)}
		}
		if !cmd.Slot.After(sc.LastSlot) {
			return Response{Schedule: sc.Clone(), Existing: true}
		}
		sc.LastSlot = cmd.Slot
		sc.LastOpID, sc.LastError = cmd.OpID, cmd.Error
		if cmd.OpID != "" {
			sc.LastFired = cmd.Time
			sc.FiredSlots++
		} else {
			sc.GivenUpSlots++
		}
	}
	return Response{Schedule: sc.Clone()}
}
