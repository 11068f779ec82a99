package storage

import (
	"errors"
	"testing"
	"time"
)

func TestApplyRetention(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var backups []Summary
	for i := range 10 { // b0 is 9 days old ... b9 is today
		ts := now.Add(-time.Duration(9-i) * 24 * time.Hour)
		backups = append(backups, Summary{BackupID: ts.Format("20060102T150405.000000Z") + "-x", StartedAt: ts})
	}
	kept := func(p RetentionPolicy) int {
		ds, err := ApplyRetention(backups, p, now)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for i, d := range ds {
			if i > 0 && ds[i-1].BackupID < d.BackupID {
				t.Fatal("decisions not newest first")
			}
			if d.Keep {
				n++
			}
		}
		return n
	}
	cases := []struct {
		p    RetentionPolicy
		want int
	}{
		{RetentionPolicy{KeepLast: 3}, 3},
		{RetentionPolicy{KeepWithin: Duration(72 * time.Hour)}, 4}, // today and 1, 2, 3 days ago
		{RetentionPolicy{KeepLast: 2, KeepWithin: Duration(72 * time.Hour)}, 4},
		{RetentionPolicy{KeepWithin: Duration(time.Hour), MinKeep: 5}, 5},
		{RetentionPolicy{KeepLast: 50}, 10},
	}
	for _, c := range cases {
		if got := kept(c.p); got != c.want {
			t.Errorf("%+v kept %d, want %d", c.p, got, c.want)
		}
	}
	if _, err := ApplyRetention(backups, RetentionPolicy{}, now); !errors.Is(err, ErrEmptyPolicy) {
		t.Fatalf("empty policy: %v", err)
	}
	if _, err := ApplyRetention(backups, RetentionPolicy{KeepLast: -1}, now); err == nil {
		t.Fatal("negative policy accepted")
	}
}
