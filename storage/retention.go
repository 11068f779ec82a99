package storage

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/crayfish-backup/crayfish/internal/duration"
)

// RetentionPolicy says which backups cleanup keeps. A backup is kept when
// any rule keeps it; a policy with no rule is refused (it would delete
// everything).
type RetentionPolicy struct {
	// KeepLast keeps the newest KeepLast backups.
	KeepLast int `json:"keep_last,omitempty"`
	// KeepWithin keeps every backup started within this long before now.
	KeepWithin Duration `json:"keep_within,omitempty"`
	// MinKeep is a floor: the newest MinKeep backups are always kept, so a
	// clock jump or a long outage never empties the repository.
	MinKeep int `json:"min_keep,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as "72h".
type Duration = duration.Duration

// ErrEmptyPolicy: a retention policy without any rule.
var ErrEmptyPolicy = errors.New("retention policy keeps nothing: give keep-last, keep-within or min-keep")

// Validate checks p.
func (p RetentionPolicy) Validate() error {
	if p.KeepLast < 0 || p.MinKeep < 0 || p.KeepWithin < 0 {
		return fmt.Errorf("retention policy: negative value in %+v", p)
	}
	if p.KeepLast == 0 && p.KeepWithin == 0 && p.MinKeep == 0 {
		return ErrEmptyPolicy
	}
	return nil
}

// Decision is the outcome of a policy for one backup.
type Decision struct {
	BackupID  string    `json:"backup_id"`
	StartedAt time.Time `json:"started_at"`
	Keep      bool      `json:"keep"`
	Reasons   []string  `json:"reasons,omitempty"` // why kept
}

// ApplyRetention decides, newest first, which of backups p keeps at now.
func ApplyRetention(backups []Summary, p RetentionPolicy, now time.Time) ([]Decision, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	sorted := append([]Summary(nil), backups...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].BackupID > sorted[j].BackupID })
	out := make([]Decision, len(sorted))
	for i, b := range sorted {
		d := Decision{BackupID: b.BackupID, StartedAt: b.StartedAt}
		if i < p.KeepLast {
			d.Reasons = append(d.Reasons, fmt.Sprintf("keep-last %d", p.KeepLast))
		}
		if p.KeepWithin > 0 && !b.StartedAt.Before(now.Add(-time.Duration(p.KeepWithin))) {
			d.Reasons = append(d.Reasons, "keep-within "+time.Duration(p.KeepWithin).String())
		}
		if i < p.MinKeep {
			d.Reasons = append(d.Reasons, fmt.Sprintf("min-keep %d", p.MinKeep))
		}
		d.Keep = len(d.Reasons) > 0
		out[i] = d
	}
	return out, nil
}
