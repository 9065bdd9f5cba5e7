//go:build linux && (amd64 || arm64 || riscv64 || loong64 || s390x)

package dirty

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckp-go/ckp/internal/kwrite"
)

// pattern returns byte offsets of region to write in one round.
type pattern func(r *rand.Rand, region []byte) []int

// pagesPattern writes one random byte in a fraction of the region's pages.
func pagesPattern(frac float64) pattern {
	return func(r *rand.Rand, region []byte) []int {
		var offs []int
		ps := int(pageSize)
		for p := 0; p*ps < len(region)+ps; p++ {
			if r.Float64() < frac {
				lo := max(0, p*ps-int(addrOf(region)%pageSize))
				hi := min(len(region), lo+ps)
				if lo < hi {
					offs = append(offs, lo+r.IntN(hi-lo))
				}
			}
		}
		return offs
	}
}

var patterns = []struct {
	name string
	p    pattern
}{
	{"none", func(*rand.Rand, []byte) []int { return nil }},
	{"sparse", pagesPattern(0.01)},
	{"half", pagesPattern(0.5)},
	{"dense", pagesPattern(0.95)},
	{"every byte", func(_ *rand.Rand, region []byte) []int {
		offs := make([]int, len(region))
		for i := range offs {
			offs[i] = i
		}
		return offs
	}},
	{"one byte per page", pagesPattern(1)},
	{"first byte", func(*rand.Rand, []byte) []int { return []int{0} }},
	{"last byte", func(_ *rand.Rand, region []byte) []int { return []int{len(region) - 1} }},
	{"page edges", func(r *rand.Rand, region []byte) []int {
		// The last byte of a page and the first of the next: two pages.
		var offs []int
		for off := int(-addrOf(region) & (pageSize - 1)); off < len(region); off += int(pageSize) {
			if off > 0 && r.IntN(4) == 0 {
				offs = append(offs, off-1, off)
			}
		}
		return offs
	}},
}

// regions are the shapes tested, carved from memory whose other bytes nobody writes, so
// that reports must be exact.
var shapes = []struct {
	name   string
	off, n int // offset from a page boundary, length
}{
	{"aligned", 0, 64 * 4096},
	{"unaligned both ends", 100, 64*4096 + 300},
	{"one byte", 4000, 1},
	{"inside one page", 10, 100},
	{"across one boundary", 4090, 20},
	{"odd pages", 4095, 7*4096 + 2},
}

var memories = []struct {
	name  string
	alloc func(t testing.TB, n int) []byte
}{
	{"heap", func(_ testing.TB, n int) []byte { return alignedHeap(n) }},
	{"mmap", mmapAnon},
}

// TestWrittenPatterns writes random patterns against a model: every report must be
// exactly the set of pages written since the previous one.
func TestWrittenPatterns(t *testing.T) {
	requireTracking(t)
	for _, mem := range memories {
		for si, sh := range shapes {
			for pi, pat := range patterns {
				t.Run(fmt.Sprintf("%s/%s/%s", mem.name, sh.name, pat.name), func(t *testing.T) {
					ps := int(pageSize)
					backing := mem.alloc(t, sh.off+sh.n+ps)
					region := backing[sh.off : sh.off+sh.n]
					tr := mustTrack(t, region)
					if tr.Len() != len(region) || tr.Pages() != pageOf(region, len(region)-1)+1 {
						t.Fatalf("Len %d Pages %d for %d bytes at offset %d", tr.Len(), tr.Pages(), len(region), sh.off)
					}
					r := rand.New(rand.NewPCG(uint64(si), uint64(pi)))
					for round := range 4 {
						want := make(pageSet, tr.Pages())
						for _, off := range pat.p(r, region) {
							region[off]++
							want[pageOf(region, off)] = true
						}
						if got := written(t, tr, region); !slices.Equal(got, want) {
							t.Fatalf("round %d: reported %v, wrote %v", round, got, want)
						}
					}
					if got := written(t, tr, region); got.count() != 0 {
						t.Fatalf("nothing written, reported %v", got)
					}
					if err := tr.Close(); err != nil {
						t.Fatal(err)
					}
					checkRegistered(t, addrOf(backing), addrOf(backing)+uintptr(len(backing)))
				})
			}
		}
	}
}

