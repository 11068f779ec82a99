//go:build chaosfaults

package wallclock

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

const skewedBuild = true

func TestSkewedClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offset")
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	now := base
	c := &skewed{path: path, now: func() time.Time { return now }}
	check := func(want time.Duration) {
		t.Helper()
		if got := c.Now().Sub(now); got != want {
			t.Fatalf("offset %v, want %v", got, want)
		}
	}
	check(0) // missing file
	if err := os.WriteFile(path, []byte("-90m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now = now.Add(50 * time.Millisecond)
	check(0) // not re-read within 100 ms
	now = now.Add(60 * time.Millisecond)
	check(-90 * time.Minute)
	os.WriteFile(path, []byte("2h15m"), 0o644)
	now = now.Add(time.Second)
	check(2*time.Hour + 15*time.Minute)
	os.WriteFile(path, nil, 0o644)
	now = now.Add(time.Second)
	check(0) // empty
	os.WriteFile(path, []byte("soon"), 0o644)
	now = now.Add(time.Second)
	check(0) // malformed
	os.Remove(path)
	now = now.Add(time.Second)
	check(0)
}

func TestNoFileNoOffset(t *testing.T) {
	c := &skewed{now: time.Now}
	before := time.Now()
	if got := c.Now(); got.Before(before) || got.Sub(before) > time.Second {
		t.Fatalf("Now() = %v, want about %v", got, before)
	}
}
