//go:build linux

package remote

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// background runs the calling goroutine, until the function it returns is called, on
// a thread of the lowest CPU priority (nice 19): when an upload and a save both want a
// core, the kernel runs the save. The function gives the thread its priority back and
// releases it. Where the priority cannot be set, the upload runs as before.
func background() (restore func()) {
	runtime.LockOSThread()
	tid := unix.Gettid()
	raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid) // the system call's 20 - nice
	if err != nil || unix.Setpriority(unix.PRIO_PROCESS, tid, 19) != nil {
		runtime.UnlockOSThread()
		return func() {}
	}
	return func() {
		if unix.Setpriority(unix.PRIO_PROCESS, tid, 20-raw) != nil {
			// A thread left at nice 19 must not run other goroutines: it ends with
			// this one (a goroutine that exits locked takes its thread with it).
			return
		}
		runtime.UnlockOSThread()
	}
}
