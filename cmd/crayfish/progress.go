package main

import (
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

// The live progress bar of --wait on a terminal: one line, redrawn in
// place with \r, showing the running step of the operation. Rendering
// (renderProgress) is a pure function of the operation, the recent
// samples of its running step, the width and the time; progressBar keeps
// the samples and what is on screen.

const (
	// progressRedrawEvery is the least time between two redraws.
	progressRedrawEvery = 200 * time.Millisecond
	// progressRefreshEvery redraws a bar that got no update meanwhile, so
	// the throughput of a stalled step falls to zero.
	progressRefreshEvery = time.Second
	// progressSamples and progressWindow bound the samples the throughput
	// is smoothed over: the last few updates (the agent records progress
	// about once a second).
	progressSamples = 4
	progressWindow  = 10 * time.Second
	// progressStall is how long without an update the throughput is
	// measured up to now rather than up to the last update.
	progressStall = 3 * time.Second

	defaultTermWidth = 80

	barMinWidth = 10 // inner width of the bar, without the brackets
	barMaxWidth = 50
)

// progressSample is the progress of the running step as seen at one update.
type progressSample struct {
	at           time.Time
	files, bytes int64
}

// runningStep is the index of the step the bar shows: the first running
// one, or -1.
func runningStep(op *api.Operation) int {
	if op == nil {
		return -1
	}
	for i, s := range op.Steps {
		if s.State == fsm.StepRunning {
			return i
		}
	}
	return -1
}

// progressRates is the throughput over the samples: bytes and files per
// second. ok is false until two samples span some time (or one sample is
// older than progressStall: then nothing moved and the rate is zero).
func progressRates(samples []progressSample, now time.Time) (bytesPerSec, filesPerSec float64, ok bool) {
	if len(samples) == 0 {
		return 0, 0, false
	}
	last := samples[len(samples)-1]
	first := last
	for i := len(samples) - 1; i >= 0 && last.at.Sub(samples[i].at) <= progressWindow; i-- {
		first = samples[i]
	}
	end := last.at
	if now.Sub(last.at) > progressStall {
		end = now
	}
	dt := end.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0, 0, false
	}
	return max(0, float64(last.bytes-first.bytes)/dt), max(0, float64(last.files-first.files)/dt), true
}

// dropPercent is the drop rank of the percentage, the last field left out.
const dropPercent = 5

// progressField is one optional part of the bar line; the lowest drop is
// left out first when the line does not fit.
type progressField struct {
	text string
	drop int
}

