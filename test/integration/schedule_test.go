package integration

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

// TestScheduleSlotsOnceAcrossFailover: an @every 5s backup schedule on
// three agents whose leader is SIGKILLed twice. Every slot fires at most
// once (one operation, one backup), the slots stay on the schedule's
// chain across leaders, and every slot that did not fire was due while
// the cluster had no leader or was busy with the slot before: the
// run_once policy loses nothing else.
func TestScheduleSlotsOnceAcrossFailover(t *testing.T) {
	c := startCluster(t, 3, "sch", "", "")
	fillRoots(t, c.agents, 64<<10)
	t.Cleanup(func() {
		if t.Failed() {
			for _, a := range c.agents {
				for _, line := range strings.Split(a.logs(), "\n") {
					if strings.Contains(line, "schedule") || strings.Contains(line, "leadership") || strings.Contains(line, "coordinating") {
						t.Logf("%s: %s", a.nodeID, line)
					}
				}
			}
		}
	})
	if res := c.follower().cli("schedule", "add", "every5", "@every 5s", "--missed", "run_once", "--output", "json"); res.code != 0 {
		t.Fatalf("schedule add: %s%s", res.stdout, res.stderr)
	}
	// The same definition again is accepted; another is refused.
	if res := c.agents[0].cli("schedule", "add", "every5", "@every 5s", "--missed", "run_once"); res.code != 0 {
		t.Fatalf("schedule add (same definition): %s", res.stderr)
	}
	if res := c.agents[0].cli("schedule", "add", "every5", "@every 7s"); res.code == 0 || !strings.Contains(res.stderr, "another definition") {
		t.Fatalf("schedule add (other definition): code %d: %s", res.code, res.stderr)
	}
	if res := c.agents[0].cli("schedule", "add", "bad", "61 * * * *"); res.code == 0 {
		t.Fatalf("a bad cron expression was accepted: %s", res.stdout)
	}
	type window struct{ from, to time.Time }
	var outages []window
	time.Sleep(11 * time.Second)
	for range 2 {
		old := c.leader()
		from := time.Now()
		old.kill()
		c.waitNewLeader(old, 30*time.Second)
		outages = append(outages, window{from, time.Now()})
		// Back at once: a backup's step on the killed node waits for it.
		old.start()
		time.Sleep(11 * time.Second)
	}
	if res := c.follower().cli("schedule", "pause", "every5"); res.code != 0 {
		t.Fatalf("schedule pause: %s", res.stderr)
	}
	l := c.leader()
	var list api.OperationList
	if code := l.getJSON("/v1/operations?limit=1000", &list); code != 200 {
		t.Fatalf("operations: %d", code)
	}
	var ops []*fsm.Operation
	for _, op := range list.Operations {
		if strings.HasPrefix(op.ID, "sched-every5-") {
			ops = append(ops, l.waitOp(op.ID, time.Minute))
		}
	}
	if len(ops) < 5 {
		t.Fatalf("%d scheduled operations in about 45 s, want at least 5", len(ops))
	}
	slots := make([]time.Time, len(ops))
	for i, op := range ops {
		s, err := time.Parse("20060102T150405Z", strings.TrimPrefix(op.ID, "sched-every5-"))
		if err != nil {
			t.Fatalf("operation id %s: %v", op.ID, err)
		}
		slots[i] = s
		if op.State != fsm.OpSucceeded {
			t.Errorf("%s %s: %s", op.ID, op.State, op.Error)
		}
	}
	slices.SortFunc(ops, func(a, b *fsm.Operation) int { return a.CreatedAt.Compare(b.CreatedAt) })
	slices.SortFunc(slots, time.Time.Compare)
	covered := func(m time.Time) bool {
		for _, w := range outages {
			if !m.Before(w.from.Add(-2*time.Second)) && !m.After(w.to.Add(2*time.Second)) {
				return true
			}
		}
		for _, op := range ops { // busy with an earlier slot's operation
			if op.FinishedAt != nil && !m.Before(op.CreatedAt) && !m.After(op.FinishedAt.Add(2*time.Second)) {
				return true
			}
		}
		return false
	}
	for i := 1; i < len(slots); i++ {
		gap := slots[i].Sub(slots[i-1])
		if gap%(5*time.Second) != 0 {
			t.Errorf("slots %s and %s are %s apart: off the @every 5s chain", slots[i-1], slots[i], gap)
		}
		for m := slots[i-1].Add(5 * time.Second); m.Before(slots[i]); m = m.Add(5 * time.Second) {
			if !covered(m) {
				t.Errorf("slot %s did not fire, though a leader was up and the cluster idle (outages %v)", m.Format(time.RFC3339), outages)
			}
		}
	}
	var sc api.Schedule
	if code := l.getJSON("/v1/schedules/every5", &sc); code != 200 {
		t.Fatalf("GET schedule: %d", code)
	}
	if int(sc.FiredSlots) != len(ops) || sc.GivenUpSlots != 0 || !sc.Paused || !sc.LastSlot.Equal(slots[len(slots)-1]) || sc.LastState != fsm.OpSucceeded {
		t.Errorf("schedule after the run: fired %d (operations %d), given up %d, paused %v, last slot %s (want %s), last state %s",
			sc.FiredSlots, len(ops), sc.GivenUpSlots, sc.Paused, sc.LastSlot, slots[len(slots)-1], sc.LastState)
	}
	// One backup per fired slot: none was taken twice.
	var backups api.BackupList
	if code := l.getJSON("/v1/backups?limit=1000", &backups); code != 200 {
		t.Fatalf("backups: %d", code)
	}
	if len(backups.Backups) != len(ops) {
		t.Errorf("%d backups for %d fired slots", len(backups.Backups), len(ops))
	}
	// The list names the schedule with its last outcome; paused, no next run.
	res := l.cli("schedule", "list")
	if res.code != 0 || !strings.Contains(res.stdout, "every5") || !strings.Contains(res.stdout, "paused") || !strings.Contains(res.stdout, "succeeded sched-every5-") {
		t.Errorf("schedule list:\n%s%s", res.stdout, res.stderr)
	}
	// Paused: nothing more fires.
	time.Sleep(6 * time.Second)
	var after api.OperationList
	l.getJSON("/v1/operations?limit=1000", &after)
	n := 0
	for _, op := range after.Operations {
		if strings.HasPrefix(op.ID, "sched-every5-") {
			n++
		}
	}
	if n != len(ops) {
		t.Errorf("a paused schedule fired: %d operations, %d before", n, len(ops))
	}
	if res := l.cli("schedule", "remove", "every5"); res.code != 0 {
		t.Fatalf("schedule remove: %s", res.stderr)
	}
	var empty api.ScheduleList
	if l.getJSON("/v1/schedules", &empty); len(empty.Schedules) != 0 {
		b, _ := json.Marshal(empty)
		t.Errorf("schedules after remove: %s", b)
	}
}
