// Package duration holds the one Duration type that JSON and YAML carry
// as text ("72h", "90s") rather than as nanoseconds: the retention policy
// in manifests and requests, and the schedules in the replicated state.
// It is a leaf: it imports nothing of crayfish.
package duration

import "time"

// Duration is a time.Duration that reads and writes as text.
type Duration time.Duration

// MarshalText writes d as "1h0m0s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads "90s", "1h30m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
