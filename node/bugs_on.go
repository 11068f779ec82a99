//go:build chaosbugs

package node

import "os"

// injected reports whether bug is switched on with CRAYFISH_INJECT_BUG;
// test/chaos uses it to prove that each checker catches its bug.
func injected(bug string) bool { return os.Getenv("CRAYFISH_INJECT_BUG") == bug }
