// Package base holds what the engine and the remote tier share and neither owns: the
// sentinel errors every error of the module wraps, the limits on names and lengths, the
// arithmetic of blocks, and the recovery of memory faults on a mapping.
//
// The engine re-exports the errors (engine.ErrCorrupt is base.ErrCorrupt), so callers
// test errors.Is against the engine's names whichever package produced the error.
package base

import (
	"errors"
	"fmt"
)

// The sentinel errors; engine/errors.go documents each under its engine name.
var (
	ErrInvalid  = errors.New("ckp: invalid argument")
	ErrNotFound = errors.New("ckp: checkpoint not found")
	ErrExists   = errors.New("ckp: checkpoint already registered")
	ErrVersion  = errors.New("ckp: no such version")
	ErrSize     = errors.New("ckp: size mismatch")
	ErrClosed   = errors.New("ckp: file closed")
	ErrLocked   = errors.New("ckp: file locked by another writer")
	ErrCorrupt  = errors.New("ckp: corrupt checkpoint data")
	ErrFull     = errors.New("ckp: data file full (MaxSize reached)")
	ErrRemote   = errors.New("ckp: remote store")
)

// Errf wraps a sentinel error with a formatted message: "ckp: ...: message".
func Errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// Limits.
const (
	// MaxNameLen is the longest checkpoint name, in bytes.
	MaxNameLen = 255
	// MaxLength is the largest region (and version) length a file or a store may
	// describe; anything longer is damage.
	MaxLength = 1 << 50
	// MinBlockShift and MaxBlockShift bound the block size of versions stored by
	// blocks: 4 KiB (a page) to 2 MiB.
	MinBlockShift = 12
	MaxBlockShift = 21
)

// Pad8 rounds n up to a multiple of 8.
func Pad8(n int64) int64 { return (n + 7) &^ 7 }

// BlockCount is the number of blocks of 1<<shift bytes in n bytes.
func BlockCount(n int64, shift uint8) int64 { return (n + 1<<shift - 1) >> shift }

// BlockLen is the length of block b of n bytes cut in blocks of 1<<shift bytes.
func BlockLen(b int64, shift uint8, n int64) int64 { return min(int64(1)<<shift, n-b<<shift) }

// Memory faults. Every path that touches a mapping turns on SetPanicOnFault for its
// goroutine, so a page that cannot be read or written (the file was truncated
// underneath the mapping, the disk returned an I/O error) becomes an error instead of
// killing the process:
//
//	defer base.Catch(&err)
//	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // on now, restored on return
//
// (The inner call runs at once; the outer one, deferred, restores the old setting.
// Unlike a helper returning a closure, this allocates nothing.)

// FaultError converts a recovered panic into an error. Memory faults (the runtime
// reports them as errors with an Addr method) become ErrCorrupt; anything else is a bug
// and is re-raised.
func FaultError(r any) error {
	if e, ok := r.(interface{ Addr() uintptr }); ok {
		return Errf(ErrCorrupt, "memory fault at %#x while accessing the mapping (file truncated or unreadable?)", e.Addr())
	}
	panic(r)
}

// Catch recovers a memory fault into *err; use as defer base.Catch(&err).
func Catch(err *error) {
	if r := recover(); r != nil {
		*err = FaultError(r)
	}
}

// Intersect returns the numbers in both ascending lists.
func Intersect(a, b []uint64) []uint64 {
	var out []uint64
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}
