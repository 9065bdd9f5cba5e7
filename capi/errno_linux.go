package main

import "syscall"

// errRemote is the status of a failure of the remote tier (engine.ErrRemote):
// EREMOTEIO, "Remote I/O error".
const errRemote = syscall.EREMOTEIO
