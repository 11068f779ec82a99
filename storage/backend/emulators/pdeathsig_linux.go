package emulators

import "syscall"

// setParentDeathSignal has the kernel SIGKILL the child when the thread that
// started it exits, which (see startProcess) is when the test binary exits,
// however it exits.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