// TestKernelWrites checks that data the kernel copies into the region through its page
// tables is reported: read(2) from a pipe, read from a file, an O_DIRECT read (the
// pages are pinned for the transfer), process_vm_writev, a write to /proc/self/mem.
func TestKernelWrites(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	data := make([]byte, 5*ps)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		aligned bool // dst and its length page-aligned
		read    func(dst []byte) error
	}{
		{"pipe", false, func(dst []byte) error { return kwrite.PipeRead(dst, data) }},
		{"file", false, func(dst []byte) error {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.ReadFull(f, dst)
			return err
		}},
		{"O_DIRECT", true, func(dst []byte) error {
			f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_DIRECT, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			n, err := syscall.Pread(int(f.Fd()), dst, 0)
			if errors.Is(err, syscall.EINVAL) {
				t.Skipf("O_DIRECT refused here: %v", err)
			}
			if err == nil && n != len(dst) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}},
		{"process_vm_writev", false, func(dst []byte) error {
			local := []unix.Iovec{{Base: &data[0]}}
			local[0].SetLen(len(dst))
			remote := []unix.RemoteIovec{{Base: addrOf(dst), Len: len(dst)}}
			n, err := unix.ProcessVMWritev(os.Getpid(), local, remote, 0)
			if err == nil && n != len(dst) {
				err = io.ErrShortWrite
			}
			return err
		}},
		{"/proc/self/mem", false, func(dst []byte) error {
			f, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(data[:len(dst)], int64(addrOf(dst)))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			region := alignedHeap(16 * ps)
			tr := mustTrack(t, region)
			off, n := ps+123, 3*ps
			if tc.aligned {
				off = ps
			}
			if err := tc.read(region[off : off+n]); err != nil {
				t.Fatal(err)
			}
			want := make(pageSet, tr.Pages())
			for p := pageOf(region, off); p <= pageOf(region, off+n-1); p++ {
				want[p] = true
			}
			if got := written(t, tr, region); !slices.Equal(got, want) {
				t.Fatalf("kernel wrote %v, reported %v", want, got)
			}
			if string(region[off:off+n]) != string(data[:n]) {
				t.Fatal("read data differs")
			}
		})
	}
}

// TestConcurrentWritersQuiescent: goroutines write, record their pages, and stop at a
// sync point before each Written, which must report exactly the union.
func TestConcurrentWritersQuiescent(t *testing.T) {
	requireTracking(t)
	const writers, pages, rounds = 4, 512, 20
	ps := int(pageSize)
	region := alignedHeap(pages * ps)
	tr := mustTrack(t, region)
	for round := range rounds {
		wrote := make([][]int, writers)
		var wg sync.WaitGroup
		for g := range writers {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for range r.IntN(pages / 4) {
					p := r.IntN(pages)
					region[p*ps+g]++ // each goroutine its own bytes: no data race
					wrote[g] = append(wrote[g], p)
				}
			})
		}
		wg.Wait()
		want := make(pageSet, pages)
		for _, ps := range wrote {
			for _, p := range ps {
				want[p] = true
			}
		}
		if got := written(t, tr, region); !slices.Equal(got, want) {
			t.Fatalf("round %d: reported %v, wrote %v", round, got, want)
		}
	}
}

