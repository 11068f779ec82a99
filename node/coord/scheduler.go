package coord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/internal/wait"
	"github.com/crayfish-backup/crayfish/node/schedule"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// schedulerTick is how often the leader looks at its schedules: slots
// fire within a tick of their time.
const schedulerTick = 500 * time.Millisecond

// RunSchedules fires the schedules' slots while this node leads with
// epoch (Engine.WhileLeading runs it). Each slot's operation id derives
// from the schedule and the slot, and the slot is recorded only after
// its operation started: a leader that dies in between leaves the slot
// to its successor, whose start finds the operation already there. The
// configured schedules (config) are put in the replicated state first.
func (o *Operations) RunSchedules(ctx context.Context, epoch uint64) {
	o.applyConfigSchedules(ctx)
	var (
		mu      sync.Mutex
		firing  = map[string]bool{}
		wg      sync.WaitGroup
		logged  = map[string]string{}
		fsmView = o.store.FSM()
	)
	defer wg.Wait()
	for {
		now := o.engine.now().UTC()
		for name, sc := range fsmView.Schedules() {
			mu.Lock()
			busy := firing[name]
			mu.Unlock()
			if sc.Paused || busy {
				continue
			}
			slots, err := schedule.Parse(sc.Cron, sc.TimeZone)
			if err != nil {
				if logged[name] != err.Error() {
					o.engine.log.Error("schedule does not parse here; not firing it", "schedule", name, "err", err)
					logged[name] = err.Error()
				}
				continue
			}
			d := schedule.Decide(sc, slots, now)
			if d.Action != schedule.Fire && d.Action != schedule.GiveUp {
				continue
			}
			mu.Lock()
			firing[name] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(firing, name)
					mu.Unlock()
				}()
				o.handleSlot(ctx, epoch, sc, d)
			})
		}
		if wait.Sleep(ctx, schedulerTick) != nil {
			return
		}
	}
}

// handleSlot fires (or gives up) one slot and records it.
func (o *Operations) handleSlot(ctx context.Context, epoch uint64, sc *fsm.Schedule, d schedule.Decision) {
	log := o.engine.log.With("schedule", sc.Name, "slot", d.Slot)
	rec := fsm.Command{Type: fsm.CmdScheduleSlot, Name: sc.Name, Epoch: epoch, Slot: d.Slot}
	if d.Action == schedule.GiveUp {
		rec.Error = fmt.Sprintf("missed: due at %s, not fired within %s (missed policy skip)", d.At.Format(time.RFC3339), schedule.Grace)
		log.Warn("giving up a late slot", "due", d.At, "passed", d.Passed)
	} else {
		id := schedule.OpID(sc.Name, d.Slot)
		op, err := o.fireSlot(ctx, sc, id)
		switch {
		case ctx.Err() != nil || errors.Is(err, wire.ErrNotLeader) || errors.Is(err, wire.ErrUnknownOutcome):
			return // the next leader decides the same slot again
		case err != nil:
			rec.Error = err.Error()
			log.Error("schedule slot not run", "op", id, "err", err)
		default:
			rec.OpID = op.ID
			log.Info("schedule fired", "op", op.ID, "passed", d.Passed)
		}
	}
	if _, err := o.engine.apply(ctx, rec); err != nil && ctx.Err() == nil {
		log.Warn("recording schedule slot", "err", err)
	}
}

// fireSlot starts the slot's operation, waiting for the cluster lock (and
// retrying other failures) up to the schedule's max_wait.
func (o *Operations) fireSlot(ctx context.Context, sc *fsm.Schedule, id string) (*fsm.Operation, error) {
	maxWait := time.Duration(sc.MaxWait)
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	deadline := o.engine.now().Add(maxWait)
	backoff := time.Second
	for {
		op, err := o.startScheduled(ctx, sc, id)
		if err == nil || ctx.Err() != nil || errors.Is(err, wire.ErrNotLeader) || errors.Is(err, wire.ErrUnknownOutcome) ||
			errors.Is(err, wire.ErrBadRequest) || errors.Is(err, fsm.ErrIDConflict) || errors.Is(err, storage.ErrNotFound) {
			// Refusals waiting cannot change (a drill of an empty
			// repository) are the slot's outcome at once.
			return op, err
		}
		if !o.engine.now().Before(deadline) {
			if errors.Is(err, fsm.ErrBusy) {
				return nil, fmt.Errorf("cluster busy for max_wait %s: %w", maxWait, err)
			}
			return nil, fmt.Errorf("not started within max_wait %s: %w", maxWait, err)
		}
		delay := time.Second // the lock: look again soon
		if !errors.Is(err, fsm.ErrBusy) {
			delay, backoff = backoff, min(2*backoff, 30*time.Second)
			o.engine.log.Warn("schedule slot could not start; retrying", "schedule", sc.Name, "op", id, "err", err, "in", delay)
		}
		if wait.Sleep(ctx, delay) != nil {
			return nil, ctx.Err()
		}
	}
}

// applyConfigSchedules puts the configured schedules in the replicated
// state: new ones are created, changed ones redefined (keeping their
// last slot); schedules created through the API are left alone.
func (o *Operations) applyConfigSchedules(ctx context.Context) {
	for _, sp := range o.configSchedules {
		sp.Source = "config"
		if err := CheckSchedule(&sp); err != nil {
			o.engine.log.Error("configured schedule refused", "schedule", sp.Name, "err", err)
			continue
		}
		cur := o.store.FSM().Schedule(sp.Name)
		if cur != nil && (cur.ScheduleSpec.Equal(sp) || cur.Source != "config") {
			continue
		}
		if _, err := o.engine.apply(ctx, fsm.Command{Type: fsm.CmdScheduleSet, Schedule: &fsm.Schedule{ScheduleSpec: sp}}); err != nil {
			o.engine.log.Warn("applying configured schedule", "schedule", sp.Name, "err", err)
		}
	}
}
