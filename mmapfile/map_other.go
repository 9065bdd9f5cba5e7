//go:build !linux

package mmapfile

import (
	"errors"

	"golang.org/x/sys/unix"
)

// On systems other than Linux every mapping is made with mmap-go, without the huge-page
// alignment, and the file grows with ftruncate followed by writing zeros, so that blocks
// are really allocated.

func (m *File) mapFile(n int64) (mapping, error) { return m.mapPortable(n) }

// advise does nothing outside Linux.
func advise(mem []byte, on bool) error { return nil }

func (m *File) allocate(off, n int64) error {
	zero := make([]byte, 1<<20)
	for done := int64(0); done < n; {
		k := min(int64(len(zero)), n-done)
		if _, err := m.f.WriteAt(zero[:k], off+done); err != nil {
			return err
		}
		done += k
	}
	return nil
}

func (m *File) datasync() error { return m.f.Sync() }

// SyncRange writes the dirty pages of [off, off+n) to stable storage.
func (m *File) SyncRange(off, n int64) error {
	if m.ro {
		return nil
	}
	if m.closed.Load() {
		return ErrClosed
	}
	mem, lo, hi := m.pageRange(off, n)
	if lo == hi {
		return nil
	}
	return unix.Msync(mem[lo:hi], unix.MS_SYNC)
}

// StartWriteback starts writing [off, off+n) back without waiting.
func (m *File) StartWriteback(off, n int64) error {
	if m.ro {
		return nil
	}
	mem, lo, hi := m.pageRange(off, n)
	if lo == hi {
		return nil
	}
	return unix.Msync(mem[lo:hi], unix.MS_ASYNC)
}

// ErrNoPopulate is returned by Populate where the kernel cannot pre-fault.
var ErrNoPopulate = errors.New("mmapfile: MADV_POPULATE_WRITE is not supported")

// Populate is not available outside Linux.
func (m *File) Populate(off, n int64) error { return ErrNoPopulate }

// TryLock takes an exclusive advisory lock (flock) on the file without waiting.
func (m *File) TryLock() error {
	err := unix.Flock(int(m.f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == unix.EWOULDBLOCK {
		return ErrLocked
	}
	return err
}

// Locked reports whether some open file description holds the lock on the file at path.
func Locked(path string) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	err = unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB)
	if err == unix.EWOULDBLOCK {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	_ = unix.Flock(fd, unix.LOCK_UN)
	return false, nil
}