// TestConcurrentWritersRacing: goroutines write while Written runs. A write that was
// published before a Written call began must be reported by that call at the latest, and
// not before the call running when the writer published its previous write.
func TestConcurrentWritersRacing(t *testing.T) {
	requireTracking(t)
	const writers, pages, maxWrites, maxCalls = 3, 1024, 300000, 5000
	ps := int(pageSize)
	region := alignedHeap(pages * ps)
	tr := mustTrack(t, region)

	type wlog struct {
		pages []int32
		n     atomic.Int64
	}
	logs := make([]*wlog, writers)
	var running atomic.Int32
	var wg sync.WaitGroup
	running.Store(writers)
	for g := range writers {
		l := &wlog{pages: make([]int32, maxWrites)}
		logs[g] = l
		wg.Go(func() {
			defer running.Add(-1)
			r := rand.New(rand.NewPCG(7, uint64(g)))
			for k := range maxWrites {
				p := r.IntN(pages)
				region[p*ps+g] = byte(k)
				l.pages[k] = int32(p)
				l.n.Store(int64(k + 1))
				if k%16 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	var snaps [][]int64 // snaps[i][g]: writes of g published before call i
	var reports []pageSet
	call := func() {
		s := make([]int64, writers)
		for g, l := range logs {
			s[g] = l.n.Load()
		}
		snaps = append(snaps, s)
		reports = append(reports, written(t, tr, region))
	}
	for len(reports) < maxCalls && running.Load() > 0 {
		call()
	}
	wg.Wait()
	call()

	racing := 0 // calls that ran while writes went on
	for i := 1; i < len(snaps); i++ {
		if slices.Compare(snaps[i], snaps[i-1]) != 0 {
			racing++
		}
	}
	for g, l := range logs {
		i, prev := 0, 0 // i: the first call whose snapshot saw write k
		for k := range int64(maxWrites) {
			for snaps[i][g] <= k {
				i++
			}
			// Write k came after write k-1 was published, which the snapshot of call
			// prev had not seen: so not before call prev-1 began.
			from, found := max(0, prev-1), false
			for j := from; j <= i && !found; j++ {
				found = reports[j][l.pages[k]]
			}
			if !found {
				t.Fatalf("writer %d's write %d (page %d), published before call %d, not reported by calls %d..%d", g, k, l.pages[k], i, from, i)
			}
			prev = i
		}
	}
	t.Logf("%d writes, %d Written calls, %d of them racing with writers", writers*maxWrites, len(reports), racing)
	if racing < 10 {
		t.Fatalf("only %d calls raced with the writers", racing)
	}
}

// TestGC runs the collector and returns memory to the OS between writes.
func TestGC(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	region := alignedHeap(256 * ps)
	tr := mustTrack(t, region)
	for round := range 5 {
		want := make(pageSet, tr.Pages())
		for i := range 10 {
			p := (round*37 + i*11) % 256
			region[p*ps+i]++
			want[p] = true
			sink = append(sink, make([]byte, 1<<16))
		}
		sink = nil
		runtime.GC()
		debug.FreeOSMemory()
		for i := range 5 {
			p := (round*53 + i*29) % 256
			region[p*ps+100]++
			want[p] = true
		}
		runtime.GC()
		if got := written(t, tr, region); !slices.Equal(got, want) {
			t.Fatalf("round %d: reported %v, wrote %v", round, got, want)
		}
	}
}

// sink keeps the garbage of TestGC from being optimised away.
var sink [][]byte

// TestChildHelper is the child process of the exec tests.
func TestChildHelper(t *testing.T) {
	if os.Getenv("CKP_DIRTY_CHILD") != "1" {
		t.Skip("child process of TestExec and TestUnprivileged")
	}
	if err := Available(); err != nil {
		fmt.Printf("child unavailable: %v\n", err)
		return
	}
	region := alignedHeap(64 * int(pageSize))
	tr, err := Track(region)
	if err != nil {
		fmt.Printf("child Track: %v\n", err)
		return
	}
	region[0], region[5*pageSize], region[63*pageSize] = 1, 1, 1
	n, err := tr.Written(nil)
	fmt.Printf("child uid %d: %d pages, %v\n", os.Getuid(), n, err)
}

func runChild(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	cmd.Args = append(cmd.Args, "-test.run=^TestChildHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "CKP_DIRTY_CHILD=1", "CKP_DIRTY_REQUIRE=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return string(out)
}

// TestExec runs a child process (os/exec: clone with CLONE_VM|CLONE_VFORK, then execve)
// between writes: the parent's reports stay exact, and the child can track on its own.
func TestExec(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	region := alignedHeap(128 * ps)
	tr := mustTrack(t, region)
	for round := range 3 {
		want := make(pageSet, tr.Pages())
		if round != 1 {
			region[3*ps]++
			want[3] = true
		}
		out := runChild(t, exec.Command(os.Args[0]))
		if !strings.Contains(out, ": 3 pages, <nil>") {
			t.Fatalf("child did not track:\n%s", out)
		}
		if round != 1 {
			region[100*ps+5]++
			want[100] = true
		}
		if got := written(t, tr, region); !slices.Equal(got, want) {
			t.Fatalf("round %d: reported %v, wrote %v", round, got, want)
		}
	}
}

// TestUnprivileged runs the child as user nobody: UFFD_USER_MODE_ONLY needs no privilege,
// whatever vm.unprivileged_userfaultfd says.
func TestUnprivileged(t *testing.T) {
	requireTracking(t)
	if os.Getuid() != 0 {
		t.Skip("not root: this run is itself the unprivileged case")
	}
	sysctl, _ := os.ReadFile("/proc/sys/vm/unprivileged_userfaultfd")
	// The test binary's directory is private to root: copy it where nobody can run it.
	dir, err := os.MkdirTemp("", "dirty-unpriv")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "dirty.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out := runChild(t, cmd)
	if !strings.Contains(out, "child uid 65534: 3 pages, <nil>") {
		t.Fatalf("unprivileged child (vm.unprivileged_userfaultfd = %s) did not track:\n%s", strings.TrimSpace(string(sysctl)), out)
	}
	t.Logf("tracking works as uid 65534 with vm.unprivileged_userfaultfd = %s", strings.TrimSpace(string(sysctl)))
}

// TestSharedPage tracks two regions that share a page, scanned in either order, then
// closes one: the other keeps the shared page.
func TestSharedPage(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	for _, tc := range []struct {
		name        string
		writeA      bool // a byte of a on the shared page
		writeB      bool // a byte of b on the shared page
		bFirst      bool // scan b before a
		trackWrites bool // the write comes between Track(a) and Track(b)
	}{
		{"a writes, a scans first", true, false, false, false},
		{"a writes, b scans first", true, false, true, false},
		{"b writes, a scans first", false, true, false, false},
		{"b writes, b scans first", false, true, true, false},
		{"both write", true, true, false, false},
		{"nobody writes", false, false, false, false},
		{"write before b is tracked", true, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backing := alignedHeap(4 * ps)
			lo, hi := addrOf(backing), addrOf(backing)+uintptr(4*ps)
			a := backing[:ps+100]       // pages 0, 1
			b := backing[ps+100 : 3*ps] // pages 1, 2
			ta := mustTrack(t, a)
			if tc.trackWrites {
				a[ps+50]++
			}
			tb := mustTrack(t, b)
			checkRegistered(t, lo, hi, span{lo, lo + uintptr(3*ps)})
			if tc.writeA {
				a[ps+50]++
			}
			if tc.writeB {
				b[10]++
			}
			shared := tc.writeA || tc.writeB
			var ga, gb pageSet
			if tc.bFirst {
				gb, ga = written(t, tb, b), written(t, ta, a)
			} else {
				ga, gb = written(t, ta, a), written(t, tb, b)
			}
			if !slices.Equal(ga, pageSet{false, shared}) || !slices.Equal(gb, pageSet{shared, false}) {
				t.Fatalf("shared page written: %v; a reported %v, b reported %v", shared, ga, gb)
			}
			// Nothing is handed back and forth: both are quiet now.
			if ga, gb := written(t, ta, a), written(t, tb, b); ga.count()+gb.count() != 0 {
				t.Fatalf("quiet: a reported %v, b reported %v", ga, gb)
			}
			if err := ta.Close(); err != nil {
				t.Fatal(err)
			}
			checkRegistered(t, lo, hi, span{lo + pageSize, lo + uintptr(3*ps)})
			backing[0]++    // a's page: nobody tracks it
			backing[ps+1]++ // a's byte on the shared page: b must see it
			backing[2*ps]++
			if gb := written(t, tb, b); !slices.Equal(gb, pageSet{true, true}) {
				t.Fatalf("after a closed: b reported %v", gb)
			}
			if err := tb.Close(); err != nil {
				t.Fatal(err)
			}
			checkRegistered(t, lo, hi)
		})
	}
}

// TestSharedPagesConcurrent runs one goroutine per Tracker, calling Written, on regions
// packed so that neighbours share pages, while other goroutines write them: no write may
// be lost.
func TestSharedPagesConcurrent(t *testing.T) {
	requireTracking(t)
	const count, size, writes = 8, 5000, 300
	backing := alignedHeap(count*size + int(pageSize))
	regions := make([][]byte, count)
	trs := make([]*Tracker, count)
	for i := range regions {
		regions[i] = backing[i*size : (i+1)*size]
		trs[i] = mustTrack(t, regions[i])
	}
	var stop atomic.Bool
	var scanners, writers sync.WaitGroup
	seen := make([]pageSet, count) // each owned by its scanner until scanners.Wait
	for i := range trs {
		seen[i] = make(pageSet, trs[i].Pages())
		scanners.Go(func() {
			for done := false; !done; {
				done = stop.Load() // one more scan after the writers stopped
				for p, w := range written(t, trs[i], regions[i]) {
					seen[i][p] = seen[i][p] || w
				}
			}
		})
	}
	wrote := make([][]int, count) // offsets written in region i, by writer i
	for i := range regions {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(3, uint64(i)))
			for range writes {
				off := r.IntN(size)
				regions[i][off]++
				wrote[i] = append(wrote[i], off)
				runtime.Gosched()
			}
		})
	}
	writers.Wait()
	stop.Store(true)
	scanners.Wait()
	for i, offs := range wrote {
		for _, off := range offs {
			if !seen[i][pageOf(regions[i], off)] {
				t.Fatalf("region %d: write at %d (page %d) never reported", i, off, pageOf(regions[i], off))
			}
		}
	}
}

// TestNested tracks a region and a part of it, in both orders of Close.
func TestNested(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	for _, outerFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("close outer first=%v", outerFirst), func(t *testing.T) {
			backing := alignedHeap(4 * ps)
			lo, hi := addrOf(backing), addrOf(backing)+uintptr(4*ps)
			outer, inner := backing, backing[ps:2*ps]
			to := mustTrack(t, outer)
			backing[ps]++ // written before inner is tracked: outer must still see it
			ti := mustTrack(t, inner)
			backing[3*ps]++
			if g := written(t, to, outer); !slices.Equal(g, pageSet{false, true, false, true}) {
				t.Fatalf("outer reported %v", g)
			}
			written(t, ti, inner) // may include the write from before Track
			backing[ps+7]++
			gi, go_ := written(t, ti, inner), written(t, to, outer)
			if !slices.Equal(gi, pageSet{true}) || !slices.Equal(go_, pageSet{false, true, false, false}) {
				t.Fatalf("inner reported %v, outer %v", gi, go_)
			}
			first, second := to, ti
			if !outerFirst {
				first, second = ti, to
			}
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			if outerFirst {
				checkRegistered(t, lo, hi, span{lo + pageSize, lo + 2*pageSize})
				backing[ps+8]++
				if g := written(t, ti, inner); !slices.Equal(g, pageSet{true}) {
					t.Fatalf("inner reported %v", g)
				}
			} else {
				checkRegistered(t, lo, hi, span{lo, hi})
				backing[ps+8]++
				backing[2*ps]++
				if g := written(t, to, outer); !slices.Equal(g, pageSet{false, true, true, false}) {
					t.Fatalf("outer reported %v", g)
				}
			}
			if err := second.Close(); err != nil {
				t.Fatal(err)
			}
			checkRegistered(t, lo, hi)
		})
	}
}