// renderProgress is the bar line of op's running step, at most width
// columns: "step 4/6 upload@n1 [=====>    ]  40%  120 MiB/300 MiB  files
// 120/300  19.1 MiB/s  ETA 9s". The bar measures bytes, or files when the
// bytes total is unknown; without any total there is no bar nor ETA. It
// is "" when no step runs or the operation is over.
func renderProgress(op *api.Operation, samples []progressSample, width int, now time.Time) string {
	i := runningStep(op)
	if i < 0 || op.State.Terminal() || width <= 0 {
		return ""
	}
	s := op.Steps[i]
	label := stepLabel(i, len(op.Steps), s)
	if s.Attempts > 1 {
		label += " (attempt " + strconv.Itoa(s.Attempts) + ")"
	}
	if s.Progress == nil {
		// A step that reports no counters: how long it has been running.
		// (The agent's clock: with skew, this is an estimate.)
		if s.StartedAt != nil && now.Sub(*s.StartedAt) >= time.Second {
			withTime := label + "  " + humanDuration(now.Sub(*s.StartedAt).Round(time.Second))
			if utf8.RuneCountInString(withTime) <= width {
				return withTime
			}
		}
		return truncate(label, width)
	}
	p := *s.Progress
	bytesRate, filesRate, rateOK := progressRates(samples, now)

	// What the bar measures, and so what the ETA counts down.
	frac := -1.0
	var remaining int64
	var rate float64
	switch {
	case p.BytesTotal > 0:
		frac = float64(p.BytesDone) / float64(p.BytesTotal)
		remaining, rate = p.BytesTotal-p.BytesDone, bytesRate
	case p.FilesTotal > 0:
		frac = float64(p.FilesDone) / float64(p.FilesTotal)
		remaining, rate = p.FilesTotal-p.FilesDone, filesRate
	}
	frac = min(frac, 1)

	// With a bar, fields are padded to widths that mostly hold while the
	// step runs, so the bar does not shrink and grow as the numbers change.
	pad := func(s string, n int) string {
		if frac < 0 {
			return s
		}
		return padLeft(s, n)
	}
	var fields []progressField
	if frac >= 0 {
		fields = append(fields, progressField{padLeft(strconv.Itoa(int(frac*100))+"%", 4), dropPercent})
	}
	bytesKnown := p.BytesTotal > 0 || p.BytesDone > 0
	switch {
	case p.BytesTotal > 0:
		fields = append(fields, progressField{pad(humanBytes(p.BytesDone), 9) + "/" + humanBytes(p.BytesTotal), 3})
	case p.BytesDone > 0:
		fields = append(fields, progressField{pad(humanBytes(p.BytesDone), 9), 3})
	}
	switch {
	case p.FilesTotal > 0:
		total := strconv.FormatInt(p.FilesTotal, 10)
		fields = append(fields, progressField{"files " + pad(strconv.FormatInt(p.FilesDone, 10), len(total)) + "/" + total, 1})
	case p.FilesDone > 0 || !bytesKnown:
		fields = append(fields, progressField{"files " + strconv.FormatInt(p.FilesDone, 10), 1})
	}
	// Until two samples give a rate, blanks keep its place (with a bar) and
	// the ETA is "-".
	if rateOK || frac >= 0 {
		var r string
		switch {
		case bytesKnown:
			r = pad(humanBytes(int64(bytesRate))+"/s", 10)
		default:
			r = pad(formatRate(filesRate)+" files/s", 11)
		}
		if !rateOK {
			r = strings.Repeat(" ", len(r))
		}
		fields = append(fields, progressField{r, 2})
	}
	if frac >= 0 {
		eta := "-"
		switch {
		case !rateOK:
		case remaining <= 0:
			eta = "0s"
		case rate > 0:
			d := time.Duration(min(float64(remaining)/rate, 1e8) * float64(time.Second)).Round(time.Second)
			eta = "<1s"
			if d > 0 {
				eta = humanDuration(d)
			}
		}
		fields = append(fields, progressField{padRight("ETA "+eta, 10), 4})
	}

	// Leave fields out, least useful first, until the line fits with a bar
	// of at least barMinWidth; the percentage outlives the bar.
	bar := frac >= 0
	for utf8.RuneCountInString(buildProgressLine(label, fields, bar, frac, barMinWidth)) > width && len(fields) > 0 {
		lowest := 0
		for j, f := range fields {
			if f.drop < fields[lowest].drop {
				lowest = j
			}
		}
		if bar && fields[lowest].drop == dropPercent {
			bar = false
			continue
		}
		fields = append(fields[:lowest:lowest], fields[lowest+1:]...)
	}
	inner := 0
	if bar {
		if n := utf8.RuneCountInString(buildProgressLine(label, fields, true, frac, barMinWidth)); n <= width {
			inner = min(barMaxWidth, barMinWidth+width-n)
		} else {
			bar = false
		}
	}
	return truncate(strings.TrimRight(buildProgressLine(label, fields, bar, frac, inner), " "), width)
}

// buildProgressLine joins the parts of a bar line; the bar has inner
// columns.
func buildProgressLine(label string, fields []progressField, bar bool, frac float64, inner int) string {
	var b strings.Builder
	b.WriteString(label)
	if bar {
		b.WriteString(" [")
		b.WriteString(drawBar(frac, inner))
		b.WriteString("]")
	}
	for j, f := range fields {
		if j == 0 && bar && f.drop == dropPercent {
			b.WriteString(" ") // the percentage sits by the bar
		} else {
			b.WriteString("  ")
		}
		b.WriteString(f.text)
	}
	return b.String()
}

