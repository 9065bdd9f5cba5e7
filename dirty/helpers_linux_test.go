//go:build linux && (amd64 || arm64 || riscv64 || loong64 || s390x)

package dirty

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// requireTracking skips the test when the kernel cannot track writes here, saying why;
// with CKP_DIRTY_REQUIRE=1 (CI on a known kernel) it fails instead.
func requireTracking(tb testing.TB) {
	tb.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CKP_DIRTY_REQUIRE") == "1" {
			tb.Fatalf("CKP_DIRTY_REQUIRE=1 but tracking is unavailable: %v", err)
		}
		tb.Skipf("kernel write tracking unavailable: %v", err)
	}
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// pageOf returns the index of the page holding region[off], counted from the first page
// that holds region.
func pageOf(region []byte, off int) int {
	a := addrOf(region)
	return int((a+uintptr(off))/pageSize - a/pageSize)
}

// pageSet is a set of page indices of one region.
type pageSet []bool

func (s pageSet) String() string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if !s[i] {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] {
			j++
		}
		fmt.Fprintf(&b, "[%d,%d)", i, j)
		i = j
	}
	return "{" + b.String() + "}"
}

func (s pageSet) count() int {
	n := 0
	for _, v := range s {
		if v {
			n++
		}
	}
	return n
}

// written calls tr.Written once, checks the shape of its report (ordered, apart, page
// boundaries inside the region, clipped to it, a count that matches) and returns the
// pages reported.
func written(t testing.TB, tr *Tracker, region []byte) pageSet {
	t.Helper()
	got := make(pageSet, tr.Pages())
	prev := -1
	a := addrOf(region)
	n, err := tr.Written(func(start, end int) {
		if start < 0 || end > len(region) || start >= end || start <= prev {
			t.Errorf("bad range [%d, %d) after %d, region of %d", start, end, prev, len(region))
			return
		}
		if start != 0 && (a+uintptr(start))%pageSize != 0 || end != len(region) && (a+uintptr(end))%pageSize != 0 {
			t.Errorf("range [%d, %d) not at page boundaries", start, end)
		}
		for p := pageOf(region, start); p <= pageOf(region, end-1); p++ {
			got[p] = true
		}
		prev = end
	})
	if err != nil {
		t.Fatalf("Written: %v", err)
	}
	if n != got.count() {
		t.Errorf("Written returned %d pages, reported %d", n, got.count())
	}
	return got
}

// alignedHeap returns n bytes of Go heap starting on a page boundary, inside an
// allocation of its own (nothing else lives on its pages).
func alignedHeap(n int) []byte {
	ps := int(pageSize)
	b := make([]byte, n+2*ps)
	off := int(-addrOf(b) & (pageSize - 1))
	return b[off : off+n : off+n]
}

// mmapAnon maps n bytes of anonymous private memory, unmapped at the end of the test.
func mmapAnon(t testing.TB, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// wpRanges returns the ranges of this process registered for userfaultfd write protection
// ("uw" in the VmFlags of /proc/self/smaps) that intersect [lo, hi).
func wpRanges(t testing.TB, lo, hi uintptr) []span {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []span
	var cur span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			if slices.Contains(strings.Fields(flags), "uw") && cur.lo < hi && lo < cur.hi {
				out = append(out, span{max(lo, cur.lo), min(hi, cur.hi)})
			}
			continue
		}
		field, _, _ := strings.Cut(line, " ")
		if a, b, ok := strings.Cut(field, "-"); ok && !strings.HasSuffix(field, ":") {
			x, err1 := strconv.ParseUint(a, 16, 64)
			y, err2 := strconv.ParseUint(b, 16, 64)
			if err1 == nil && err2 == nil {
				cur = span{uintptr(x), uintptr(y)}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return mergeSpans(out)
}

// checkRegistered fails unless exactly the pages of [lo, hi) in want are registered.
func checkRegistered(t testing.TB, lo, hi uintptr, want ...span) {
	t.Helper()
	if got := wpRanges(t, lo, hi); !slices.Equal(got, mergeSpans(want)) {
		t.Fatalf("registered in [%#x, %#x): %v, want %v", lo, hi, got, want)
	}
}

// vmaCount returns the number of mappings of this process.
func vmaCount(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func mustTrack(t testing.TB, region []byte) *Tracker {
	t.Helper()
	tr, err := Track(region)
	if err != nil {
		t.Fatalf("Track: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}
