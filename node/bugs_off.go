//go:build !chaosbugs

package node

// injected reports whether a known bug is switched on. Only binaries
// built with the chaosbugs tag (test/chaos) can have one: in every other
// build it is constantly false and the bug code is dead.
func injected(string) bool { return false }
