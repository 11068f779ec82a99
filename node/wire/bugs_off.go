//go:build !chaosbugs

package wire

// Injected reports whether a known bug is switched on. Only binaries
// built with the chaosbugs tag (test/chaos) can have one: in every other
// build it is constantly false and the bug code is dead.
func Injected(string) bool { return false }
