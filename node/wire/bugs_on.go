//go:build chaosbugs

package wire

import "os"

// Injected reports whether bug is switched on with CRAYFISH_INJECT_BUG;
// test/chaos uses it to prove that each checker catches its bug.
func Injected(bug string) bool { return os.Getenv("CRAYFISH_INJECT_BUG") == bug }
