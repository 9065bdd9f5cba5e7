package main

import "syscall"

// errRemote is the status of a failure of the remote tier (engine.ErrRemote):
// EREMOTEIO, "Remote I/O error".
const errRemote = syscall.EREMOTEIO

// errRestart is the status of engine.ErrRestart, this rank's life of the job being
// over: ERESTART (ckpStrerror describes it; the system's text speaks of system calls).
const errRestart = syscall.ERESTART
