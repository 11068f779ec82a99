package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

// progressEvery is the least time between two progress lines of one
// running step; state changes are printed at once.
const progressEvery = 2 * time.Second

// watcher turns successive states of one operation into --wait lines:
// one per step transition, plus progress of running steps at most every
// progressEvery. With a bar (a terminal), progress is a live bar under
// the transition lines instead of progress lines.
type watcher struct {
	w     io.Writer
	now   func() time.Time
	steps []watchedStep
	state fsm.OpState

	mu  sync.Mutex   // with a bar, update and tick run in two goroutines
	bar *progressBar // nil: line mode
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
	wt.mu.Lock()
	defer wt.mu.Unlock()
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
			print = wt.bar == nil && now.Sub(prev.printed) >= progressEvery
		}
		if print {
			wt.clearBar()
			fmt.Fprintf(wt.w, "[%s] %s\n", now.Format("15:04:05"), stepLine(i, n, s))
			prev.printed = now
			prev.progress = p
		}
		prev.state, prev.attempts = s.State, s.Attempts
	}
	if op.State.Terminal() && op.State != wt.state {
		wt.clearBar()
		fmt.Fprintf(wt.w, "[%s] operation %s %s\n", now.Format("15:04:05"), op.ID, op.State)
	}
	wt.state = op.State
	if wt.bar != nil {
		wt.bar.update(op, now)
	}
}

func (wt *watcher) clearBar() {
	if wt.bar != nil {
		wt.bar.clear()
	}
}

// tick redraws the bar between updates (see progressBar.tick).
func (wt *watcher) tick() {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.bar.tick(wt.now())
}

// stop clears the bar, for what comes next on stderr.
func (wt *watcher) stop() {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.clearBar()
}

// addProgressFlag registers --no-progress on a command with --wait.
func addProgressFlag(cmd *cobra.Command) {
	cmd.Flags().Bool("no-progress", false, "with --wait: print step lines only, no live progress bar")
}

// noProgress tells whether cmd was given --no-progress.
func noProgress(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("no-progress")
	return v
}

// waitWatcher returns the --wait callback that shows an operation's
// states on w, and stop, to call once the wait is over. On a terminal
// (unless noProgress) it draws a live progress bar under the step
// transition lines; elsewhere it prints the transition and progress lines
// of newWatcher.
func waitWatcher(w io.Writer, now func() time.Time, noProgress bool) (update func(*api.Operation), stop func()) {
	wt := newWatcher(w, now)
	f, ok := w.(*os.File)
	if noProgress || !ok || !term.IsTerminal(int(f.Fd())) || os.Getenv("TERM") == "dumb" {
		return wt.update, func() {}
	}
	fd := int(f.Fd())
	wt.bar = newProgressBar(w, func() int {
		if cols, _, err := term.GetSize(fd); err == nil && cols > 0 {
			return cols
		}
		return defaultTermWidth
	})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressRedrawEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				wt.tick()
			}
		}
	}()
	return wt.update, func() {
		close(done)
		wg.Wait()
		wt.stop()
	}
}
