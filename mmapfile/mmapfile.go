// Package mmapfile maps a file into memory and grows it in chunks underneath a fixed
// virtual range, so that a slice taken from the mapping stays valid for the life of the
// File: nothing is ever remapped while the file is open.
//
// On Linux a writable File reserves a large virtual range once (Options.Reserve), with its
// start aligned to 2 MiB so that file offsets and addresses are congruent modulo 2 MiB
// (the page cache can then map 2 MiB folios with one fault when Options.HugePages asks
// for it), and maps the whole range MAP_SHARED over the file. The file itself is grown
// with fallocate, which reserves real blocks: a store into the mapping below Size never
// meets an unallocated page, even on a full disk. Touching the range past the end of the
// file raises SIGBUS; callers that may meet a file truncated underneath them use
// runtime/debug.SetPanicOnFault to turn that into a recoverable panic.
//
// Read-only Files are mapped with github.com/edsrzf/mmap-go and never write.
//
// The package knows nothing of checkpoints.
package mmapfile

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Defaults for Options fields left at their zero value.
const (
	// DefaultReserve is the virtual range reserved for a writable mapping: 1 TiB. It costs
	// address space only, not memory.
	DefaultReserve = 1 << 40
	// DefaultChunk is the growth step: the file size is always a multiple of it.
	DefaultChunk = 8 << 20
	// HugePageSize is the alignment of the mapping's start.
	HugePageSize = 2 << 20
)

// Errors returned by this package.
var (
	// ErrLocked is returned by TryLock when another open file description holds the lock.
	ErrLocked = errors.New("mmapfile: file is locked")
	// ErrTooLarge is returned by Grow when the file would outgrow the reserved range.
	ErrTooLarge = errors.New("mmapfile: file would exceed the reserved mapping")
	// ErrReadOnly is returned by operations that write on a read-only File.
	ErrReadOnly = errors.New("mmapfile: file is read-only")
	// ErrClosed is returned by operations on a closed File.
	ErrClosed = errors.New("mmapfile: file is closed")
	// ErrNotRegular is returned by Open for anything but a regular file.
	ErrNotRegular = errors.New("mmapfile: not a regular file")
)

// Options configure Open. The zero value opens an existing file read-write.
type Options struct {
	// ReadOnly maps the file read-only; the file is never written, grown or locked.
	ReadOnly bool
	// Create creates the file if it does not exist (with Perm).
	Create bool
	// Perm is the mode of a created file; 0 means 0600.
	Perm os.FileMode
	// Reserve is the most the file may ever hold, in bytes; 0 means DefaultReserve. The
	// file can never grow past it (Grow stops exactly there, whatever the chunk), and a
	// file already larger does not open. The virtual range behind it is rounded up to a
	// multiple of HugePageSize.
	Reserve int64
	// Chunk is the growth step; 0 means DefaultChunk. Rounded up to a multiple of 4 KiB.
	Chunk int64
	// HugePages asks the kernel (madvise MADV_HUGEPAGE) to back the mapping with 2 MiB
	// folios where the file system supports it. A hint: ignored where unsupported.
	// SetHugePages changes it later.
	HugePages bool
}

// File is a file mapped into memory. Its methods are safe for concurrent use; the bytes
// of the mapping are not synchronised by it.
type File struct {
	f       *os.File
	mem     []byte // the whole reserved range; only [0, size) is backed by the file
	limit   int64  // Options.Reserve: the file never grows past it (<= len(mem))
	size    atomic.Int64
	chunk   int64
	ro      bool
	growMu  sync.Mutex
	closed  atomic.Bool
	release func() error // unmaps mem
}

