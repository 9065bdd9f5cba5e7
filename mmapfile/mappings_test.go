//go:build linux

package mmapfile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Tests of a File that outgrows its first mapping: slices from every mapping stay valid
// and coherent, every mapping is aligned and carries the huge-page advice, Close unmaps
// them all, and address space follows the file's size rather than MaxSize.

// stableByte is the content of the pages the grow loop writes once and never again.
func stableByte(off int) byte { return byte(off ^ off>>8 ^ off>>16 ^ 0x5a) }

// addr is the address of a mapping's first byte.
func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// mappingsOf returns the File's mappings, oldest first.
func mappingsOf(m *File) [][]byte {
	m.mapMu.Lock()
	defer m.mapMu.Unlock()
	var out [][]byte
	for _, mp := range m.maps {
		out = append(out, mp.mem)
	}
	return out
}

// TestGrowAcrossMappingsWhileSlicesAreUsed grows a file across several mappings while
// goroutines write and read through slices taken before each growth: every slice keeps
// working, every write is seen byte for byte through every other slice and by pread, and
// pages written once before a move read the same through all of them afterwards.
func TestGrowAcrossMappingsWhileSlicesAreUsed(t *testing.T) {
	const (
		page    = 4096
		chunk   = 64 << 10 // the first page of each chunk is stable: written once, then only read
		final   = 40 << 20
		writers = 3
		readers = 2
	)
	m, path := openTemp(t, Options{FirstReserve: HugePageSize, Chunk: chunk, MaxSize: 64 << 20, HugePages: true})
	var (
		mu      sync.Mutex
		slices  [][]byte     // one taken before each Grow, oldest first
		stable  atomic.Int64 // stable pages are written below this offset
		stop    atomic.Bool
		wg      sync.WaitGroup
		errOnce sync.Once
		failure error
	)
	fail := func(err error) {
		errOnce.Do(func() { failure = err })
		stop.Store(true)
	}
	snapshot := func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return slices
	}
	writeStable := func(from, to int) {
		b := m.Bytes()
		for c := from; c < to; c += chunk {
			for o := c; o < c+page; o++ {
				b[o] = stableByte(o)
			}
		}
		stable.Store(int64(to))
	}
	if err := m.Grow(chunk); err != nil {
		t.Fatal(err)
	}
	writeStable(0, chunk)
	slices = append(slices, m.Bytes())

	// Writers: each owns the non-stable pages p with p%writers == id, writes a stamp over
	// one through a slice from any mapping that spans it, and reads it back through
	// another old slice and through the newest.
	written := make([]map[int]uint64, writers)
	for id := range writers {
		written[id] = map[int]uint64{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 1))
			own := written[id]
			for stamp := uint64(1); !stop.Load(); stamp++ {
				ss := snapshot()
				w := ss[rng.IntN(len(ss))]
				p := rng.IntN(len(w)/page/writers)*writers + id
				if p%(chunk/page) == 0 || (p+1)*page > len(w) {
					continue // a stable page, or one past the end
				}
				pg := w[p*page : (p+1)*page]
				v := stamp<<8 | uint64(id)
				for o := 0; o < page; o += 8 {
					binary.LittleEndian.PutUint64(pg[o:], v)
				}
				own[p] = v
				for _, r := range [][]byte{ss[rng.IntN(len(ss))], m.Bytes()} {
					if (p+1)*page > len(r) {
						continue
					}
					for o := p * page; o < (p+1)*page; o += 8 {
						if got := binary.LittleEndian.Uint64(r[o:]); got != v {
							fail(fmt.Errorf("page %d offset %d: read %#x through the mapping at %#x, wrote %#x through the one at %#x", p, o, got, addr(r), v, addr(w)))
							return
						}
					}
				}
			}
		}()
	}
	// Readers: stable pages read the same through every slice.
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				lim := int(stable.Load())
				for _, s := range snapshot() {
					for c := 0; c < min(len(s), lim); c += chunk {
						for o := c; o < c+page; o++ {
							if s[o] != stableByte(o) {
								fail(fmt.Errorf("stable byte %d through the mapping at %#x: %#x, want %#x", o, addr(s), s[o], stableByte(o)))
								return
							}
						}
					}
				}
			}
		}()
	}
	for size := chunk; size < final && !stop.Load(); size += chunk {
		if err := m.Grow(int64(size + chunk)); err != nil {
			fail(err)
			break
		}
		writeStable(size, size+chunk)
		mu.Lock()
		slices = append(slices, m.Bytes())
		mu.Unlock()
	}
	stop.Store(true)
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}

	maps := mappingsOf(m)
	if len(maps) < 4 {
		t.Fatalf("%d mappings after growing to %d bytes from a first reserve of %d, want several", len(maps), m.Size(), HugePageSize)
	}
	for _, mp := range maps {
		if addr(mp)%HugePageSize != 0 {
			t.Fatalf("mapping at %#x is not aligned to %d: file offsets and addresses are not congruent", addr(mp), HugePageSize)
		}
	}
	if n := m.Reserved(); n != int64(len(maps[len(maps)-1])) || addr(m.Bytes()) != addr(maps[len(maps)-1]) {
		t.Fatalf("Bytes and Reserved (%d) are not the newest mapping", n)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != m.Size() {
		t.Fatalf("file is %d bytes, Size %d", len(got), m.Size())
	}
	for _, s := range snapshot() {
		if !bytes.Equal(s, got[:len(s)]) {
			t.Fatalf("the slice at %#x (%d bytes) differs from the file", addr(s), len(s))
		}
	}
	for _, mp := range maps {
		n := min(len(mp), len(got))
		if !bytes.Equal(mp[:n], got[:n]) {
			t.Fatalf("the mapping at %#x differs from the file", addr(mp))
		}
	}
	for _, own := range written {
		for p, v := range own {
			if g := binary.LittleEndian.Uint64(got[p*page:]); g != v {
				t.Fatalf("page %d holds %#x in the file, last written %#x", p, g, v)
			}
		}
	}
}

