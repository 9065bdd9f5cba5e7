package engine

import "runtime/debug"

// guard turns on SetPanicOnFault for the calling goroutine and returns the function that
// restores the previous setting. Every path that touches a mapping runs under it, so a
// page that cannot be read or written (the file was truncated underneath the mapping,
// the disk returned an I/O error) becomes an error instead of killing the process.
//
//	defer guard()()
func guard() func() {
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}

// faultError converts a recovered panic into an error. Memory faults (the runtime
// reports them as errors with an Addr method) become ErrCorrupt; anything else is a bug
// and is re-raised.
func faultError(r any) error {
	if e, ok := r.(interface{ Addr() uintptr }); ok {
		return errf(ErrCorrupt, "memory fault at %#x while accessing the mapping (file truncated or unreadable?)", e.Addr())
	}
	panic(r)
}

// catch recovers a memory fault into *err; use as defer catch(&err).
func catch(err *error) {
	if r := recover(); r != nil {
		*err = faultError(r)
	}
}
