// Package mmapfile maps a file into memory and grows it in chunks, so that a slice taken
// from the mapping stays valid, at the same address and with the same bytes, for the
// life of the File.
//
// A writable File on Linux reserves a virtual range of twice the file's size (at least
// Options.FirstReserve, 1 GiB by default; at most Options.MaxSize rounded up to 2 MiB),
// with its start aligned to 2 MiB so that file offsets and addresses are congruent
// modulo 2 MiB (the page cache can then map 2 MiB folios with one fault when
// Options.HugePages asks for it), and maps the file MAP_SHARED over it. The file grows
// underneath with fallocate, which reserves real blocks: a store into the mapping below
// Size never meets an unallocated page, even on a full disk. When Grow needs more than
// the range spans, it reserves a new range of twice the new size and maps the whole file
// into it (MAP_SHARED|MAP_FIXED, the same alignment and huge-page advice). The older
// mappings stay until Close, so slices taken from them stay valid and coherent (every
// mapping shares one page cache); Bytes returns the newest:
//
//	mapping 1   [0 ...... 1 GiB)                                  a slice taken early
//	mapping 2   [0 ................... 2 GiB)                     taken after the first move
//	mapping 3   [0 ........................................ 4 GiB)   Bytes now
//	file        [0 ............................ Size)
//
// Address space is spent in proportion to what the file holds (about four times its
// size at most, summed over the mappings, and FirstReserve at least), not to MaxSize:
// thousands of Files fit in one process. Where the address space has no room for twice
// the size, Grow maps just the size. A move costs a few system calls: no byte is copied
// and nothing is faulted in ahead; a page touched through an older mapping takes one
// minor fault (it is in the page cache) when first touched through the newer one, and
// stays mapped in both until Close (RSS counts it twice; memory holds it once).
//
// Slices from Bytes end at Size, capacity included, so a store past the end of the file
// (a SIGBUS) cannot be made through them. A file truncated underneath its mapping still
// faults when touched past its new end; callers that may meet one use
// runtime/debug.SetPanicOnFault to turn that into a recoverable panic.
//
// Read-only Files are mapped with github.com/edsrzf/mmap-go over the file's size at Open;
// Refresh maps a range twice the new size when the file has grown past it, and keeps the
// older mappings as Grow does. They never write.
//
// The package knows nothing of checkpoints.
package mmapfile

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/edsrzf/mmap-go"
)

// Defaults for Options fields left at their zero value.
const (
	// DefaultMaxSize is the most a file may hold: 1 TiB.
	DefaultMaxSize = 1 << 40
	// DefaultFirstReserve is the least virtual range a writable File reserves when it
	// opens: 1 GiB. It costs address space only, not memory.
	DefaultFirstReserve = 1 << 30
	// DefaultChunk is the growth step: the file size is always a multiple of it.
	DefaultChunk = 8 << 20
	// HugePageSize is the alignment of a writable mapping's start, and the unit in which
	// every mapping's length is reserved.
	HugePageSize = 2 << 20
)

// Errors returned by this package.
var (
	// ErrLocked is returned by TryLock when another open file description holds the lock.
	ErrLocked = errors.New("mmapfile: file is locked")
	// ErrTooLarge is returned by Grow, and by Open, when the file would be larger than
	// Options.MaxSize.
	ErrTooLarge = errors.New("mmapfile: file would exceed its maximum size")
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
	// MaxSize is the most the file may ever hold, in bytes; 0 means DefaultMaxSize. The
	// file can never grow past it (Grow stops exactly there, whatever the chunk), and a
	// file already larger does not open. No mapping is ever longer than MaxSize rounded up
	// to a multiple of HugePageSize.
	MaxSize int64
	// FirstReserve is the least virtual range a writable File reserves when it opens; 0
	// means DefaultFirstReserve. The File reserves twice the file's size if that is more,
	// and never more than MaxSize allows. A read-only File reserves only its size.
	FirstReserve int64
	// Chunk is the growth step; 0 means DefaultChunk. Rounded up to a multiple of 4 KiB.
	Chunk int64
	// HugePages asks the kernel (madvise MADV_HUGEPAGE) to back the mapping with 2 MiB
	// folios where the file system supports it. A hint: ignored where unsupported.
	// SetHugePages changes it later; every later mapping carries the same advice.
	HugePages bool
}

// File is a file mapped into memory. Its methods are safe for concurrent use; the bytes
// of the mapping are not synchronised by it.
type File struct {
	f      *os.File
	v      atomic.Pointer[view] // what Bytes and Size read, without a lock
	limit  int64                // Options.MaxSize: the file never grows past it
	span   int64                // the longest mapping: limit rounded up to HugePageSize
	chunk  int64
	ro     bool
	closed atomic.Bool

	growMu sync.Mutex // serialises Grow, Refresh and Close; taken before mapMu

	mapMu  sync.Mutex // guards maps and advice
	maps   []mapping  // every mapping made, oldest first; Close unmaps them
	advice hugeAdvice // what every mapping was told about huge pages
}

// view is the newest mapping with the file's size, published together so that a reader
// never sees a size that its mapping does not span.
type view struct {
	mem  []byte // the whole mapping; only [0, size) is backed by the file
	size int64  // <= len(mem)
}

// mapping is one range mapped over the file from offset 0.
type mapping struct {
	mem   []byte
	unmap func() error
}

// hugeAdvice is the huge-page advice given to every mapping.
type hugeAdvice uint8

const (
	hugeUnset hugeAdvice = iota // none given: the kernel's default
	hugeOn                      // MADV_HUGEPAGE
	hugeOff                     // MADV_NOHUGEPAGE
)

// Open opens (and with Options.Create, creates) the file at path and maps it.
func Open(path string, o Options) (*File, error) {
	if o.Perm == 0 {
		o.Perm = 0o600
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.FirstReserve <= 0 {
		o.FirstReserve = DefaultFirstReserve
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
	size := st.Size()
	if size > o.MaxSize {
		f.Close()
		return nil, fmt.Errorf("%w: %s is %d bytes, the maximum is %d", ErrTooLarge, path, size, o.MaxSize)
	}
	m := &File{f: f, chunk: o.Chunk, ro: o.ReadOnly, limit: o.MaxSize, span: roundUp(o.MaxSize, HugePageSize)}
	if o.HugePages && !o.ReadOnly {
		m.advice = hugeOn
	}
	want := size
	if !o.ReadOnly {
		want = max(o.FirstReserve, twice(size))
	}
	mem, err := m.newMapping(size, want)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mmapfile: map %s: %w", path, err)
	}
	m.v.Store(&view{mem: mem, size: size})
	return m, nil
}

// newMapping maps the file over a new range of want bytes, or of need bytes if the
// address space has no room for want, gives it the File's huge-page advice and returns
// it; both lengths are rounded up to HugePageSize and cut where MaxSize (so rounded)
// ends. The File keeps the mapping until Close.
func (m *File) newMapping(need, want int64) ([]byte, error) {
	n := m.mappingLen(max(need, want))
	m.mapMu.Lock()
	defer m.mapMu.Unlock()
	mp, err := m.mapFile(n)
	if err != nil && m.mappingLen(need) < n {
		n = m.mappingLen(need)
		mp, err = m.mapFile(n)
	}
	if err != nil {
		return nil, fmt.Errorf("reserve %d bytes: %w", n, err)
	}
	m.maps = append(m.maps, mp)
	if m.advice != hugeUnset {
		_ = advise(mp.mem, m.advice == hugeOn) // a hint, as in SetHugePages
	}
	return mp.mem, nil
}

// mappingLen is the length of a mapping that spans n bytes of the file.
func (m *File) mappingLen(n int64) int64 {
	return roundUp(min(max(n, 1), m.span), HugePageSize)
}

// mapPortable maps the first n bytes of the file with mmap-go, read-only or read-write
// as the File was opened, wherever the kernel chooses.
func (m *File) mapPortable(n int64) (mapping, error) {
	prot := mmap.RDWR
	if m.ro {
		prot = mmap.RDONLY
	}
	mm, err := mmap.MapRegion(m.f, int(n), prot, 0, 0)
	if err != nil {
		return mapping{}, err
	}
	return mapping{mem: mm, unmap: mm.Unmap}, nil
}

// SetHugePages asks the kernel to back pages faulted in from now on with 2 MiB folios
// (MADV_HUGEPAGE), or not (MADV_NOHUGEPAGE), through every mapping of the file, and
// through those Grow makes later. Folios already in the page cache keep their size. It
// is a hint: where the kernel or file system cannot, nothing changes. A read-only File
// ignores it.
func (m *File) SetHugePages(on bool) error {
	if m.ro {
		return nil
	}
	m.mapMu.Lock()
	defer m.mapMu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	m.advice = hugeOff
	if on {
		m.advice = hugeOn
	}
	var err error
	for _, mp := range m.maps {
		if e := advise(mp.mem, on); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// OSFile returns the underlying *os.File.
func (m *File) OSFile() *os.File { return m.f }

// Name returns the file's path as given to Open.
func (m *File) Name() string { return m.f.Name() }

// Size returns the file's size as last grown or refreshed.
func (m *File) Size() int64 { return m.v.Load().size }

// MaxSize returns the most the file can grow to (Options.MaxSize).
func (m *File) MaxSize() int64 { return m.limit }

// Reserved returns the length of the newest mapping: the file can grow this far before
// Grow reserves a larger range.
func (m *File) Reserved() int64 { return int64(len(m.v.Load().mem)) }

// Bytes returns the newest mapping from offset 0 to Size; its capacity ends at Size too.
// The slice (and every slice taken from it) stays valid until Close, at the same address,
// whatever Grow does meanwhile; it sees every store made through any other.
func (m *File) Bytes() []byte {
	v := m.v.Load()
	return v.mem[:v.size:v.size]
}

// ReadOnly reports whether the File was opened read-only.
func (m *File) ReadOnly() bool { return m.ro }

// Refresh re-reads the file's size (a read-only File follows a writer this way) and
// returns it. The size never exceeds MaxSize. A file that has grown past the newest
// mapping is mapped over a larger range, as Grow does; if that fails, the size stops
// where the newest mapping ends and the error says why.
func (m *File) Refresh() (int64, error) {
	m.growMu.Lock()
	defer m.growMu.Unlock()
	if m.closed.Load() {
		return 0, ErrClosed
	}
	v := m.v.Load()
	st, err := m.f.Stat()
	if err != nil {
		return v.size, err
	}
	n := min(st.Size(), m.limit)
	mem := v.mem
	if n > int64(len(mem)) {
		if mem, err = m.newMapping(n, twice(n)); err != nil {
			n, mem = int64(len(v.mem)), v.mem
			err = fmt.Errorf("mmapfile: map %s to %d bytes: %w", m.f.Name(), st.Size(), err)
		}
	}
	m.v.Store(&view{mem: mem, size: n})
	return n, err
}

// Grow makes the file at least size bytes long, rounded up to a multiple of the chunk
// (and cut at MaxSize), with real blocks allocated; beyond the newest mapping it maps the
// file over a range twice as long as the new size first. On failure (ErrTooLarge, ENOSPC, EFBIG, ENOMEM
// for the address space, ...) the error wraps the cause and Size reports what the file
// really holds afterwards; nothing below the old size is touched.
func (m *File) Grow(size int64) error {
	if m.ro {
		return ErrReadOnly
	}
	if m.closed.Load() {
		return ErrClosed
	}
	if size <= m.Size() {
		return nil
	}
	if size > m.limit {
		return fmt.Errorf("%w: need %d bytes, the maximum is %d", ErrTooLarge, size, m.limit)
	}
	m.growMu.Lock()
	defer m.growMu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	v := m.v.Load()
	cur := v.size
	if size <= cur {
		return nil
	}
	target := min(roundUp(size, m.chunk), m.limit)
	mem := v.mem
	if target > int64(len(mem)) {
		var err error
		if mem, err = m.newMapping(target, twice(target)); err != nil {
			return fmt.Errorf("mmapfile: grow %s to %d bytes: %w", m.f.Name(), target, err)
		}
	}
	if err := m.allocate(cur, target-cur); err != nil {
		// The file may have grown part of the way: believe the file system.
		n := cur
		if st, serr := m.f.Stat(); serr == nil && st.Size() > cur {
			n = min(st.Size(), target)
		}
		m.v.Store(&view{mem: mem, size: n})
		return fmt.Errorf("mmapfile: grow %s to %d bytes: %w", m.f.Name(), target, err)
	}
	m.v.Store(&view{mem: mem, size: target})
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

// Close unmaps every mapping and closes the file. Slices from Bytes must not be used
// afterwards.
func (m *File) Close() error {
	m.growMu.Lock()
	defer m.growMu.Unlock()
	m.mapMu.Lock()
	defer m.mapMu.Unlock()
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	var err error
	for _, mp := range m.maps {
		if e := mp.unmap(); e != nil && err == nil {
			err = e
		}
	}
	m.maps = nil
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// pageRange returns the newest mapping and the page-aligned range [lo, hi) covering
// [off, off+n) clipped to the size it was published with.
func (m *File) pageRange(off, n int64) (mem []byte, lo, hi int64) {
	v := m.v.Load()
	lo = off &^ 4095
	hi = min(roundUp(off+n, 4096), v.size)
	if lo > hi {
		lo = hi
	}
	return v.mem, lo, hi
}

// roundUp rounds n up to a multiple of to, or down to the largest multiple of to when
// that would overflow.
func roundUp(n, to int64) int64 {
	if n > math.MaxInt64-to {
		return math.MaxInt64 / to * to
	}
	return (n + to - 1) / to * to
}

// twice returns 2n, saturating at the largest int64.
func twice(n int64) int64 { return n + min(n, math.MaxInt64-n) }
