//go:build !linux

package main

import "syscall"

// errRemote is the status of a failure of the remote tier (engine.ErrRemote): EIO
// where the system has no EREMOTEIO (ckp_util.h documents Linux's).
const errRemote = syscall.EIO

// errRestart is the status of engine.ErrRestart: errRemote where the system has no
// ERESTART (ckp_util.h documents Linux's); ckpLastError says to call ckpRestoreJob.
const errRestart = errRemote
