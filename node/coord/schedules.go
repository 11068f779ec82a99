package coord

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/schedule"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// DefaultMaxWait bounds how long a slot waits for the cluster lock when
// its schedule names no max_wait.
const DefaultMaxWait = time.Hour

// WithCallback returns Operations whose next start records callbackURL
// to receive the operation's completion. The URL must be absolute http
// or https.
func (o *Operations) WithCallback(callbackURL string) (*Operations, error) {
	if callbackURL == "" {
		return o, nil
	}
	if err := CheckNotifyURL(callbackURL); err != nil {
		return nil, fmt.Errorf("%w: callback_url: %v", wire.ErrBadRequest, err)
	}
	c := *o
	c.callback = callbackURL
	return &c, nil
}

// CheckNotifyURL says whether u can receive completions.
func CheckNotifyURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return err
	}
	if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", u)
	}
	return nil
}

// CheckSchedule fills a definition's defaults and refuses what cannot
// run: an expression or zone that does not parse, an unknown kind or
// policy, options the kind does not take.
func CheckSchedule(sp *fsm.ScheduleSpec) error {
	if sp.Kind == "" {
		sp.Kind = fsm.KindBackup
	}
	if sp.Missed == "" {
		sp.Missed = fsm.MissedSkip
	}
	if sp.Source == "" {
		sp.Source = "api"
	}
	switch {
	case !fsm.ValidScheduleName(sp.Name):
		return fmt.Errorf("%w: schedule name %q: 1-63 of a-z 0-9 -, starting with a letter or digit", wire.ErrBadRequest, sp.Name)
	case !fsm.Schedulable(sp.Kind):
		return fmt.Errorf("%w: schedule %s: kind %q: want backup, cleanup, verify or drill", wire.ErrBadRequest, sp.Name, sp.Kind)
	case sp.Missed != fsm.MissedSkip && sp.Missed != fsm.MissedRunOnce:
		return fmt.Errorf("%w: schedule %s: missed %q: want skip or run_once", wire.ErrBadRequest, sp.Name, sp.Missed)
	case sp.Jitter < 0 || sp.MaxWait < 0:
		return fmt.Errorf("%w: schedule %s: jitter and max_wait cannot be negative", wire.ErrBadRequest, sp.Name)
	}
	if _, err := schedule.Parse(sp.Cron, sp.TimeZone); err != nil {
		return fmt.Errorf("%w: schedule %s: %v", wire.ErrBadRequest, sp.Name, err)
	}
	opts, err := scheduleOptions(sp.Kind, sp.Options)
	if err != nil {
		return fmt.Errorf("%w: schedule %s: options: %v", wire.ErrBadRequest, sp.Name, err)
	}
	sp.Options = opts
	return nil
}

// scheduleOptions checks raw against the options of kind and returns
// them in canonical form (nil when empty).
func scheduleOptions(kind fsm.OpKind, raw json.RawMessage) (json.RawMessage, error) {
	var v any
	switch kind {
	case fsm.KindBackup:
		v = &struct{}{}
	case fsm.KindCleanup:
		v = &api.CleanupOptions{}
	case fsm.KindVerify:
		v = &api.VerifyOptions{}
	case fsm.KindDrill:
		v = &api.DrillOptions{}
	}
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, err
	}
	out, err := json.Marshal(v)
	if err != nil || string(out) == "{}" {
		return nil, err
	}
	return out, nil
}

// SetSchedule creates a schedule (create: refusing another definition
// of the same name) or redefines it.
func (o *Operations) SetSchedule(ctx context.Context, sp fsm.ScheduleSpec, paused, create bool) (*fsm.Schedule, bool, error) {
	if err := CheckSchedule(&sp); err != nil {
		return nil, false, err
	}
	return o.scheduleCommand(ctx, fsm.Command{Type: fsm.CmdScheduleSet, Create: create, Schedule: &fsm.Schedule{ScheduleSpec: sp, Paused: paused}})
}

// RemoveSchedule deletes a schedule; its operations stay.
func (o *Operations) RemoveSchedule(ctx context.Context, name string) (*fsm.Schedule, error) {
	sc, _, err := o.scheduleCommand(ctx, fsm.Command{Type: fsm.CmdScheduleRemove, Name: name})
	return sc, err
}

// PauseSchedule pauses (or resumes) a schedule: a paused one fires no
// slot; resumed, it goes on from the first slot after the last handled,
// under its missed-run policy.
func (o *Operations) PauseSchedule(ctx context.Context, name string, paused bool) (*fsm.Schedule, error) {
	sc, _, err := o.scheduleCommand(ctx, fsm.Command{Type: fsm.CmdSchedulePause, Name: name, Paused: paused})
	return sc, err
}

func (o *Operations) scheduleCommand(ctx context.Context, cmd fsm.Command) (*fsm.Schedule, bool, error) {
	if !o.store.IsLeader() {
		return nil, false, wire.ErrNotLeader
	}
	resp, err := o.engine.apply(ctx, cmd)
	return resp.Schedule, resp.Existing, err
}

// ScheduleStatus is a schedule with its next slot and its last run's
// outcome, as of now.
func (o *Operations) ScheduleStatus(sc *fsm.Schedule, now time.Time) api.Schedule {
	out := api.Schedule{Schedule: *sc}
	if slots, err := schedule.Parse(sc.Cron, sc.TimeZone); err == nil {
		d := schedule.Decide(sc, slots, now)
		if d.Action != schedule.Never {
			next := d.At
			out.NextRun = &next
		}
	}
	if sc.LastOpID != "" {
		if op := o.store.FSM().Operation(sc.LastOpID); op != nil {
			out.LastState, out.LastOpError = op.State, op.Error
		}
	}
	return out
}

// Schedules lists the schedules by name with their status.
func (o *Operations) Schedules(now time.Time) []api.Schedule {
	all := o.store.FSM().Schedules()
	out := make([]api.Schedule, 0, len(all))
	for _, sc := range all {
		out = append(out, o.ScheduleStatus(sc, now))
	}
	slices.SortFunc(out, func(a, b api.Schedule) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// startScheduled starts the operation of a schedule's slot.
func (o *Operations) startScheduled(ctx context.Context, sc *fsm.Schedule, id string) (*fsm.Operation, error) {
	var err error
	var op *fsm.Operation
	decode := func(v any) error {
		if len(sc.Options) == 0 {
			return nil
		}
		return json.Unmarshal(sc.Options, v)
	}
	switch sc.Kind {
	case fsm.KindBackup:
		op, _, err = o.StartBackup(ctx, id)
	case fsm.KindCleanup:
		var opts api.CleanupOptions
		if err = decode(&opts); err == nil {
			op, _, err = o.StartCleanup(ctx, id, opts)
		}
	case fsm.KindVerify:
		var opts api.VerifyOptions
		if err = decode(&opts); err == nil {
			op, _, err = o.StartVerify(ctx, id, opts)
		}
	case fsm.KindDrill:
		var opts api.DrillOptions
		if err = decode(&opts); err == nil {
			op, _, err = o.StartDrill(ctx, id, opts)
		}
	default:
		err = fmt.Errorf("%w: kind %s cannot be scheduled", wire.ErrBadRequest, sc.Kind)
	}
	return op, err
}
