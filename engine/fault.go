package engine

import "github.com/ckp-go/ckp/internal/base"

// Every path that touches a mapping turns on SetPanicOnFault for its goroutine, so a
// page that cannot be read or written (the file was truncated underneath the mapping,
// the disk returned an I/O error) becomes an error instead of killing the process:
//
//	defer catch(&err)
//	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // on now, restored on return
//
// (see package internal/base).

// faultError converts a recovered panic into an error: a memory fault becomes
// ErrCorrupt; anything else is re-raised.
func faultError(r any) error { return base.FaultError(r) }

// catch recovers a memory fault into *err; use as defer catch(&err).
func catch(err *error) {
	if r := recover(); r != nil {
		*err = base.FaultError(r)
	}
}
