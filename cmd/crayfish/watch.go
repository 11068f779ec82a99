package main

import (
	"fmt"
	"io"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

// progressEvery is the least time between two progress lines of one
// running step; state changes are printed at once.
const progressEvery = 2 * time.Second

// watcher turns successive states of one operation into --wait lines:
// one per step transition, plus progress of running steps at most every
// progressEvery.
type watcher struct {
	w     io.Writer
	now   func() time.Time
	steps []watchedStep
	state fsm.OpState
}

type watchedStep struct {
	state    fsm.StepState
	attempts int
	progress fsm.Progress
	printed  time.Time
}

func newWatcher(w io.Writer, now func() time.Time) *watcher {
	return &watcher{w: w, now: now}
}

// update prints what changed since the previous state of op.
func (wt *watcher) update(op *api.Operation) {
	now := wt.now()
	n := len(op.Steps)
	for len(wt.steps) < n {
		wt.steps = append(wt.steps, watchedStep{})
	}
	for i, s := range op.Steps {
		prev := &wt.steps[i]
		var p fsm.Progress
		if s.Progress != nil {
			p = *s.Progress
		}
		print := false
		switch {
		case s.State != prev.state || s.Attempts != prev.attempts:
			// Steps not started yet are noise at the first sight.
			print = !(s.State == fsm.StepPending && prev.state == "")
		case s.State == fsm.StepRunning && p != prev.progress:
			print = now.Sub(prev.printed) >= progressEvery
		}
		if print {
			fmt.Fprintf(wt.w, "[%s] %s\n", now.Format("15:04:05"), stepLine(i, n, s))
			prev.printed = now
			prev.progress = p
		}
		prev.state, prev.attempts = s.State, s.Attempts
	}
	if op.State.Terminal() && op.State != wt.state {
		fmt.Fprintf(wt.w, "[%s] operation %s %s\n", now.Format("15:04:05"), op.ID, op.State)
	}
	wt.state = op.State
}
