package testenv

import "syscall"

// childProcAttr makes a server the tests start (MinIO, the control plane)
// die with the test binary, even when it exits without running its
// cleanups (a test timeout, a crash).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