// TestSyncPopulateAcrossMappings: stores through an old mapping are kept by Populate
// (which works on the newest), seen by pread, and SyncRange over them succeeds.
func TestSyncPopulateAcrossMappings(t *testing.T) {
	m, path := openTemp(t, Options{FirstReserve: HugePageSize, Chunk: 1 << 20})
	if err := m.Grow(1 << 20); err != nil {
		t.Fatal(err)
	}
	old := m.Bytes()
	if err := m.Grow(3 << 20); err != nil {
		t.Fatal(err)
	}
	if addr(m.Bytes()) == addr(old) {
		t.Fatal("growing past the first reserve did not map a new range")
	}
	copy(old[4096:], "through the old mapping")
	if err := m.Populate(0, 3<<20); err != nil && !errors.Is(err, ErrNoPopulate) {
		t.Fatal(err)
	}
	if string(m.Bytes()[4096:4096+23]) != "through the old mapping" {
		t.Fatal("the newest mapping does not see a store through the old one")
	}
	copy(m.Bytes()[8192:], "through the new mapping")
	if string(old[8192:8192+23]) != "through the new mapping" {
		t.Fatal("the old mapping does not see a store through the new one")
	}
	if err := m.SyncRange(0, 3<<20); err != nil {
		t.Fatal(err)
	}
	if err := m.StartWriteback(0, 3<<20); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[4096:4096+23]) != "through the old mapping" || string(got[8192:8192+23]) != "through the new mapping" {
		t.Fatal("pread does not see the stores")
	}
}

// vmFlags returns the VmFlags of the mapping that starts at a, from /proc/self/smaps,
// or nil if no mapping starts there.
func vmFlags(t *testing.T, a uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("cannot read /proc/self/smaps: %v", err)
	}
	defer f.Close()
	head := fmt.Sprintf("%x-", a)
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, head) {
			in = true
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.Fields(line)[1:]
		}
	}
	return nil
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// TestEveryMappingCarriesTheHugePageAdvice: the advice given at Open or by SetHugePages
// is on every mapping, older and newer, and Close unmaps them all.
func TestEveryMappingCarriesTheHugePageAdvice(t *testing.T) {
	m, _ := openTemp(t, Options{FirstReserve: HugePageSize, Chunk: 1 << 20, HugePages: true})
	steps := []struct {
		what string
		do   func() error
		flag string // what every mapping's VmFlags must hold afterwards
		maps int
	}{
		{"Open", func() error { return nil }, "hg", 1},
		{"Grow past the first reserve", func() error { return m.Grow(3 << 20) }, "hg", 2},
		{"SetHugePages(false)", func() error { return m.SetHugePages(false) }, "nh", 2},
		{"Grow past the second", func() error { return m.Grow(13 << 20) }, "nh", 3},
		{"SetHugePages(true)", func() error { return m.SetHugePages(true) }, "hg", 3},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		maps := mappingsOf(m)
		if len(maps) != st.maps {
			t.Fatalf("after %s: %d mappings, want %d", st.what, len(maps), st.maps)
		}
		for i, mp := range maps {
			if fl := vmFlags(t, addr(mp)); !hasFlag(fl, st.flag) {
				t.Fatalf("after %s: mapping %d of %d at %#x has flags %v, want %q", st.what, i+1, len(maps), addr(mp), fl, st.flag)
			}
		}
	}
	maps := mappingsOf(m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, mp := range maps {
		if fl := vmFlags(t, addr(mp)); fl != nil {
			t.Fatalf("the mapping at %#x is still mapped after Close", addr(mp))
		}
	}
	if err := m.SetHugePages(true); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetHugePages after Close: %v, want ErrClosed", err)
	}
}