// TestCloseTrackAgain closes a Tracker, then tracks the same memory again.
func TestCloseTrackAgain(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	region := alignedHeap(32 * ps)
	lo, hi := addrOf(region), addrOf(region)+uintptr(len(region))
	for round := range 3 {
		tr, err := Track(region[100:])
		if err != nil {
			t.Fatal(err)
		}
		region[5*ps]++
		region[(10+round)*ps]++
		want := make(pageSet, 32)
		want[5], want[10+round] = true, true
		if got := written(t, tr, region[100:]); !slices.Equal(got, want) {
			t.Fatalf("round %d: reported %v, wrote %v", round, got, want)
		}
		region[6*ps]++ // written, never collected: Close must not mind
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		if err := tr.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := tr.Written(nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Written after Close: %v, want ErrClosed", err)
		}
		checkRegistered(t, lo, hi)
		region[7*ps]++ // unprotected now
	}
}

// TestReuseAfterClose tracks and closes many heap objects, drops them, and checks that
// the memory the allocator hands out again carries no registration.
func TestReuseAfterClose(t *testing.T) {
	requireTracking(t)
	sizes := []int{100, 3000, 5000, 40000, 1 << 20, 5<<20 + 3}
	for round := range 5 {
		var trs []*Tracker
		for _, n := range sizes {
			b := make([]byte, n)
			tr, err := Track(b)
			if err != nil {
				t.Fatal(err)
			}
			b[n/2]++
			trs = append(trs, tr)
		}
		for _, tr := range trs {
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
		}
		trs = nil
		runtime.GC()
		debug.FreeOSMemory()
		if got := wpRanges(t, 0, ^uintptr(0)); len(got) != 0 {
			t.Fatalf("round %d: registered after every Close: %v", round, got)
		}
		for _, n := range sizes { // reuse: writes must just work
			b := make([]byte, n)
			b[0], b[n-1] = 1, 1
		}
	}
}

