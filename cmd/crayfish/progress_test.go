package main

import (
	"bytes"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

var progressT0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.Local)

// uploadOp is a six-step backup whose third step, upload@n1, runs with p.
func uploadOp(p *fsm.Progress) *api.Operation {
	started := progressT0
	return &api.Operation{ID: "op-1", State: fsm.OpRunning, Steps: []fsm.Step{
		{Name: "lock", State: fsm.StepDone, Attempts: 1},
		{Name: "snapshot", Node: "n1", State: fsm.StepDone, Attempts: 1},
		{Name: "upload", Node: "n1", State: fsm.StepRunning, Attempts: 1, Progress: p, StartedAt: &started},
		{Name: "manifest", State: fsm.StepPending},
		{Name: "release", Node: "n1", State: fsm.StepPending, Always: true},
		{Name: "unlock", State: fsm.StepPending, Always: true},
	}}
}

// samplesEvery are samples one second apart, the last at progressT0+len-1s.
func samplesEvery(values ...[2]int64) []progressSample {
	var s []progressSample
	for i, v := range values {
		s = append(s, progressSample{at: progressT0.Add(time.Duration(i) * time.Second), files: v[0], bytes: v[1]})
	}
	return s
}

const mib = 1 << 20

func TestRenderProgressWidths(t *testing.T) {
	op := uploadOp(&fsm.Progress{FilesDone: 120, FilesTotal: 300, BytesDone: 120*mib + 300<<10, BytesTotal: 300 * mib})
	// 20 MiB/s over the last four seconds.
	samples := samplesEvery([2]int64{60, 60*mib + 300<<10}, [2]int64{80, 80*mib + 300<<10}, [2]int64{100, 100*mib + 300<<10}, [2]int64{120, 120*mib + 300<<10})
	now := samples[len(samples)-1].at
	for _, tc := range []struct {
		width int
		want  string
	}{
		{40, "step 3/6 upload@n1 [=====>        ]  40%"},
		{80, "step 3/6 upload@n1 [====>      ]  40%  120.3 MiB/300 MiB    20 MiB/s  ETA 9s"},
		{200, "step 3/6 upload@n1 [====================>                             ]  40%  120.3 MiB/300 MiB  files 120/300    20 MiB/s  ETA 9s"},
	} {
		got := renderProgress(op, samples, tc.width, now)
		if got != tc.want {
			t.Errorf("width %d:\n got %q\nwant %q", tc.width, got, tc.want)
		}
		if n := utf8.RuneCountInString(got); n > tc.width {
			t.Errorf("width %d: line has %d columns", tc.width, n)
		}
	}
}

// TestRenderProgressNeverExceedsWidth tries every width on lines of every
// shape.
func TestRenderProgressNeverExceedsWidth(t *testing.T) {
	samples := samplesEvery([2]int64{1, 1 << 30}, [2]int64{1000, 3 << 30})
	now := samples[1].at
	for _, p := range []*fsm.Progress{
		nil,
		{},
		{FilesDone: 123456, FilesTotal: 9999999, BytesDone: 3 << 30, BytesTotal: 5 << 40},
		{FilesDone: 5, FilesTotal: 10},
		{BytesDone: 1023*1024 + 1000},
		{FilesDone: 12, BytesDone: 100, BytesTotal: 50}, // more done than the total
	} {
		for _, attempts := range []int{1, 3} {
			op := uploadOp(p)
			op.Steps[2].Attempts = attempts
			op.Steps[2].Node = "a-node-with-a-rather-long-name.example.com"
			for width := 0; width <= 220; width++ {
				got := renderProgress(op, samples, width, now.Add(time.Minute))
				if n := utf8.RuneCountInString(got); n > width {
					t.Fatalf("progress %+v, width %d: %d columns: %q", p, width, n, got)
				}
				if width >= 12 && !strings.HasPrefix(got, "step 3/6 ") {
					t.Fatalf("width %d: %q", width, got)
				}
			}
		}
	}
}

