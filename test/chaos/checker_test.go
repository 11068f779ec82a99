package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCheckTimeOrder: the leader-time-order checker passes times that
// only move forward in commit order and flags each way they can go back
// (a leader stamping with a clock behind the log, which node/engine.go's
// stamp prevents).
func TestCheckTimeOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)
	backup := func(name string, created time.Time) opView {
		return opView{ID: name, Kind: "backup", State: "succeeded", CreatedAt: created, FinishedAt: created.Add(3 * time.Second),
			BackupID: created.Format("20060102T150405.000000Z") + "-" + name,
			Steps:    []stepView{{Name: "snapshot", Node: "n1", StartedAt: created.Add(time.Second), FinishedAt: created.Add(2 * time.Second)}}}
	}
	newestFirst := func(ops ...opView) []opView { // as GET /v1/operations lists them
		slices.Reverse(ops)
		return ops
	}
	good := newestFirst(backup("a", t0), backup("b", t0.Add(10*time.Second)), backup("c", t0.Add(10*time.Second+time.Microsecond)))
	if v := checkTimeOrder(good); !v.Pass {
		t.Fatalf("ordered times flagged: %v", v.Evidence)
	}
	behind := backup("c", t0.Add(-time.Hour)) // a leader an hour behind, stamping without the log's latest time
	stepBack := backup("d", t0.Add(20*time.Second))
	stepBack.Steps[0].FinishedAt = stepBack.Steps[0].StartedAt.Add(-time.Minute)
	early := backup("e", t0.Add(30*time.Second))
	early.FinishedAt = early.CreatedAt
	for name, tc := range map[string]struct {
		ops  []opView
		want string
	}{
		"created before its predecessor": {newestFirst(backup("a", t0), backup("b", t0.Add(10*time.Second)), behind), "created at"},
		"backup id out of order":         {newestFirst(backup("a", t0), behind), "does not sort after"},
		"step finished before it began":  {newestFirst(backup("a", t0), stepBack), "before it started"},
		"finished before its steps":      {newestFirst(backup("a", t0), early), "before its latest step time"},
	} {
		v := checkTimeOrder(tc.ops)
		if v.Pass || !strings.Contains(strings.Join(v.Evidence, "\n"), tc.want) {
			t.Errorf("%s: pass=%v evidence %v, want %q", name, v.Pass, v.Evidence, tc.want)
		}
	}
}
