//go:build linux && (amd64 || arm64 || riscv64 || loong64 || s390x)

package engine

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ckp-go/ckp/dirty"
	"github.com/ckp-go/ckp/internal/kwrite"
)

// Differential saves against the kernel's real ways of writing memory: the kernel
// writing through a long-term pin (io_uring READ_FIXED), through the page tables
// (read(2), O_DIRECT), and memory remapped or discarded under a tracked region. Every
// restore must hand back the bytes the region held at the save.

// kernelRegion maps n bytes of anonymous private memory filled with random bytes,
// unmapped after the test (and after the File the test opens after it is closed).
func kernelRegion(t *testing.T, n int, seed uint64) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < n; i += 8 {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randomFile writes n random bytes to a file in dir and opens it (with extra flags).
func randomFile(t *testing.T, dir string, n int, seed uint64, flags int) *os.File {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	name := filepath.Join(dir, fmt.Sprintf("src%d", seed))
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(name, os.O_RDONLY|flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// saveExact saves c and checks, by restoring the new version into the region, that it
// holds what the region held: it returns that version's number.
func saveExact(t *testing.T, c *Checkpoint, region []byte, what string) int {
	t.Helper()
	apiNoErr(t, c.Save(), what+": Save")
	want := bytes.Clone(region)
	clear(region)
	apiNoErr(t, c.Restore(0), what+": Restore")
	apiSame(t, region, want, what)
	vs := c.Versions()
	return vs[len(vs)-1].Version
}

// closeRing closes r and waits until the process holds no pinned memory, so that the
// tests after this one are tracked.
func closeRing(t *testing.T, r *kwrite.Ring) {
	r.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := dirty.ReadPins()
		if err == nil && p.Pinned == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pinned memory left after closing the ring: %+v, %v", p, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func detectionOf(t *testing.T, f *File, name string) RegionDetection {
	t.Helper()
	for _, r := range must(f.Info()).Detection {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no region %q in Info().Detection", name)
	return RegionDetection{}
}

// TestIOURingFixedBuffers is issue 19's scenario: a region registered as an io_uring
// fixed buffer, saved differentially, written by READ_FIXED (through the pin: no fault,
// nothing reported), saved again and restored: the bytes read must come back. With the
// buffer registered before the region is, with the engine's own choices ("default") and
// with a region the engine would track ("would track": the pin must be why it is not),
// and while the region is tracked.
func TestIOURingFixedBuffers(t *testing.T) {
	diffTracking(t)
	const n = 1 << 20
	for _, tc := range []struct {
		name          string
		first, always bool // register the buffer first; track whenever tracking is trusted
	}{
		{"registered first, default", true, false},
		{"registered first, would track", true, true},
		{"registered while tracked", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			region := kernelRegion(t, n, 1)
			src := randomFile(t, dir, 64<<10, 7, 0)
			ring := kwrite.Require(t)
			defer closeRing(t, ring)
			if tc.first {
				apiNoErr(t, ring.RegisterBuffers(region), "IORING_REGISTER_BUFFERS")
			}
			f := apiOpen(t, filepath.Join(dir, "u.ckp"), &Options{Differential: true, KeepVersions: 3, trackAlways: tc.always})
			c := apiReg(t, f, "buf", region)
			saveExact(t, c, region, "first save")
			region[100]++
			saveExact(t, c, region, "sparse save")
			if !tc.first {
				if r := detectionOf(t, f, "buf"); !r.Tracked {
					t.Fatalf("not tracked before the pin: %+v", r)
				}
				apiNoErr(t, ring.RegisterBuffers(region), "IORING_REGISTER_BUFFERS")
				region[5000]++
				saveExact(t, c, region, "save after the pin")
			}
			for i := 0; i < 3; i++ {
				off := 4096 + i*(200<<10) + 64 // not page-aligned: 17 pages
				if k, err := ring.ReadFixed(src, 0, region[off:off+64<<10], 0); err != nil || k != 64<<10 {
					t.Fatalf("READ_FIXED: %d, %v", k, err)
				}
				saveExact(t, c, region, fmt.Sprintf("save after READ_FIXED %d", i))
			}
			r := detectionOf(t, f, "buf")
			if r.Tracked || tc.always && !strings.Contains(r.Why, "VmPin") {
				t.Errorf("Detection while pinned: %+v, want hashed because of the pin", r)
			}
			if fi := must(f.Info()); fi.TrackingMisses != 0 {
				t.Errorf("the pin check should have kept the scrub from finding anything: %d misses", fi.TrackingMisses)
			}
			// The pin gone, writes are tracked (and trusted) again.
			apiNoErr(t, ring.UnregisterBuffers(), "IORING_UNREGISTER_BUFFERS")
			for i := 0; i < 3; i++ {
				region[i*9000]++
				saveExact(t, c, region, "save after unpinning")
			}
			if r := detectionOf(t, f, "buf"); tc.always && (!r.Tracked || r.Why != "") {
				t.Errorf("after unpinning: %+v", r)
			}
		})
	}
}

// TestKernelWritesReported: the kernel writing a tracked region through its page tables
// (read(2) from a pipe and from a file, O_DIRECT reads) is reported as any write is:
// every version restores exact, each delta holds the blocks read into, and the scrub
// finds nothing.
func TestKernelWritesReported(t *testing.T) {
	diffTracking(t)
	const n = 2 << 20
	dir := t.TempDir()
	region := kernelRegion(t, n, 3)
	f := apiOpen(t, filepath.Join(dir, "k.ckp"), &Options{Differential: true, trackAlways: true, ScrubSaves: 4})
	c := apiReg(t, f, "r", region)
	saveExact(t, c, region, "first save")
	saveExact(t, c, region, "second save")
	direct := randomFile(t, dir, 1<<20, 11, syscall.O_DIRECT)
	buffered := randomFile(t, dir, 1<<20, 12, 0)
	reads := []struct {
		name string
		read func(dst []byte) error
	}{
		{"pipe", func(dst []byte) error { return kwrite.PipeRead(dst, bytes.Repeat([]byte{0xa5, 0x5a, 7}, len(dst)/3+1)) }},
		{"file", func(dst []byte) error {
			_, err := syscall.Pread(int(buffered.Fd()), dst, 8192)
			return err
		}},
		{"O_DIRECT", func(dst []byte) error {
			k, err := syscall.Pread(int(direct.Fd()), dst, 4096)
			if errors.Is(err, syscall.EINVAL) {
				t.Skipf("O_DIRECT refused here: %v", err)
			}
			if err == nil && k != len(dst) {
				err = fmt.Errorf("O_DIRECT read %d of %d bytes", k, len(dst))
			}
			return err
		}},
	}
	for round := 0; round < 2; round++ {
		for i, rd := range reads {
			off := (1+i*3+round*11)*4096*7 + 123
			l := 3*4096 + 1000
			if rd.name == "O_DIRECT" {
				off &^= 4095 // aligned buffer, offset and length
				l = 3 * 4096
			}
			apiNoErr(t, rd.read(region[off:off+l]), rd.name)
			saveExact(t, c, region, rd.name)
			vs := c.Versions()
			v := vs[len(vs)-1]
			blocks := float64((off+l-1)/4096-off/4096+1) / float64(n/4096)
			if !v.Delta || v.Changed > blocks+1e-9 {
				t.Errorf("%s: version %+v, want a delta of at most %.4f of the blocks", rd.name, v, blocks)
			}
		}
	}
	if fi := must(f.Info()); fi.TrackingMisses != 0 || fi.Tracked != 1 {
		t.Fatalf("after kernel writes: %d misses, %d tracked (%+v)", fi.TrackingMisses, fi.Tracked, fi.Detection)
	}
}

// TestRemappedRegion: pages of a tracked region replaced under it (mremap of other
// memory onto it, mremap within it, MADV_DONTNEED) are found, and every version
// restores exact.
func TestRemappedRegion(t *testing.T) {
	diffTracking(t)
	const n = 1 << 20
	ps := os.Getpagesize()
	for _, how := range []string{"mremap onto", "mremap within", "MADV_DONTNEED"} {
		t.Run(how, func(t *testing.T) {
			region := kernelRegion(t, n, 5)
			f := apiOpen(t, filepath.Join(t.TempDir(), "m.ckp"), &Options{Differential: true, trackAlways: true})
			c := apiReg(t, f, "r", region)
			saveExact(t, c, region, "first save")
			for round := 0; round < 3; round++ {
				region[round*ps*3+5]++
				saveExact(t, c, region, "sparse save")
				at := (40 + round*17) * ps
				switch how {
				case "mremap onto":
					// Other memory, with other bytes, moved onto 4 pages of the region.
					other, err := unix.Mmap(-1, 0, 4*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
					apiNoErr(t, err, "mmap")
					for i := range other {
						other[i] = byte(i*13 + round)
					}
					_, _, e := unix.Syscall6(unix.SYS_MREMAP, uintptr(unsafe.Pointer(&other[0])), uintptr(4*ps), uintptr(4*ps),
						unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, uintptr(unsafe.Pointer(&region[at])), 0)
					if e != 0 {
						t.Fatalf("mremap: %v", e)
					}
				case "mremap within":
					from := (100 + round*31) * ps
					_, _, e := unix.Syscall6(unix.SYS_MREMAP, uintptr(unsafe.Pointer(&region[from])), uintptr(3*ps), uintptr(3*ps),
						unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, uintptr(unsafe.Pointer(&region[at])), 0)
					if e != 0 {
						t.Fatalf("mremap: %v", e)
					}
					// The source range is unmapped now: map it again (zeroes), as a
					// program that moved memory would.
					if _, err := unix.MmapPtr(-1, 0, unsafe.Pointer(&region[from]), uintptr(3*ps), unix.PROT_READ|unix.PROT_WRITE,
						unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED); err != nil {
						t.Fatalf("mmap: %v", err)
					}
				case "MADV_DONTNEED":
					apiNoErr(t, unix.Madvise(region[at:at+5*ps], unix.MADV_DONTNEED), "madvise")
				}
				saveExact(t, c, region, fmt.Sprintf("%s, round %d", how, round))
				region[round*ps*5+77]++
				saveExact(t, c, region, fmt.Sprintf("after %s, round %d", how, round))
			}
			if fi := must(f.Info()); fi.TrackingMisses != 0 {
				t.Fatalf("%s: %d misses (%+v)", how, fi.TrackingMisses, fi.Detection)
			}
		})
	}
}

// TestScrubCatchesHiddenWrite hides writes from the tracker and from the pin check
// alike, by a means the kernel allows: an io_uring ring set up by another process (this
// test's parent), on which the child registers its region as a fixed buffer. The pin is
// charged to the parent (the child's VmPin stays 0), and READ_FIXED writes the child's
// region without a fault. The scrub must find the write within ScrubSaves tracked
// saves; the version of that save and every later one restore exact; the region is
// hashed from then on; the miss is counted in Info and in the SESSION record.
func TestScrubCatchesHiddenWrite(t *testing.T) {
	if os.Getenv("CKP_SCRUB_CHILD") != "" {
		scrubChild(t)
		return
	}
	diffTracking(t)
	ring := kwrite.Require(t)
	defer closeRing(t, ring)
	fd, params := ring.Shared()
	cmd := exec.Command(os.Args[0], "-test.run=^TestScrubCatchesHiddenWrite$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "CKP_SCRUB_CHILD="+t.TempDir(), "CKP_SCRUB_PARAMS="+hex.EncodeToString(params))
	dup, err := unix.Dup(fd) // the *os.File owns (and closes) its descriptor; the ring keeps its own
	apiNoErr(t, err, "dup")
	ringFile := os.NewFile(uintptr(dup), "ring")
	defer ringFile.Close()
	cmd.ExtraFiles = []*os.File{ringFile}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "scrub:") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

func scrubChild(t *testing.T) {
	params, err := hex.DecodeString(os.Getenv("CKP_SCRUB_PARAMS"))
	apiNoErr(t, err, "params")
	ring, err := kwrite.FromShared(3, params)
	apiNoErr(t, err, "the parent's ring")
	const n, bound = 1 << 20, 8
	region := kernelRegion(t, n, 9)
	path := filepath.Join(os.Getenv("CKP_SCRUB_CHILD"), "s.ckp")
	f := apiOpen(t, path, &Options{Differential: true, ScrubSaves: bound, trackAlways: true})
	c := apiReg(t, f, "r", region)
	apiNoErr(t, ring.RegisterBuffers(region), "IORING_REGISTER_BUFFERS on the parent's ring")
	if p, err := dirty.ReadPins(); err != nil || p.Why() != "" {
		t.Fatalf("the pin is charged to this process (%+v, %v): the test cannot hide it", p, err)
	}
	src := randomFile(t, t.TempDir(), 64<<10, 13, 0)
	saveExact(t, c, region, "first save")
	for i := 0; i < 3; i++ {
		region[i*4096*5+1]++
		saveExact(t, c, region, "sparse save")
	}
	// A restore lifts the protection of every page (the next save takes them all as
	// written): one save more, so that the hidden write meets a tracker armed by a scan.
	region[77]++
	apiNoErr(t, c.Save(), "Save")
	if r := detectionOf(t, f, "r"); !r.Tracked || r.Why != "" {
		t.Fatalf("not tracked and trusted before the hidden write: %+v", r)
	}
	want := map[int][]byte{} // versions and what the region held at each
	vs0 := c.Versions()
	hiddenBefore := vs0[len(vs0)-1].Version // the last version saved before the hidden write
	if k, err := ring.ReadFixed(src, 0, region[200<<10:264<<10], 0); err != nil || k != 64<<10 {
		t.Fatalf("READ_FIXED: %d, %v", k, err)
	}
	caught := -1
	for i := 0; i < bound+2 && caught < 0; i++ {
		region[(i%7)*4096*3+9]++ // a reported write too
		apiNoErr(t, c.Save(), "Save")
		vs := c.Versions()
		v := vs[len(vs)-1].Version
		want[v] = bytes.Clone(region)
		if must(f.Info()).TrackingMisses > 0 {
			caught = i
		}
	}
	if caught < 0 || caught >= bound {
		t.Fatalf("the scrub found the hidden write after %d saves, bound %d", caught+1, bound)
	}
	t.Logf("scrub: the hidden write was found by the %d. save after it (bound %d)", caught+1, bound)
	// Every version from the one that found the write on restores exact; so do those
	// saved from then on, hashed, hidden writes and all.
	fi := must(f.Info())
	r := detectionOf(t, f, "r")
	vs := c.Versions()
	found := vs[len(vs)-1].Version
	var from, to int
	if i := strings.Index(r.Why, "; versions "); i >= 0 {
		fmt.Sscanf(r.Why[i:], "; versions %d to %d may lack it", &from, &to)
	}
	if fi.TrackingMisses != 1 || r.Tracked || r.Misses != 1 || !strings.Contains(r.Why, fmt.Sprintf("found by the scrub at version %d", found)) ||
		from < 1 || from > hiddenBefore+1 || to != found-1 {
		t.Fatalf("after the miss (found at %d, the write after %d): %d misses, %+v", found, hiddenBefore, fi.TrackingMisses, r)
	}
	for i := 0; i < 4; i++ {
		if k, err := ring.ReadFixed(src, 0, region[(500+i*40)<<10:(564+i*40)<<10], 0); err != nil || k != 64<<10 {
			t.Fatalf("READ_FIXED: %d, %v", k, err)
		}
		apiNoErr(t, c.Save(), "Save")
		vs := c.Versions()
		want[vs[len(vs)-1].Version] = bytes.Clone(region)
	}
	for v, b := range want {
		got, _, err := f.ReadVersion("r", v)
		apiNoErr(t, err, "ReadVersion")
		switch {
		case v >= found:
			apiSame(t, got, b, fmt.Sprintf("version %d (the miss found at %d)", v, found))
		case !bytes.Equal(got, b):
			t.Logf("scrub: version %d, saved between the hidden write and its discovery, lacks it", v)
		}
	}
	if r := detectionOf(t, f, "r"); r.Tracked {
		t.Fatalf("tracked again after a miss: %+v", r)
	}
	// Readers learn of the miss from the SESSION record: while the writer runs, and
	// after it compacted the index and closed.
	reader := func(when string) {
		g := apiOpen(t, path, &Options{ReadOnly: true})
		defer g.Close()
		if w := must(g.Info()).LastWriter; w == nil || w.TrackingMisses != 1 {
			t.Fatalf("%s: reader's LastWriter: %+v", when, w)
		}
	}
	reader("writer open")
	f.syncMu.Lock()
	f.mu.Lock()
	err = f.compact()
	f.mu.Unlock()
	f.syncMu.Unlock()
	apiNoErr(t, err, "compact")
	apiNoErr(t, f.Close(), "Close")
	reader("after compaction and Close")
	ring.UnregisterBuffers()
}
