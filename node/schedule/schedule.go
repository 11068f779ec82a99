package schedule

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
	// Time zones resolve on hosts without a zoneinfo database too.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	"github.com/crayfish-backup/crayfish/fsm"
)

// Grace is how late a slot may fire and still count as on time: past it,
// a MissedSkip schedule gives the slot up.
const Grace = time.Minute

// maxCatchUp bounds the slots walked over after an outage (an @every 1s
// schedule down for a day has 86,400); past it the walk jumps to now.
const maxCatchUp = 10000

// ErrInvalid marks a cron expression or time zone that does not parse.
var ErrInvalid = errors.New("invalid schedule")

// Slots is a parsed cron expression: Next returns the first slot after t,
// or the zero time if there is none.
type Slots interface{ Next(t time.Time) time.Time }

// Parse reads a cron expression (five standard fields, or a descriptor
// such as @daily or @every 90m) in time zone tz ("" is UTC).
func Parse(expr, tz string) (Slots, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("%w: %q: give the zone as time_zone, not in the expression", ErrInvalid, expr)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("%w: time zone %q: %v", ErrInvalid, tz, err)
	}
	if every, ok := strings.CutPrefix(expr, "@every "); ok {
		// cron rounds a shorter delay up to a second; refuse it instead.
		if d, err := time.ParseDuration(strings.TrimSpace(every)); err == nil && (d < time.Second || d%time.Second != 0) {
			return nil, fmt.Errorf("%w: cron %q: @every takes whole seconds, at least 1s", ErrInvalid, expr)
		}
	}
	s, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: cron %q: %v", ErrInvalid, expr, err)
	}
	switch s := s.(type) {
	case *cron.SpecSchedule:
		s.Location = loc
	}
	return utcSlots{s}, nil
}

// utcSlots reports slots in UTC, whatever zone the fields are read in.
type utcSlots struct{ s cron.Schedule }

func (u utcSlots) Next(t time.Time) time.Time {
	n := u.s.Next(t)
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// OpID is the id of the operation a slot starts: the same slot gives the
// same id on every leader, so firing it again finds the operation
// already there instead of starting a second.
func OpID(name string, slot time.Time) string {
	return "sched-" + name + "-" + slot.UTC().Format("20060102T150405Z")
}

// Jitter is the slot's delay: a fraction of max fixed by name and slot,
// so the cluster's schedules spread out and every leader agrees.
func Jitter(name string, slot time.Time, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", name, slot.Unix())
	return time.Duration(h.Sum64() % uint64(max))
}

// Action is what the coordinator does about a schedule now.
type Action int

const (
	Wait   Action = iota // nothing due before At
	Fire                 // start Slot's operation
	GiveUp               // record Slot as missed
	Never                // the expression has no further slot
)

// Decision is Decide's answer.
type Decision struct {
	Action Action
	// Slot is the slot fired or given up; At is when the next slot fires
	// (Wait), or when Slot was due (Fire, GiveUp).
	Slot, At time.Time
	// Passed counts the older slots walked over without a run (after an
	// outage, both policies run at most the latest).
	Passed int
}

// Decide says what to do about sc at now. The next slot is the first
// after the last one handled (or after the schedule's creation). Of the
// slots due by now only the latest is considered: fired if on time (or
// under MissedRunOnce whatever its lateness), else given up.
func Decide(sc *fsm.Schedule, slots Slots, now time.Time) Decision {
	from := sc.LastSlot
	if from.IsZero() {
		from = sc.CreatedAt
	}
	due := func(slot time.Time) time.Time { return slot.Add(Jitter(sc.Name, slot, time.Duration(sc.Jitter))) }
	next := slots.Next(from)
	if next.IsZero() {
		return Decision{Action: Never}
	}
	if due(next).After(now) {
		return Decision{Action: Wait, Slot: next, At: due(next)}
	}
	latest, passed, jumped := next, 0, false
	for {
		n := slots.Next(latest)
		if n.IsZero() || due(n).After(now) {
			break
		}
		if passed++; passed >= maxCatchUp && !jumped {
			// Jump close to now and walk the rest from there.
			jumped = true
			if far := slots.Next(now.Add(-Grace)); !far.IsZero() && !due(far).After(now) {
				n = far
			}
		}
		latest = n
	}
	d := Decision{Action: Fire, Slot: latest, At: due(latest), Passed: passed}
	if sc.Missed != fsm.MissedRunOnce && now.Sub(d.At) > Grace {
		d.Action = GiveUp
	}
	return d
}