// TestMarkAll checks that MarkAll and a panicking fn make the next report complete.
func TestMarkAll(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	region := alignedHeap(8 * ps)[10:]
	tr := mustTrack(t, region)
	all := make(pageSet, tr.Pages())
	for i := range all {
		all[i] = true
	}
	tr.MarkAll()
	if got := written(t, tr, region); !slices.Equal(got, all) {
		t.Fatalf("after MarkAll: %v", got)
	}
	if got := written(t, tr, region); got.count() != 0 {
		t.Fatalf("after MarkAll and a report: %v", got)
	}
	region[ps]++
	func() {
		defer func() { recover() }()
		tr.Written(func(int, int) { panic("caller failed") })
	}()
	if got := written(t, tr, region); !slices.Equal(got, all) {
		t.Fatalf("after a panic in fn: %v", got)
	}
}

// TestEmpty tracks an empty region.
func TestEmpty(t *testing.T) {
	requireTracking(t)
	tr := mustTrack(t, nil)
	if n, err := tr.Written(func(int, int) { t.Fatal("report for an empty region") }); n != 0 || err != nil {
		t.Fatalf("Written = %d, %v", n, err)
	}
	if tr.Pages() != 0 || tr.Len() != 0 {
		t.Fatalf("Pages %d Len %d", tr.Pages(), tr.Len())
	}
}

