package s3test

import "syscall"

// procAttr makes the server die with the test process, even when the test binary is
// killed before its cleanups run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
