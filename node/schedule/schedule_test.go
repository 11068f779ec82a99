package schedule

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
)

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	if s == "-" {
		return time.Time{}
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func describe(d Decision) string {
	switch d.Action {
	case Wait:
		return "wait@" + d.At.Format(time.RFC3339)
	case Never:
		return "never"
	}
	s := "fire@"
	if d.Action == GiveUp {
		s = "giveup@"
	}
	s += d.Slot.Format(time.RFC3339)
	if d.Passed > 0 {
		s += fmt.Sprintf("(+passed %d)", d.Passed)
	}
	return s
}

// TestDecide runs testdata/decide.txt.
func TestDecide(t *testing.T) {
	f, err := os.Open("testdata/decide.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	cases := 0
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, "|")
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		if len(cols) != 8 {
			t.Fatalf("line %d: %d columns", line, len(cols))
		}
		tz := cols[1]
		if tz == "-" {
			tz = ""
		}
		slots, err := Parse(cols[0], tz)
		if err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		jitter, err := time.ParseDuration(cols[3])
		if err != nil {
			t.Fatal(err)
		}
		s := &fsm.Schedule{ScheduleSpec: fsm.ScheduleSpec{Name: "nightly", Cron: cols[0], Missed: cols[2], Jitter: fsm.Duration(jitter)},
			CreatedAt: parseTime(t, cols[4]), LastSlot: parseTime(t, cols[5])}
		if got := describe(Decide(s, slots, parseTime(t, cols[6]))); got != cols[7] {
			t.Errorf("line %d: %s, want %s", line, got, cols[7])
		}
		cases++
	}
	if cases < 10 {
		t.Fatalf("only %d cases read", cases)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range [][2]string{{"* * *", ""}, {"61 * * * *", ""}, {"@every 500ms", ""}, {"@daily", "Mars/Olympus"}, {"CRON_TZ=UTC @daily", ""}, {"", ""}} {
		if _, err := Parse(c[0], c[1]); err == nil {
			t.Errorf("Parse(%q, %q) accepted", c[0], c[1])
		}
	}
}

func TestOpIDIsAValidOperationID(t *testing.T) {
	id := OpID(strings.Repeat("a", 63), time.Date(2026, 12, 5, 1, 2, 3, 0, time.FixedZone("x", 3600)))
	if !fsm.ValidOpID(id) || !strings.HasSuffix(id, "-20261205T000203Z") {
		t.Fatalf("OpID = %q", id)
	}
}
