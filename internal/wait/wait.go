package wait

import (
	"context"
	"time"
)

// Sleep pauses for d or until ctx ends, whichever comes first. It returns
// nil after a full pause and ctx.Err() when ctx ended first. A context
// that has already ended wins even when d <= 0, so a retry loop stops at
// once instead of spinning on a zero backoff.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
