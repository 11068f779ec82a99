package tree

import (
	"io/fs"
	"testing"
	"unicode/utf8"
)

func TestModeMapping(t *testing.T) {
	for _, tc := range []struct {
		m fs.FileMode
		u uint32
	}{
		{0o644, 0o644},
		{0o755 | fs.ModeSetuid, 0o4755},
		{0o755 | fs.ModeSetgid | fs.ModeDir, 0o2755},
		{0o777 | fs.ModeSticky | fs.ModeDir, 0o1777},
		{0o777 | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky, 0o7777},
	} {
		if got := unixMode(tc.m); got != tc.u {
			t.Errorf("unixMode(%v) = %#o, want %#o", tc.m, got, tc.u)
		}
		if got := fileMode(tc.u); got != tc.m&^fs.ModeDir {
			t.Errorf("fileMode(%#o) = %v, want %v", tc.u, got, tc.m&^fs.ModeDir)
		}
	}
}

func TestTempPatternStaysShort(t *testing.T) {
	long := ""
	for range 100 {
		long += "é" // 2 bytes each
	}
	p := tempPattern(long)
	if len(p) > 255-20 {
		t.Errorf("pattern %d bytes", len(p))
	}
	if !utf8.ValidString(p) {
		t.Error("pattern cut a UTF-8 sequence")
	}
}

func TestProgressThrottled(t *testing.T) {
	var calls []Progress
	p := newProgressTracker(func(pr Progress) { calls = append(calls, pr) }, 1000, 1000)
	for range 1000 {
		p.add(1, 1)
	}
	p.finish()
	if len(calls) > 3 {
		t.Errorf("%d reports for a fast run, want throttling", len(calls))
	}
	if last := calls[len(calls)-1]; last != (Progress{1000, 1000, 1000, 1000}) {
		t.Errorf("final %+v", last)
	}
	var nilTracker *progressTracker // no ProgressFunc: all calls are no-ops
	nilTracker.add(1, 1)
	nilTracker.finish()
}
