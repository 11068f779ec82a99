//go:build !chaosfaults

package wallclock

import "time"

// Now returns the current wall-clock time.
func Now() time.Time { return time.Now() }