// TestAddressSpaceFollowsTheFile: mappings sum to at most about four times what the file
// holds (plus the first reserve), not to MaxSize, and the first reserve is cut at MaxSize.
func TestAddressSpaceFollowsTheFile(t *testing.T) {
	const chunk = 256 << 10
	m, _ := openTemp(t, Options{FirstReserve: HugePageSize, Chunk: chunk, MaxSize: 1 << 40})
	for size := int64(chunk); size <= 100<<20; size += chunk {
		if err := m.Grow(size); err != nil {
			t.Fatal(err)
		}
		var sum int64
		maps := mappingsOf(m)
		for _, mp := range maps {
			sum += int64(len(mp))
		}
		// Each mapping is twice the size that outgrew the one before, rounded to a huge page.
		if bound := 4*size + int64(len(maps))*HugePageSize + HugePageSize; sum > bound {
			t.Fatalf("file of %d bytes: %d mappings span %d bytes, more than %d", size, len(maps), sum, bound)
		}
	}
	small, _ := openTemp(t, Options{MaxSize: 3_000_000})
	if small.Reserved() != 4<<20 {
		t.Fatalf("a MaxSize of 3,000,000 reserved %d bytes, want 4 MiB (MaxSize rounded up to a huge page)", small.Reserved())
	}
	big, _ := openTemp(t, Options{})
	if big.Reserved() != DefaultFirstReserve {
		t.Fatalf("an empty file reserved %d bytes, want DefaultFirstReserve", big.Reserved())
	}
}

// TestThousandsOfFilesOpen: 3,000 writable Files with the default MaxSize (1 TiB) are
// open at once in one process; one reserve per MaxSize would need 3,000 TiB of the
// 128 TiB of user address space.
func TestThousandsOfFilesOpen(t *testing.T) {
	const n = 3000
	dir := t.TempDir()
	files := make([]*File, 0, n)
	defer func() {
		for _, m := range files {
			m.Close()
		}
	}()
	for i := range n {
		m, err := Open(filepath.Join(dir, fmt.Sprint(i)), Options{Create: true, Chunk: 4096})
		if err != nil {
			t.Fatalf("file %d of %d: %v", i+1, n, err)
		}
		files = append(files, m)
		if err := m.Grow(8); err != nil {
			t.Fatal(err)
		}
		binary.LittleEndian.PutUint64(m.Bytes(), uint64(i))
	}
	for i, m := range files {
		if got := binary.LittleEndian.Uint64(m.Bytes()); got != uint64(i) {
			t.Fatalf("file %d holds %d", i, got)
		}
	}
}

// TestTightAddressSpaceMapsWhatIsNeeded: when the address space has no room for twice the
// size (RLIMIT_AS, in a child process), Grow maps just what the file needs; when it has
// no room for that either, Grow fails with ENOMEM and the file keeps its size and bytes.
func TestTightAddressSpaceMapsWhatIsNeeded(t *testing.T) {
	if dir := os.Getenv("MMAPFILE_AS_DIR"); dir != "" {
		tightChild(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTightAddressSpaceMapsWhatIsNeeded$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "MMAPFILE_AS_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tight-child-ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func tightChild(t *testing.T, dir string) {
	const gib = 1 << 30
	m, err := Open(filepath.Join(dir, "f"), Options{Create: true, FirstReserve: HugePageSize, Chunk: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Grow(1 << 20); err != nil {
		t.Fatal(err)
	}
	copy(m.Bytes(), "kept")
	// Leave 3 GiB of address space beyond what the process uses now: room for a 2 GiB
	// mapping, not for a 4 GiB one.
	vm := vmSize(t)
	lim := unix.Rlimit{Cur: uint64(vm + 3*gib), Max: uint64(vm + 3*gib)}
	if err := unix.Setrlimit(unix.RLIMIT_AS, &lim); err != nil {
		t.Skipf("setrlimit RLIMIT_AS: %v", err)
	}
	if err := m.Grow(2 * gib); err != nil {
		t.Fatalf("Grow to 2 GiB with room for it: %v", err)
	}
	if m.Reserved() != 2*gib {
		t.Fatalf("reserved %d bytes, want exactly the 2 GiB needed (no room for twice that)", m.Reserved())
	}
	if err := m.Grow(8 * gib); !errors.Is(err, syscall.ENOMEM) {
		t.Fatalf("Grow to 8 GiB without room: %v, want ENOMEM", err)
	}
	if m.Size() != 2*gib || string(m.Bytes()[:4]) != "kept" {
		t.Fatalf("after the failed Grow: size %d, bytes %q", m.Size(), m.Bytes()[:4])
	}
	if st, err := os.Stat(m.Name()); err != nil || st.Size() != 2*gib {
		t.Fatalf("file size after the failed Grow: %v %v", st, err)
	}
	fmt.Println("tight-child-ok")
}

// vmSize returns the process's virtual size (VmSize in /proc/self/status), in bytes.
func vmSize(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("cannot read /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmSize: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	t.Skip("no VmSize in /proc/self/status")
	return 0
}
