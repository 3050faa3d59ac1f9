package testenv

import "syscall"

// childProcAttr makes a process the tests start (MinIO, the control plane,
// a helper) die with the test binary, even when it exits without running
// its cleanups (a test timeout, a crash).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
