package main

import (
	"errors"
	"syscall"

	"github.com/ckp-go/ckp/engine"
)

// errnos maps the engine's errors to the status codes ckp_util.h documents, in the
// order they are tested: an error that wraps two of them (ErrReadOnly wraps ErrInvalid
// only, but wrapping is open-ended) gets the first. ErrRemote comes first: a failure
// of the remote tier wraps its cause, which may be an engine error too (ErrCorrupt
// for local bytes that failed their check on the way to the store), and the status
// says where it failed while the message says why. ErrRestart, which wraps ErrRemote,
// comes before it: the rank must restart, which no other failure of the store asks.
var errnos = []struct {
	err   error
	errno syscall.Errno
}{
	{engine.ErrRestart, errRestart},
	{engine.ErrRemote, errRemote},
	{engine.ErrInvalid, syscall.EINVAL},
	{engine.ErrNotFound, syscall.ENOENT},
	{engine.ErrExists, syscall.EEXIST},
	{engine.ErrVersion, syscall.ERANGE},
	{engine.ErrSize, syscall.EMSGSIZE},
	{engine.ErrClosed, syscall.EBADF},
	{engine.ErrLocked, syscall.EWOULDBLOCK},
	{engine.ErrCorrupt, syscall.EIO},
	{engine.ErrFull, syscall.EFBIG},
}

// errnoOf returns the status code of err: 0 for nil, the engine error's errno, the
// operating-system error's own errno, or EIO for anything else.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	for _, e := range errnos {
		if errors.Is(err, e.err) {
			return e.errno
		}
	}
	var en syscall.Errno
	if errors.As(err, &en) && en != 0 {
		return en
	}
	return syscall.EIO
}