// TestScanFailure replaces tracked memory with a fresh mapping behind the Tracker's back:
// the scan fails, and Written reports everything.
func TestScanFailure(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	region := mmapAnon(t, 8*ps)
	tr := mustTrack(t, region)
	region[ps]++
	// A new anonymous mapping at the same place: not registered, so the scan refuses it.
	addr := addrOf(region)
	if _, _, e := unix.Syscall6(unix.SYS_MMAP, addr, uintptr(8*ps), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED, ^uintptr(0), 0); e != 0 {
		t.Fatal(e)
	}
	for i := range 2 {
		var got []int
		n, err := tr.Written(func(start, end int) { got = append(got, start, end) })
		if err == nil || n != 8 || !slices.Equal(got, []int{0, 8 * ps}) {
			t.Fatalf("call %d: Written = %d, %v, reported %v; want an error and everything", i, n, err, got)
		}
	}
	tr.Close()
}

// TestUnsupportedMemory tries memory the kernel could register but whose contents can
// change without a write through our page tables.
func TestUnsupportedMemory(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	file := filepath.Join(t.TempDir(), "map")
	if err := os.WriteFile(file, make([]byte, 4*ps), 0o600); err != nil {
		t.Fatal(err)
	}
	fileMap := func(flags int) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			f, err := os.OpenFile(file, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b, err := unix.Mmap(int(f.Fd()), 0, 4*ps, unix.PROT_READ|unix.PROT_WRITE, flags)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Munmap(b) })
			return b
		}
	}
	for _, tc := range []struct {
		name string
		mem  func(t *testing.T) []byte
	}{
		{"file MAP_SHARED", fileMap(unix.MAP_SHARED)},
		{"file MAP_PRIVATE", fileMap(unix.MAP_PRIVATE)},
		{"anonymous MAP_SHARED", func(t *testing.T) []byte {
			b, err := unix.Mmap(-1, 0, 4*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Munmap(b) })
			return b
		}},
		{"hugetlb", func(t *testing.T) []byte {
			b, err := unix.Mmap(-1, 0, 2<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_HUGETLB)
			if err != nil {
				t.Skipf("no huge pages reserved (vm.nr_hugepages): %v", err)
			}
			t.Cleanup(func() { unix.Munmap(b) })
			return b
		}},
		{"memfd", func(t *testing.T) []byte {
			fd, err := unix.MemfdCreate("dirty", unix.MFD_CLOEXEC)
			if err != nil {
				t.Skip(err)
			}
			defer unix.Close(fd)
			if err := unix.Ftruncate(fd, int64(4*ps)); err != nil {
				t.Fatal(err)
			}
			b, err := unix.Mmap(fd, 0, 4*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Munmap(b) })
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mem(t)
			b[0] = 1 // populated, as a real region would be
			if tr, err := Track(b[10:]); !errors.Is(err, ErrUnsupported) {
				if tr != nil {
					tr.Close()
				}
				t.Fatalf("Track = %v, want ErrUnsupported", err)
			}
			checkRegistered(t, addrOf(b), addrOf(b)+uintptr(len(b)))
			// The fallback for kernels without PROCMAP_QUERY agrees.
			if err := checkMaps(addrOf(b)+pageSize, addrOf(b)+2*pageSize); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("checkMaps = %v, want ErrUnsupported", err)
			}
		})
	}
	for _, mem := range memories {
		t.Run("accepts "+mem.name, func(t *testing.T) {
			b := mem.alloc(t, 4*ps)
			if err := checkMaps(addrOf(b), addrOf(b)+uintptr(len(b))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDontneed: pages discarded with MADV_DONTNEED read back as zeros; on 4 KiB pages the
// kernel reports them as written.
func TestDontneed(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	region := mmapAnon(t, 16*ps)
	unix.Madvise(region, unix.MADV_NOHUGEPAGE)
	for i := range region {
		region[i] = 1
	}
	tr := mustTrack(t, region)
	if err := unix.Madvise(region[4*ps:6*ps], unix.MADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	want := make(pageSet, 16)
	want[4], want[5] = true, true
	if got := written(t, tr, region); !slices.Equal(got, want) {
		t.Fatalf("discarded pages 4 and 5, reported %v", got)
	}
	if got := written(t, tr, region); got.count() != 0 {
		t.Fatalf("then reported %v", got)
	}
}

// TestDontneedHuge documents a kernel limit: discarding a whole write-protected huge page
// leaves no page table behind, and kernels without the fix to pagemap_scan_pte_hole
// (2026) do not report it. Tracked regions must not be discarded.
func TestDontneedHuge(t *testing.T) {
	requireTracking(t)
	const huge = 2 << 20
	m := mmapAnon(t, 2*huge)
	region := m[int(-addrOf(m)&(huge-1)):][:huge]
	if err := unix.Madvise(region, unix.MADV_HUGEPAGE); err != nil {
		t.Skip(err)
	}
	for i := range region {
		region[i] = 1
	}
	unix.Madvise(region, unix.MADV_COLLAPSE)
	if anonHuge(t, region) == 0 {
		t.Skip("no transparent huge pages here")
	}
	tr := mustTrack(t, region)
	if err := unix.Madvise(region, unix.MADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	got := written(t, tr, region)
	t.Logf("whole huge page discarded: %d of %d pages reported (kernel %s)", got.count(), len(got), release())
}

func release() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

// TestManyTrackers tracks 2,000 small regions, packed (neighbours share pages) and
// scattered (each its own mappings), and checks page-exact reports and VMA counts.
func TestManyTrackers(t *testing.T) {
	requireTracking(t)
	const count, size = 2000, 3000
	ps := int(pageSize)
	for _, tc := range []struct {
		name   string
		stride int
	}{
		{"packed", size},
		{"scattered", 3 * ps},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backing := alignedHeap(count*tc.stride + ps)
			base := addrOf(backing)
			regions := make([][]byte, count)
			for i := range regions {
				regions[i] = backing[i*tc.stride+100 : i*tc.stride+100+size]
			}
			vmas := vmaCount(t)
			start := time.Now()
			trs := make([]*Tracker, count)
			for i, r := range regions {
				trs[i] = mustTrack(t, r)
			}
			t.Logf("%d Tracks in %v; mappings %d -> %d", count, time.Since(start), vmas, vmaCount(t))
			r := rand.New(rand.NewPCG(1, 2))
			for round := range 4 {
				written := make(map[uintptr]bool) // absolute page numbers
				for range 300 {
					i := r.IntN(count)
					off := r.IntN(size)
					regions[i][off]++
					written[(addrOf(regions[i])+uintptr(off))/pageSize] = true
				}
				order := r.Perm(count) // scan in random order
				for _, i := range order {
					got := writtenPages(t, trs[i], regions[i])
					first := addrOf(regions[i]) / pageSize
					for p := range got {
						if got[p] != written[first+uintptr(p)] {
							t.Fatalf("round %d region %d page %d: reported %v, written %v", round, i, p, got[p], !got[p])
						}
					}
				}
			}
			start = time.Now()
			for _, tr := range trs {
				if err := tr.Close(); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%d Closes in %v; mappings now %d", count, time.Since(start), vmaCount(t))
			checkRegistered(t, base, base+uintptr(len(backing)))
		})
	}
}

// writtenPages is written, for use in loops.
func writtenPages(t testing.TB, tr *Tracker, region []byte) pageSet { return written(t, tr, region) }

// TestTHP tracks memory backed by transparent huge pages: a write splits the huge page's
// mapping, and the report is still the one 4 KiB page.
func TestTHP(t *testing.T) {
	requireTracking(t)
	const huge = 2 << 20
	for _, kind := range []string{"mmap", "heap"} {
		t.Run(kind, func(t *testing.T) {
			var backing []byte
			if kind == "mmap" {
				backing = mmapAnon(t, 4*huge)
			} else {
				backing = make([]byte, 4*huge)
			}
			off := int(-addrOf(backing) & (huge - 1))
			region := backing[off : off+2*huge]
			if err := unix.Madvise(region, unix.MADV_HUGEPAGE); err != nil {
				t.Skipf("MADV_HUGEPAGE: %v", err)
			}
			for i := 0; i < len(region); i += int(pageSize) {
				region[i] = 1
			}
			unix.Madvise(region, unix.MADV_COLLAPSE) // heap memory may have been 4 KiB pages already
			hugeBefore := anonHuge(t, region)
			if hugeBefore == 0 {
				t.Skip("no transparent huge pages here")
			}
			start := time.Now()
			tr := mustTrack(t, region)
			t.Logf("protected %d MiB with %d KiB of THP in %v", len(region)>>20, hugeBefore>>10, time.Since(start))
			if got := written(t, tr, region); got.count() != 0 {
				t.Fatalf("nothing written, reported %v", got)
			}
			region[5*pageSize+3]++
			region[huge+77]++
			want := make(pageSet, tr.Pages())
			want[5], want[huge/pageSize] = true, true
			if got := written(t, tr, region); !slices.Equal(got, want) {
				t.Fatalf("reported %v, wrote %v", got, want)
			}
			t.Logf("THP mapped before the writes %d KiB, after %d KiB", hugeBefore>>10, anonHuge(t, region)>>10)
		})
	}
}

// anonHuge returns the bytes of region's mapping backed by huge pages, from /proc/self/smaps.
func anonHuge(t testing.TB, region []byte) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := addrOf(region), addrOf(region)+uintptr(len(region))
	total, in := 0, false
	for line := range strings.Lines(string(b)) {
		var a, z uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &a, &z); n == 2 && !strings.HasPrefix(line, "VmFlags") {
			in = a < hi && lo < z
			continue
		}
		var kb int
		if in && strings.HasPrefix(line, "AnonHugePages:") {
			fmt.Sscanf(strings.TrimPrefix(line, "AnonHugePages:"), "%d", &kb)
			total += kb << 10
		}
	}
	return total
}

// TestRelease: after Release the whole region is reported once, writes are never lost
// (to the region or, on a shared page, to a neighbour's), and tracking resumes.
func TestRelease(t *testing.T) {
	requireTracking(t)
	ps := int(pageSize)
	backing := alignedHeap(12 * ps)
	a := backing[:4*ps+100]       // pages 0-4
	b := backing[4*ps+100 : 8*ps] // pages 4-7: page 4 is shared
	ta, tb := mustTrack(t, a), mustTrack(t, b)
	all := func(tr *Tracker) pageSet {
		s := make(pageSet, tr.Pages())
		for i := range s {
			s[i] = true
		}
		return s
	}
	for _, overwrite := range []bool{true, false} {
		if err := ta.Release(); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if overwrite {
			for i := range a {
				a[i]++
			}
		}
		b[10]++ // b's byte on the shared page
		if got := written(t, ta, a); !slices.Equal(got, all(ta)) {
			t.Fatalf("overwrite %v: a reported %v after Release", overwrite, got)
		}
		if got := written(t, tb, b); !got[0] {
			t.Fatalf("overwrite %v: b's write on the shared page lost after a's Release: %v", overwrite, got)
		}
		if ga, gb := written(t, ta, a), written(t, tb, b); ga.count()+gb.count() != 0 {
			t.Fatalf("overwrite %v: quiet: a reported %v, b reported %v", overwrite, ga, gb)
		}
		a[2*ps]++
		if got := written(t, ta, a); !slices.Equal(got, pageSet{false, false, true, false, false}) {
			t.Fatalf("overwrite %v: tracking after Release: %v", overwrite, got)
		}
	}
	ta.Close()
	if err := ta.Release(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Release after Close: %v, want ErrClosed", err)
	}
}
