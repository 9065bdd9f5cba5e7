//go:build !linux

package s3test

import "syscall"

// procAttr: only Linux can tie the server's life to the test process's; elsewhere
// the test's cleanup kills it.
func procAttr() *syscall.SysProcAttr { return nil }
