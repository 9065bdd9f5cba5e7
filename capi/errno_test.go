package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"github.com/ckp-go/ckp/engine"
)

func TestErrnoOf(t *testing.T) {
	tests := []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{engine.ErrInvalid, syscall.EINVAL},
		{engine.ErrReadOnly, syscall.EINVAL},
		{engine.ErrNotFound, syscall.ENOENT},
		{engine.ErrExists, syscall.EEXIST},
		{engine.ErrVersion, syscall.ERANGE},
		{engine.ErrSize, syscall.EMSGSIZE},
		{engine.ErrClosed, syscall.EBADF},
		{engine.ErrLocked, syscall.EWOULDBLOCK},
		{engine.ErrCorrupt, syscall.EIO},
		{engine.ErrFull, syscall.EFBIG},
		{engine.ErrRemote, errRemote},
		// A rank whose life of the job is over: ERESTART, not EREMOTEIO, though
		// ErrRestart wraps ErrRemote.
		{engine.ErrRestart, errRestart},
		{fmt.Errorf("flush: %w", engine.ErrRestart), errRestart},
		// A remote failure is EREMOTEIO whatever its cause: an OS error, a timeout, or
		// local bytes that failed their check on the way to the store.
		{fmt.Errorf("%w: dir:/x: %w", engine.ErrRemote, syscall.ENOSPC), errRemote},
		{fmt.Errorf("%w: s3://b: %w", engine.ErrRemote, context.DeadlineExceeded), errRemote},
		{fmt.Errorf("%w: upload: %w", engine.ErrRemote, engine.ErrCorrupt), errRemote},
		{fmt.Errorf("checkpoint %q: %w", "x", engine.ErrVersion), syscall.ERANGE},
		// An engine error wins over an OS error it wraps with it.
		{fmt.Errorf("%w: %w", engine.ErrCorrupt, syscall.EFAULT), syscall.EIO},
		{&fs.PathError{Op: "open", Path: "/x", Err: syscall.ENOSPC}, syscall.ENOSPC},
		{fmt.Errorf("grow: %w", &os.SyscallError{Syscall: "fallocate", Err: syscall.EDQUOT}), syscall.EDQUOT},
		{fmt.Errorf("wrapped: %w", syscall.EACCES), syscall.EACCES},
		{errors.New("something else"), syscall.EIO},
		{syscall.Errno(0), syscall.EIO},
	}
	for _, tt := range tests {
		if got := errnoOf(tt.err); got != tt.want {
			t.Errorf("errnoOf(%v) = %d (%v), want %d (%v)", tt.err, got, got, tt.want, tt.want)
		}
	}
}
