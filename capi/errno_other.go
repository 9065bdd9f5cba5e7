//go:build !linux

package main

import "syscall"

// errRemote is the status of a failure of the remote tier (engine.ErrRemote): EIO
// where the system has no EREMOTEIO (ckp_util.h documents Linux's).
const errRemote = syscall.EIO
