package tree

import (
	"sync"
	"time"
)

// Progress is a snapshot of how far an operation has got. Totals are known
// from the start of the phase that reports them.
type Progress struct {
	FilesDone, FilesTotal, BytesDone, BytesTotal int64
}

// ProgressFunc receives progress reports. It may be called from any
// goroutine, at most about every 100ms plus once at the end; calls never
// overlap, so it needs no locking of its own, but it should return quickly
// because workers wait for it.
type ProgressFunc func(Progress)

// progressInterval is the minimum time between two reports.
const progressInterval = 100 * time.Millisecond

// progressTracker accumulates progress from many workers and throttles the
// reports. A nil tracker (no ProgressFunc) ignores every call, so callers do
// not need to check.
type progressTracker struct {
	fn   ProgressFunc
	mu   sync.Mutex
	p    Progress
	last time.Time
}

func newProgressTracker(fn ProgressFunc, filesTotal, bytesTotal int64) *progressTracker {
	if fn == nil {
		return nil
	}
	return &progressTracker{fn: fn, p: Progress{FilesTotal: filesTotal, BytesTotal: bytesTotal}}
}

// addBytes records n more bytes processed.
func (t *progressTracker) addBytes(n int64) { t.add(0, n) }

// addFile records one more file finished.
func (t *progressTracker) addFile() { t.add(1, 0) }

func (t *progressTracker) add(files, bytes int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.FilesDone += files
	t.p.BytesDone += bytes
	if now := time.Now(); now.Sub(t.last) >= progressInterval {
		t.last = now
		t.fn(t.p)
	}
}

// finish sends the final report. It is called once, also after an error, so
// the caller always sees where the operation stopped.
func (t *progressTracker) finish() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fn(t.p)
}