// drawBar fills n columns to frac (0 to 1): "=====>    ".
func drawBar(frac float64, n int) string {
	full := int(frac * float64(n))
	if full >= n {
		return strings.Repeat("=", n)
	}
	if full == 0 && frac <= 0 {
		return strings.Repeat(" ", n)
	}
	return strings.Repeat("=", full) + ">" + strings.Repeat(" ", n-full-1)
}

// formatRate prints a per-second count: one decimal below 10.
func formatRate(v float64) string {
	if v < 10 {
		return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0")
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func padLeft(s string, n int) string {
	if k := utf8.RuneCountInString(s); k < n {
		return strings.Repeat(" ", n-k) + s
	}
	return s
}

func padRight(s string, n int) string {
	if k := utf8.RuneCountInString(s); k < n {
		return s + strings.Repeat(" ", n-k)
	}
	return s
}

// truncate cuts s to n columns (counting a rune as one), marking the cut
// with "...".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	if n <= 3 {
		return string(r[:max(n, 0)])
	}
	return string(r[:n-3]) + "..."
}

// progressBar is the bar on screen and the samples behind it.
type progressBar struct {
	w     io.Writer
	width func() int // terminal columns

	op       *api.Operation // latest state
	step     int            // the running step the samples belong to
	attempts int
	samples  []progressSample
	shown    int       // columns the bar covers on screen; 0 when none is
	drawnAt  time.Time // last redraw
	pending  bool      // an update not drawn yet (too soon after the last)
}

func newProgressBar(w io.Writer, width func() int) *progressBar {
	return &progressBar{w: w, width: width, step: -1}
}

// update takes a new state of the operation: it records a sample of the
// running step and redraws, at most every progressRedrawEvery.
func (b *progressBar) update(op *api.Operation, now time.Time) {
	b.op = op
	i := runningStep(op)
	if i < 0 {
		b.samples, b.step = nil, -1
	} else {
		s := op.Steps[i]
		var p fsm.Progress
		if s.Progress != nil {
			p = *s.Progress
		}
		if i != b.step || s.Attempts != b.attempts {
			b.samples, b.step, b.attempts = nil, i, s.Attempts
		}
		if n := len(b.samples); n > 0 && (p.BytesDone < b.samples[n-1].bytes || p.FilesDone < b.samples[n-1].files) {
			b.samples = nil // counters went back: a new pass
		}
		b.samples = append(b.samples, progressSample{at: now, files: p.FilesDone, bytes: p.BytesDone})
		if len(b.samples) > progressSamples {
			b.samples = append(b.samples[:0], b.samples[len(b.samples)-progressSamples:]...)
		}
	}
	if b.shown == 0 || now.Sub(b.drawnAt) >= progressRedrawEvery {
		b.draw(now)
	} else {
		b.pending = true
	}
}

// tick redraws an update held back by the rate limit, and refreshes a
// bar that got no update for progressRefreshEvery.
func (b *progressBar) tick(now time.Time) {
	if b.op == nil {
		return
	}
	if (b.pending && now.Sub(b.drawnAt) >= progressRedrawEvery) || now.Sub(b.drawnAt) >= progressRefreshEvery {
		b.draw(now)
	}
}

// draw puts the bar of the latest state on screen, over the previous one.
func (b *progressBar) draw(now time.Time) {
	b.pending = false
	width := defaultTermWidth
	if b.width != nil {
		if w := b.width(); w > 0 {
			width = w
		}
	}
	// The last column is left free: writing into it makes some terminals
	// wrap at once.
	line := renderProgress(b.op, b.samples, width-1, now)
	if line == "" {
		b.clear()
		return
	}
	n := utf8.RuneCountInString(line)
	pad := ""
	if b.shown > n {
		pad = strings.Repeat(" ", min(b.shown, width-1)-n)
	}
	io.WriteString(b.w, "\r"+line+pad)
	b.shown, b.drawnAt = n, now
}

// clear removes the bar from the screen, leaving the cursor at the start
// of its line, so the next line prints over it.
func (b *progressBar) clear() {
	if b.shown == 0 {
		return
	}
	io.WriteString(b.w, "\r"+strings.Repeat(" ", b.shown)+"\r")
	b.shown = 0
}