// Open opens (and with Options.Create, creates) the file at path and maps it.
func Open(path string, o Options) (*File, error) {
	if o.Perm == 0 {
		o.Perm = 0o600
	}
	if o.Reserve <= 0 {
		o.Reserve = DefaultReserve
	}
	if o.Chunk <= 0 {
		o.Chunk = DefaultChunk
	}
	o.Chunk = roundUp(o.Chunk, 4096)
	flag := os.O_RDWR
	if o.ReadOnly {
		flag = os.O_RDONLY
	} else if o.Create {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flag, o.Perm)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrNotRegular, path)
	}
	if st.Size() > o.Reserve {
		f.Close()
		return nil, fmt.Errorf("%w: %s is %d bytes, reserve is %d", ErrTooLarge, path, st.Size(), o.Reserve)
	}
	m := &File{f: f, chunk: o.Chunk, ro: o.ReadOnly, limit: o.Reserve}
	m.size.Store(st.Size())
	o.Reserve = roundUp(o.Reserve, HugePageSize) // the mapping's length
	if o.ReadOnly {
		err = m.mapReadOnly(o)
	} else {
		err = m.mapWritable(o)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mmapfile: map %s: %w", path, err)
	}
	return m, nil
}

// OSFile returns the underlying *os.File.
func (m *File) OSFile() *os.File { return m.f }

// Name returns the file's path as given to Open.
func (m *File) Name() string { return m.f.Name() }

// Size returns the file's size as last grown or refreshed.
func (m *File) Size() int64 { return m.size.Load() }

// Reserve returns the most the file can grow to (Options.Reserve).
func (m *File) Reserve() int64 { return m.limit }

// Bytes returns the mapping from offset 0 to Size. The slice (and every slice taken from
// it) stays valid until Close, and keeps its address when the file grows.
func (m *File) Bytes() []byte { return m.mem[:m.size.Load()] }

// ReadOnly reports whether the File was opened read-only.
func (m *File) ReadOnly() bool { return m.ro }

// Refresh re-reads the file's size (a read-only File follows a writer this way) and
// returns it. The size never exceeds the reserved range.
func (m *File) Refresh() (int64, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	st, err := m.f.Stat()
	if err != nil {
		return m.size.Load(), err
	}
	n := min(st.Size(), m.limit)
	m.size.Store(n)
	return n, nil
}

// Grow makes the file at least size bytes long, rounded up to a multiple of the chunk,
// with real blocks allocated. On failure (ENOSPC, EFBIG, ...) the error wraps the cause
// and Size reports what the file really holds afterwards; nothing below the old size is
// touched.
func (m *File) Grow(size int64) error {
	if m.ro {
		return ErrReadOnly
	}
	if m.closed.Load() {
		return ErrClosed
	}
	if size <= m.size.Load() {
		return nil
	}
	m.growMu.Lock()
	defer m.growMu.Unlock()
	cur := m.size.Load()
	if size <= cur {
		return nil
	}
	target := roundUp(size, m.chunk)
	if target > m.limit {
		target = m.limit
		if size > target {
			return fmt.Errorf("%w: need %d bytes, reserve is %d", ErrTooLarge, size, m.limit)
		}
	}
	err := m.allocate(cur, target-cur)
	if err != nil {
		// The file may have grown part of the way: believe the file system.
		if st, serr := m.f.Stat(); serr == nil && st.Size() > cur {
			m.size.Store(min(st.Size(), m.limit))
		}
		return fmt.Errorf("mmapfile: grow %s to %d bytes: %w", m.f.Name(), target, err)
	}
	m.size.Store(target)
	return nil
}

// Sync writes every dirty page of the file and the metadata needed to read it back to
// stable storage (fdatasync on Linux).
func (m *File) Sync() error {
	if m.ro {
		return nil
	}
	if m.closed.Load() {
		return ErrClosed
	}
	return m.datasync()
}

// Close unmaps the file and closes it. Slices from Bytes must not be used afterwards.
func (m *File) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := m.release()
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// pageRange returns the page-aligned range [lo, hi) covering [off, off+n) clipped to Size.
func (m *File) pageRange(off, n int64) (lo, hi int64) {
	lo = off &^ 4095
	hi = min(roundUp(off+n, 4096), m.size.Load())
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }
