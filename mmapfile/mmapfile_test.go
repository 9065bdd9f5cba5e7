package mmapfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"testing"
	"unsafe"
)

func openTemp(t *testing.T, o Options) (*File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	o.Create = true
	m, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, path
}

func TestGrowKeepsSlicesValidAndAllocatesBlocks(t *testing.T) {
	m, path := openTemp(t, Options{Chunk: 1 << 20, HugePages: true})
	if m.Size() != 0 || len(m.Bytes()) != 0 {
		t.Fatalf("new file size %d", m.Size())
	}
	if err := m.Grow(10); err != nil {
		t.Fatal(err)
	}
	if m.Size() != 1<<20 {
		t.Fatalf("size %d, want one chunk", m.Size())
	}
	first := m.Bytes()
	copy(first, "hello")
	if err := m.Grow(5 << 20); err != nil {
		t.Fatal(err)
	}
	b := m.Bytes()
	if &b[0] != &first[0] || string(b[:5]) != "hello" {
		t.Fatal("mapping moved or lost bytes on growth")
	}
	if cap(b) != 5<<20 || cap(first) != 1<<20 {
		t.Fatalf("capacities %d and %d run past the sizes the slices were taken at", cap(b), cap(first))
	}
	b[5<<20-1] = 7
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 5<<20 {
		t.Fatalf("file size %d", st.Size())
	}
	if blocks := st.Sys().(*syscall.Stat_t).Blocks * 512; blocks < 5<<20 {
		t.Fatalf("file is sparse: %d bytes allocated of %d", blocks, st.Size())
	}
	if uintptr(unsafe.Pointer(&b[0]))%HugePageSize != 0 {
		t.Fatal("mapping is not 2 MiB aligned")
	}
}

func TestGrowPastMaxSize(t *testing.T) {
	m, _ := openTemp(t, Options{MaxSize: 4 << 20, Chunk: 1 << 20})
	if err := m.Grow(5 << 20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
	if err := m.Grow(4 << 20); err != nil {
		t.Fatal(err)
	}
}

// TestReadOnlyFollowsWriter: a read-only File maps only the file's size; Refresh follows
// the writer, and maps a larger range once the file has grown past the first, while a
// slice from the first still reads.
func TestReadOnlyFollowsWriter(t *testing.T) {
	w, path := openTemp(t, Options{Chunk: 4096})
	if err := w.Grow(4096); err != nil {
		t.Fatal(err)
	}
	copy(w.Bytes(), "abc")
	r, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if string(r.Bytes()[:3]) != "abc" {
		t.Fatal("reader does not see writer's bytes")
	}
	if r.Reserved() != HugePageSize {
		t.Fatalf("read-only File of 4 KiB reserved %d bytes, want %d", r.Reserved(), HugePageSize)
	}
	old := r.Bytes()
	if err := w.Grow(3 * 4096); err != nil {
		t.Fatal(err)
	}
	w.Bytes()[2*4096] = 'z'
	if n, err := r.Refresh(); err != nil || n != 3*4096 {
		t.Fatalf("refresh %d %v", n, err)
	}
	if r.Bytes()[2*4096] != 'z' {
		t.Fatal("reader does not see grown bytes")
	}
	if err := w.Grow(5 << 20); err != nil {
		t.Fatal(err)
	}
	w.Bytes()[5<<20-1] = 'z'
	if n, err := r.Refresh(); err != nil || n != 5<<20 {
		t.Fatalf("refresh: %d %v", n, err)
	}
	if r.Reserved() < 5<<20 || r.Bytes()[5<<20-1] != 'z' {
		t.Fatalf("reader does not see the file grown past its first mapping (reserved %d)", r.Reserved())
	}
	if string(old[:3]) != "abc" {
		t.Fatal("a slice of the first read-only mapping no longer reads")
	}
	if err := r.Grow(1 << 20); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only grow: %v", err)
	}
	if err := r.TryLock(); err != nil {
		// a read-only File may still lock; we only check it does not panic
		_ = err
	}
}

func TestPopulateKeepsContents(t *testing.T) {
	m, _ := openTemp(t, Options{Chunk: 1 << 20})
	if err := m.Grow(1 << 20); err != nil {
		t.Fatal(err)
	}
	b := m.Bytes()
	for i := range b {
		b[i] = byte(i)
	}
	want := bytes.Clone(b)
	if err := m.Populate(0, 1<<20); err != nil && !errors.Is(err, ErrNoPopulate) {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatal("populate changed the contents")
	}
	// Past the end: clipped, not a fault.
	if err := m.Populate(1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
}

func TestSyncAndWriteback(t *testing.T) {
	m, path := openTemp(t, Options{Chunk: 1 << 20})
	if err := m.Grow(1); err != nil {
		t.Fatal(err)
	}
	copy(m.Bytes()[100:], "durable")
	if err := m.StartWriteback(0, 4096); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncRange(100, 7); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[100:107]) != "durable" {
		t.Fatal("pread does not see mapped stores")
	}
}

func TestLockIsExclusiveAcrossDescriptions(t *testing.T) {
	a, path := openTemp(t, Options{})
	if locked, err := Locked(path); err != nil || locked {
		t.Fatalf("Locked before: %v %v", locked, err)
	}
	if err := a.TryLock(); err != nil {
		t.Fatal(err)
	}
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	b.Close()
	if locked, err := Locked(path); err != nil || !locked {
		t.Fatalf("Locked while held: %v %v", locked, err)
	}
	// Probing did not take the lock away.
	c, _ := Open(path, Options{})
	defer c.Close()
	if err := c.TryLock(); !errors.Is(err, ErrLocked) {
		t.Fatalf("lock taken away by probe: %v", err)
	}
	a.Close()
	if err := c.TryLock(); err != nil {
		t.Fatalf("lock not released by Close: %v", err)
	}
}

func TestTruncatedUnderneathFaultsRecoverably(t *testing.T) {
	m, path := openTemp(t, Options{Chunk: 1 << 20})
	if err := m.Grow(1 << 20); err != nil {
		t.Fatal(err)
	}
	b := m.Bytes()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	faulted := func() (ok bool) {
		old := debug.SetPanicOnFault(true)
		defer debug.SetPanicOnFault(old)
		defer func() {
			if r := recover(); r != nil {
				ok = true
			}
		}()
		b[8192] = 1
		return false
	}()
	if !faulted {
		t.Fatal("store past EOF did not fault")
	}
}

func TestClosed(t *testing.T) {
	m, _ := openTemp(t, Options{})
	m.Close()
	if err := m.Grow(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("grow after close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal("double close")
	}
}

func TestOpenRejectsDirectory(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{}); err == nil {
		t.Fatal("opened a directory")
	}
}

func TestLockedDoesNotLock(t *testing.T) {
	a, path := openTemp(t, Options{})
	if err := a.TryLock(); err != nil {
		t.Fatal(err)
	}
	// Many probes, and a second description trying to lock in between: the probe must
	// never be what makes TryLock fail once the holder is gone.
	a.Close()
	for i := 0; i < 100; i++ {
		if locked, err := Locked(path); err != nil || locked {
			t.Fatalf("Locked after Close: %v %v", locked, err)
		}
	}
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan bool)
	go func() {
		for {
			select {
			case <-done:
				return
			default:
				Locked(path)
			}
		}
	}()
	for i := 0; i < 200; i++ {
		if err := b.TryLock(); err != nil {
			close(done)
			t.Fatalf("TryLock failed while another goroutine probed: %v", err)
		}
	}
	close(done)
}

// TestMaxSizeIsExact: a MaxSize that is not a multiple of the huge page (nor of the
// chunk) is the exact limit: growth stops at it, never in the rounding beyond.
func TestMaxSizeIsExact(t *testing.T) {
	const limit = 3_000_000
	m, path := openTemp(t, Options{MaxSize: limit, Chunk: 1 << 20})
	if m.MaxSize() != limit {
		t.Fatalf("MaxSize() = %d, want %d", m.MaxSize(), limit)
	}
	if err := m.Grow(2_500_000); err != nil {
		t.Fatal(err)
	}
	if m.Size() != limit {
		t.Fatalf("grown to %d, want the chunk rounding cut at %d", m.Size(), limit)
	}
	if err := m.Grow(limit + 1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Grow past the limit: %v, want ErrTooLarge", err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != limit {
		t.Fatalf("file size %v (%v), want %d", st.Size(), err, limit)
	}
	m.Close()
	if _, err := Open(path, Options{MaxSize: limit - 1}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("open with a smaller reserve: %v, want ErrTooLarge", err)
	}
}
