package engine

import (
	"errors"
	"fmt"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/mmapfile"
)

// Errors returned by the engine. Every error a method returns wraps one of them (or an
// operating-system error such as ENOSPC, wrapped with context), so callers test with
// errors.Is.
var (
	// ErrInvalid: a bad argument (empty or over-long name, nil or empty region, a type
	// that holds pointers, a bad option) or an operation the File does not allow.
	ErrInvalid = base.ErrInvalid
	// ErrNotFound: no checkpoint is registered under that name, or the Checkpoint was
	// unregistered.
	ErrNotFound = base.ErrNotFound
	// ErrExists: a checkpoint of that name is already registered on this File.
	ErrExists = base.ErrExists
	// ErrVersion: the version number names no kept version (never saved, dropped by
	// retention, or out of the relative range).
	ErrVersion = base.ErrVersion
	// ErrSize: the saved version's size differs from the registered region's.
	ErrSize = base.ErrSize
	// ErrClosed: the File was closed.
	ErrClosed = base.ErrClosed
	// ErrLocked: another writer (in this process or another) holds the file.
	ErrLocked = base.ErrLocked
	// ErrCorrupt: the file is not a ckp file, or the bytes of a version do not match
	// their hash; damaged data is never handed back.
	ErrCorrupt = base.ErrCorrupt
	// ErrFull: the save would grow the data file past Options.MaxSize. The save is not
	// made and every earlier version stays; retention (KeepVersions) or a larger MaxSize
	// make room.
	ErrFull = base.ErrFull
)

// ErrReadOnly is returned by operations that would write to a File opened with
// Options.ReadOnly. It wraps ErrInvalid.
var ErrReadOnly = fmt.Errorf("%w: file is open read-only", ErrInvalid)

// fileErr wraps an error from opening, growing or syncing one of the two files so that
// it names the file and wraps an engine error or an operating-system error, as promised
// above: mmapfile's own errors become the engine's.
func fileErr(what, path string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mmapfile.ErrTooLarge):
		return fmt.Errorf("%w: %s %s: %w", ErrFull, what, path, err)
	case errors.Is(err, mmapfile.ErrClosed):
		return fmt.Errorf("%w: %s %s: %w", ErrClosed, what, path, err)
	case errors.Is(err, mmapfile.ErrReadOnly):
		return fmt.Errorf("%w: %s %s: %w", ErrReadOnly, what, path, err)
	case errors.Is(err, mmapfile.ErrNotRegular):
		return fmt.Errorf("%w: %s %s: %w", ErrInvalid, what, path, err)
	}
	return fmt.Errorf("ckp: %s %s: %w", what, path, err)
}
