package engine

// Every path that touches a mapping turns on SetPanicOnFault for its goroutine, so a
// page that cannot be read or written (the file was truncated underneath the mapping,
// the disk returned an I/O error) becomes an error instead of killing the process:
//
//	defer catch(&err)
//	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // on now, restored on return
//
// (The inner call runs at once; the outer one, deferred, restores the old setting.
// Unlike a helper returning a closure, this allocates nothing.)

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
