package wallclock

import (
	"testing"
	"time"
)

func TestNowIsCurrent(t *testing.T) {
	before := time.Now()
	got := Now()
	after := time.Now()
	if skewedBuild {
		return // the chaosfaults build is covered by TestSkewedClock
	}
	if got.Before(before) || got.After(after) {
		t.Fatalf("Now() = %v, not within [%v, %v]", got, before, after)
	}
}