func TestRenderProgressUnknownTotals(t *testing.T) {
	samples := samplesEvery([2]int64{10, 10 * mib}, [2]int64{20, 15 * mib})
	now := samples[1].at
	for _, tc := range []struct {
		name string
		p    fsm.Progress
		want string
	}{
		// The bar counts files when the bytes total is unknown.
		{"no bytes total", fsm.Progress{FilesDone: 20, FilesTotal: 40, BytesDone: 15 * mib},
			"step 3/6 upload@n1 [=============>            ]  50%     15 MiB  files 20/40     5 MiB/s  ETA 2s"},
		// No totals at all: no bar, no percentage, no ETA.
		{"no totals", fsm.Progress{FilesDone: 20, BytesDone: 15 * mib},
			"step 3/6 upload@n1  15 MiB  files 20  5 MiB/s"},
		// Files only: the rate is in files.
		{"files only", fsm.Progress{FilesDone: 20},
			"step 3/6 upload@n1  files 20  10 files/s"},
		{"nothing yet", fsm.Progress{},
			"step 3/6 upload@n1  files 0  0 files/s"},
	} {
		ss := samples
		if tc.p == (fsm.Progress{}) {
			ss = samplesEvery([2]int64{0, 0}, [2]int64{0, 0})
		}
		got := renderProgress(uploadOp(&tc.p), ss, 100, now)
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestRenderProgressZeroThroughput(t *testing.T) {
	op := uploadOp(&fsm.Progress{FilesDone: 1, FilesTotal: 4, BytesDone: 10 * mib, BytesTotal: 40 * mib})
	flat := samplesEvery([2]int64{1, 10 * mib}, [2]int64{1, 10 * mib}, [2]int64{1, 10 * mib})
	got := renderProgress(op, flat, 100, flat[2].at)
	want := "step 3/6 upload@n1 [=====>               ]  25%     10 MiB/40 MiB  files 1/4       0 B/s  ETA -"
	if got != want {
		t.Errorf("flat:\n got %q\nwant %q", got, want)
	}

	// One sample: no rate yet, rather than a guess; blanks keep its place so
	// the bar keeps its width when it comes.
	got = renderProgress(op, flat[:1], 100, flat[0].at)
	want = "step 3/6 upload@n1 [=====>               ]  25%     10 MiB/40 MiB  files 1/4              ETA -"
	if got != want {
		t.Errorf("one sample:\n got %q\nwant %q", got, want)
	}

	// A step that stops moving: past progressStall the rate is measured up
	// to now, so it falls towards zero instead of freezing.
	moving := samplesEvery([2]int64{0, 0}, [2]int64{1, 10 * mib})
	if got := renderProgress(op, moving, 100, moving[1].at); !strings.Contains(got, "10 MiB/s  ETA 3s") {
		t.Errorf("moving: %q", got)
	}
	if got := renderProgress(op, moving, 100, moving[1].at.Add(9*time.Second)); !strings.Contains(got, "1 MiB/s  ETA 30s") {
		t.Errorf("stalled 9s: %q", got)
	}
	if got := renderProgress(op, moving[1:], 100, moving[1].at.Add(time.Minute)); !strings.Contains(got, "0 B/s  ETA -") {
		t.Errorf("one old sample: %q", got)
	}
}

func TestRenderProgressWindow(t *testing.T) {
	// Samples older than progressWindow before the newest do not count: the
	// rate is that of the last ten seconds, not of the whole step.
	s := []progressSample{
		{at: progressT0, bytes: 0},
		{at: progressT0.Add(20 * time.Second), bytes: 100 * mib},
		{at: progressT0.Add(30 * time.Second), bytes: 110 * mib},
	}
	b, _, ok := progressRates(s, s[2].at)
	if !ok || b != mib {
		t.Errorf("rate = %v, %v; want 1 MiB/s", b, ok)
	}
}

func TestRenderProgressFinishedStep(t *testing.T) {
	samples := samplesEvery([2]int64{0, 0}, [2]int64{4, 40 * mib})
	// All counted, not yet marked done: a full bar.
	op := uploadOp(&fsm.Progress{FilesDone: 4, FilesTotal: 4, BytesDone: 40 * mib, BytesTotal: 40 * mib})
	got := renderProgress(op, samples, 80, samples[1].at)
	want := "step 3/6 upload@n1 [============] 100%     40 MiB/40 MiB    40 MiB/s  ETA 0s"
	if got != want {
		t.Errorf("complete:\n got %q\nwant %q", got, want)
	}
	// Done: no step runs, no bar (the watcher prints the transition line).
	op.Steps[2].State = fsm.StepDone
	if got := renderProgress(op, samples, 80, samples[1].at); got != "" {
		t.Errorf("finished step: %q", got)
	}
	// The next step runs without counters: its name and how long it runs.
	op.Steps[3].State = fsm.StepRunning
	op.Steps[3].Attempts = 2
	started := progressT0.Add(-65 * time.Second)
	op.Steps[3].StartedAt = &started
	if got, want := renderProgress(op, nil, 80, progressT0), "step 4/6 manifest (attempt 2)  1m05s"; got != want {
		t.Errorf("no counters: %q, want %q", got, want)
	}
	// Operation over: nothing, even if a step was left running.
	op.State = fsm.OpFailed
	if got := renderProgress(op, nil, 80, progressT0); got != "" {
		t.Errorf("operation over: %q", got)
	}
}

// screen interprets what a terminal would do with \r and \n, giving the
// lines left on screen (the last one without its newline).
func screen(out string) []string {
	var lines []string
	var cur []rune
	col := 0
	for _, r := range out {
		switch r {
		case '\n':
			lines = append(lines, strings.TrimRight(string(cur), " "))
			cur, col = nil, 0
		case '\r':
			col = 0
		default:
			if col < len(cur) {
				cur[col] = r
			} else {
				cur = append(cur, r)
			}
			col++
		}
	}
	return append(lines, strings.TrimRight(string(cur), " "))
}

func TestProgressBarRedraws(t *testing.T) {
	var buf bytes.Buffer
	width := 60
	b := newProgressBar(&buf, func() int { return width })
	now := progressT0
	op := func(done int64) *api.Operation {
		return uploadOp(&fsm.Progress{FilesDone: done, FilesTotal: 10, BytesDone: done * mib, BytesTotal: 10 * mib})
	}
	b.update(op(1), now)
	if got := buf.String(); !strings.HasPrefix(got, "\rstep 3/6 upload@n1 [") || strings.Contains(got, "\n") {
		t.Fatalf("first draw: %q", got)
	}
	// Too soon: held back, then drawn by the next tick.
	buf.Reset()
	now = now.Add(50 * time.Millisecond)
	b.update(op(2), now)
	if buf.Len() != 0 {
		t.Fatalf("redrawn within %v: %q", progressRedrawEvery, buf.String())
	}
	b.tick(now.Add(100 * time.Millisecond))
	if buf.Len() != 0 {
		t.Fatalf("tick drew too soon: %q", buf.String())
	}
	now = now.Add(progressRedrawEvery)
	b.tick(now)
	if got := screen(buf.String()); len(got) != 1 || !strings.Contains(got[0], " 20%") {
		t.Fatalf("tick after the rate limit: %q", got)
	}
	// Nothing new: ticks leave the bar alone until progressRefreshEvery.
	buf.Reset()
	b.tick(now.Add(progressRedrawEvery))
	if buf.Len() != 0 {
		t.Fatalf("tick without news redrew: %q", buf.String())
	}
	b.tick(now.Add(progressRefreshEvery))
	if buf.Len() == 0 {
		t.Fatalf("no refresh after %v", progressRefreshEvery)
	}
	// A narrower terminal: the line shrinks, and the leftovers of the
	// wider line are blanked.
	buf.Reset()
	width = 30
	now = now.Add(2 * time.Second)
	b.update(op(3), now)
	if !strings.HasSuffix(buf.String(), " ") {
		t.Errorf("shorter line not padded: %q", buf.String())
	}
	// (What a terminal shows of a line wider than itself varies; only the
	// new line and its padding are checked.)
	redraw := strings.TrimPrefix(buf.String(), "\r")
	if n := utf8.RuneCountInString(redraw); n != 29 || !strings.HasPrefix(redraw, "step 3/6 upload@n1") {
		t.Errorf("after resize %d columns: %q", n, redraw)
	}
	// clear blanks the line and returns to its start.
	buf.Reset()
	shown := b.shown
	b.clear()
	if got := buf.String(); shown == 0 || got != "\r"+strings.Repeat(" ", shown)+"\r" {
		t.Errorf("clear: %q", got)
	}
	buf.Reset()
	b.clear()
	if buf.Len() != 0 {
		t.Errorf("second clear wrote %q", buf.String())
	}
}

func TestProgressBarSamples(t *testing.T) {
	b := newProgressBar(&bytes.Buffer{}, nil)
	now := progressT0
	op := uploadOp(&fsm.Progress{FilesDone: 1, BytesDone: 1})
	for i := range 10 {
		op.Steps[2].Progress = &fsm.Progress{FilesDone: int64(i), BytesDone: int64(i) * mib}
		b.update(op, now.Add(time.Duration(i)*time.Second))
	}
	if len(b.samples) != progressSamples || b.samples[0].files != 10-progressSamples {
		t.Fatalf("samples = %+v", b.samples)
	}
	// A new attempt starts over.
	op.Steps[2].Attempts = 2
	op.Steps[2].Progress = &fsm.Progress{}
	b.update(op, now.Add(11*time.Second))
	if len(b.samples) != 1 {
		t.Fatalf("after a new attempt: %+v", b.samples)
	}
	// Counters going back start over too.
	op.Steps[2].Progress = &fsm.Progress{FilesDone: 5, BytesDone: 5}
	b.update(op, now.Add(12*time.Second))
	op.Steps[2].Progress = &fsm.Progress{FilesDone: 1, BytesDone: 1}
	b.update(op, now.Add(13*time.Second))
	if len(b.samples) != 1 {
		t.Fatalf("after counters went back: %+v", b.samples)
	}
	// So does the next step.
	op.Steps[2].State = fsm.StepDone
	op.Steps[3].State = fsm.StepRunning
	b.update(op, now.Add(14*time.Second))
	if len(b.samples) != 1 || b.step != 3 {
		t.Fatalf("next step: step %d, %+v", b.step, b.samples)
	}
}

// TestWatcherWithBar: transition lines as in line mode, each replacing the
// bar; no progress lines; no bar left once the operation is over.
func TestWatcherWithBar(t *testing.T) {
	now := progressT0
	var buf bytes.Buffer
	wt := newWatcher(&buf, func() time.Time { return now })
	wt.bar = newProgressBar(&buf, func() int { return 80 })
	op := func(state fsm.OpState, steps ...fsm.Step) *api.Operation {
		return &api.Operation{ID: "op-1", State: state, Steps: steps}
	}
	prog := func(files int64) *fsm.Progress {
		return &fsm.Progress{FilesDone: files, FilesTotal: 100, BytesDone: files * mib, BytesTotal: 100 * mib}
	}
	snapDone := fsm.Step{Name: "snap", State: fsm.StepDone, Attempts: 1}
	upload := func(files int64) fsm.Step {
		return fsm.Step{Name: "upload", Node: "n1", State: fsm.StepRunning, Attempts: 1, Progress: prog(files)}
	}

	wt.update(op(fsm.OpRunning, fsm.Step{Name: "snap", State: fsm.StepRunning, Attempts: 1}, fsm.Step{Name: "upload", Node: "n1", State: fsm.StepPending}))
	now = now.Add(time.Second)
	wt.update(op(fsm.OpRunning, snapDone, upload(1)))
	for _, files := range []int64{5, 20, 50} {
		now = now.Add(time.Second)
		wt.update(op(fsm.OpRunning, snapDone, upload(files)))
	}
	mid := screen(buf.String())
	if bar := mid[len(mid)-1]; !strings.HasPrefix(bar, "step 2/2 upload@n1 [") || !strings.Contains(bar, " 50%") || !strings.Contains(bar, "MiB/s") {
		t.Errorf("bar while uploading: %q", bar)
	}
	now = now.Add(time.Second)
	wt.update(op(fsm.OpSucceeded, snapDone, fsm.Step{Name: "upload", Node: "n1", State: fsm.StepDone, Attempts: 1, Progress: prog(100)}))

	want := []string{
		"[12:00:00] step 1/2 snap: running",
		"[12:00:01] step 1/2 snap: done",
		"[12:00:01] step 2/2 upload@n1: running (files 1/100, 1 MiB/100 MiB)",
		"[12:00:05] step 2/2 upload@n1: done",
		"[12:00:05] operation op-1 succeeded",
		"",
	}
	if got := screen(buf.String()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("screen:\n%s\nwant:\n%s\nraw: %q", strings.Join(got, "\n"), strings.Join(want, "\n"), buf.String())
	}
}

// TestWaitWatcherLineMode: no terminal, or --no-progress, gives exactly
// the line output of newWatcher.
func TestWaitWatcherLineMode(t *testing.T) {
	now := progressT0
	clock := func() time.Time { return now }
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf, ref bytes.Buffer
	for _, tc := range []struct {
		name       string
		w          io.Writer
		noProgress bool
	}{
		{"buffer", &buf, false},
		{"buffer, --no-progress", &buf, true},
		{"file", f, false},
	} {
		now = progressT0
		buf.Reset()
		ref.Reset()
		update, stop := waitWatcher(tc.w, clock, tc.noProgress)
		refW := newWatcher(&ref, clock)
		for _, files := range []int64{0, 10, 20, 30, 40} {
			o := uploadOp(&fsm.Progress{FilesDone: files, FilesTotal: 40})
			update(o)
			refW.update(o)
			now = now.Add(time.Second)
		}
		stop()
		if tc.w == &buf && buf.String() != ref.String() {
			t.Errorf("%s: output %q, want %q", tc.name, buf.String(), ref.String())
		}
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "\r") || !strings.Contains(string(got), "running (files 0/40") {
		t.Errorf("file output: %q", got)
	}
}

// TestWaitNoProgressFlag: --no-progress is accepted by every command with
// --wait, and the output stays line by line.
func TestWaitNoProgressFlag(t *testing.T) {
	for _, cmd := range [][]string{{"backup"}, {"restore"}, {"delete", "b1"}, {"gc"}, {"cleanup"}, {"verify"}} {
		f := &fakeAgent{states: backupStates(fsm.OpSucceeded)}
		srv := httptest.NewServer(f)
		args := append([]string{"--url", srv.URL}, cmd...)
		code, _, errOut := runCLI(t, nil, append(args, "--wait", "--no-progress")...)
		srv.Close()
		if code != 0 {
			t.Errorf("%v: exit %d: %s", cmd, code, errOut)
			continue
		}
		if strings.Contains(errOut, "\r") || !strings.Contains(errOut, "step 1/2 snapshot@n1: done") {
			t.Errorf("%v: stderr %q", cmd, errOut)
		}
	}
}
