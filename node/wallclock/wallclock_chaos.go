//go:build chaosfaults

package wallclock

import (
	"os"
	"strings"
	"sync"
	"time"
)

// EnvOffsetFile names the file holding the clock offset (chaosfaults builds).
const EnvOffsetFile = "CRAYFISH_CLOCK_OFFSET_FILE"

// rereadEvery bounds how often the offset file is read.
const rereadEvery = 100 * time.Millisecond

var std = &skewed{path: os.Getenv(EnvOffsetFile), now: time.Now}

// Now returns the current wall-clock time plus the offset in the file
// named by CRAYFISH_CLOCK_OFFSET_FILE.
func Now() time.Time { return std.Now() }

// skewed is a clock whose offset comes from a file.
type skewed struct {
	path string
	now  func() time.Time

	mu     sync.Mutex
	read   time.Time // when the file was last read (unskewed)
	offset time.Duration
}

func (s *skewed) Now() time.Time {
	t := s.now()
	if s.path == "" {
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.read.IsZero() || t.Sub(s.read) >= rereadEvery || t.Before(s.read) {
		s.offset, s.read = readOffset(s.path), t
	}
	return t.Add(s.offset)
}

// readOffset parses the file's duration; a missing, empty or malformed
// file is no offset.
func readOffset(path string) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return d
}
