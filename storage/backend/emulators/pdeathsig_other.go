//go:build !linux

package emulators

import "syscall"

// Only Linux has a parent-death signal: elsewhere a shared Azurite outlives
// the test binary unless StopAzurite is called (e.g. from TestMain).
func setParentDeathSignal(*syscall.SysProcAttr) {}
