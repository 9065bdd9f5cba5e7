//go:build linux

package mmapfile

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFile maps the first n bytes of the file (n a multiple of HugePageSize). A writable
// mapping gets an address aligned to HugePageSize: it reserves n bytes and a huge page
// more, gives back the slop on both sides, and maps the file MAP_SHARED|MAP_FIXED over
// the aligned rest.
func (m *File) mapFile(n int64) (mapping, error) {
	if m.ro {
		return m.mapPortable(n)
	}
	length := uintptr(n)
	raw, err := unix.MmapPtr(-1, 0, nil, length+HugePageSize, unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return mapping{}, err
	}
	start := uintptr(raw)
	skip := ((start+HugePageSize-1)&^(HugePageSize-1) - start)
	base := unsafe.Add(raw, skip)
	if skip > 0 {
		_ = unix.MunmapPtr(raw, skip)
	}
	if tail := HugePageSize - skip; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(base, length), tail)
	}
	p, err := unix.MmapPtr(int(m.f.Fd()), 0, base, length,
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED)
	if err != nil {
		_ = unix.MunmapPtr(base, length)
		return mapping{}, err
	}
	return mapping{
		mem:   unsafe.Slice((*byte)(p), n),
		unmap: func() error { return unix.MunmapPtr(p, length) },
	}, nil
}

// advise gives mem the huge-page advice on (MADV_HUGEPAGE) or off (MADV_NOHUGEPAGE).
func advise(mem []byte, on bool) error {
	advice := unix.MADV_NOHUGEPAGE
	if on {
		advice = unix.MADV_HUGEPAGE
	}
	return unix.Madvise(mem, advice)
}

// allocate extends the file with real blocks over [off, off+n).
func (m *File) allocate(off, n int64) error {
	for {
		err := unix.Fallocate(int(m.f.Fd()), 0, off, n)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EOPNOTSUPP {
			return fmt.Errorf("fallocate is not supported here (a sparse file could SIGBUS on a full disk): %w", err)
		}
		return err
	}
}

func (m *File) datasync() error {
	for {
		err := unix.Fdatasync(int(m.f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// SyncRange writes the dirty pages of [off, off+n) and the metadata needed to read them
// to stable storage (msync MS_SYNC, which on Linux is a datasync of that range of the
// file only: it covers stores made through any of the File's mappings).
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

// StartWriteback asks the kernel to start writing the dirty pages of [off, off+n) to the
// device without waiting (sync_file_range SYNC_FILE_RANGE_WRITE). It makes nothing
// durable by itself: it shortens the time the data spends only in memory.
func (m *File) StartWriteback(off, n int64) error {
	if m.ro {
		return nil
	}
	if m.closed.Load() {
		return ErrClosed
	}
	_, lo, hi := m.pageRange(off, n)
	if lo == hi {
		return nil
	}
	return unix.SyncFileRange(int(m.f.Fd()), lo, hi-lo, unix.SYNC_FILE_RANGE_WRITE)
}

// ErrNoPopulate is returned by Populate where the kernel cannot pre-fault (before 5.14).
var ErrNoPopulate = errors.New("mmapfile: MADV_POPULATE_WRITE is not supported")

// Populate pre-faults [off, off+n) of the mapping writable (MADV_POPULATE_WRITE) without
// changing its contents, so that later stores into it take no page fault. The range is
// clipped to Size. It returns ErrNoPopulate where the kernel lacks it.
func (m *File) Populate(off, n int64) error {
	if m.ro {
		return ErrReadOnly
	}
	if m.closed.Load() {
		return ErrClosed
	}
	mem, lo, hi := m.pageRange(off, n)
	if lo == hi {
		return nil
	}
	for {
		err := unix.Madvise(mem[lo:hi], unix.MADV_POPULATE_WRITE)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EINVAL:
			return ErrNoPopulate
		default:
			return fmt.Errorf("mmapfile: populate [%d, %d): %w", lo, hi, err)
		}
	}
}

// TryLock takes an exclusive advisory lock (flock) on the file without waiting. It
// returns ErrLocked when another open file description, in this process or another,
// holds it. The lock goes away with Close or with the process.
func (m *File) TryLock() error {
	for {
		err := unix.Flock(int(m.f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EWOULDBLOCK:
			return ErrLocked
		default:
			return fmt.Errorf("mmapfile: flock %s: %w", m.f.Name(), err)
		}
	}
}

// Locked reports whether some open file description holds an exclusive flock on the
// file at path. It reads /proc/locks and takes no lock itself, so it can never make a
// writer's TryLock fail; where /proc/locks cannot be read it probes with a shared lock
// that it releases at once (a writer locking at that very instant would then see
// ErrLocked).
func Locked(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	if b, err := os.ReadFile("/proc/locks"); err == nil {
		return lockedIn(string(b), unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino), nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
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

// lockedIn reports whether the /proc/locks text holds an exclusive FLOCK on the inode.
// Lines look like "1: FLOCK  ADVISORY  WRITE 1234 fd:01:123456 0 EOF" (device numbers
// in hex, inode in decimal); lines of waiters start with "1: ->".
func lockedIn(locks string, major, minor uint32, ino uint64) bool {
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	for _, line := range strings.Split(locks, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" || f[3] != "WRITE" {
			continue
		}
		if f[5] == want {
			return true
		}
	}
	return false
}
