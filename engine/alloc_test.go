package engine

import (
	"math/rand/v2"
	"testing"

	"github.com/ckp-go/ckp/internal/slot"
)

func TestAllocatorReusesFreedSlotExactly(t *testing.T) {
	var a allocator
	a.reset(4096, nil)
	off1, s1 := a.alloc(5000, 64)
	off2, _ := a.alloc(100000, 4096)
	if off1 != 4096 || s1 != alignUp(5000, 64) {
		t.Fatalf("first slot %d+%d", off1, s1)
	}
	if off2%4096 != 0 || off2 < off1+s1 {
		t.Fatalf("second slot %d", off2)
	}
	a.free(extent{off1, off1 + s1})
	off3, s3 := a.alloc(5000, 64)
	if off3 != off1 || s3 < s1 {
		t.Fatalf("freed slot not reused: %d+%d", off3, s3)
	}
}

func TestAllocatorBestFitKeepsBigHoleForBigSlot(t *testing.T) {
	var a allocator
	a.reset(0, nil)
	big, bs := a.alloc(1<<20, 64)
	sep1, _ := a.alloc(64, 64)
	small, ss := a.alloc(4096, 64)
	sep2, _ := a.alloc(64, 64)
	_, _ = sep1, sep2
	a.free(extent{big, big + bs})
	a.free(extent{small, small + ss})
	// The small save takes the small hole, leaving the big one for the big save.
	if off, _ := a.alloc(4096, 64); off != small {
		t.Fatalf("small went to %d, want %d", off, small)
	}
	if off, _ := a.alloc(1<<20, 64); off != big {
		t.Fatalf("big went to %d, want %d", off, big)
	}
}

func TestAllocatorFrontierPullsBack(t *testing.T) {
	var a allocator
	a.reset(0, nil)
	o1, s1 := a.alloc(1000, 64)
	o2, s2 := a.alloc(1000, 64)
	a.free(extent{o2, o2 + s2})
	if a.end != o2 || len(a.holes) != 0 {
		t.Fatalf("frontier %d holes %v", a.end, a.holes)
	}
	a.free(extent{o1, o1 + s1})
	if a.end != 0 {
		t.Fatalf("frontier %d", a.end)
	}
}

func TestAllocatorPendingReleasedWhenDurable(t *testing.T) {
	var a allocator
	a.reset(0, nil)
	o, s := a.alloc(1000, 64)
	a.alloc(1000, 64)
	a.freeLater(extent{o, o + s}, 10)
	if off, _ := a.alloc(1000, 64); off == o {
		t.Fatal("pending slot reused before durable")
	}
	a.freePending(9)
	if len(a.pending) != 1 {
		t.Fatal("released too early")
	}
	a.freePending(10)
	if off, _ := a.alloc(1000, 64); off != o {
		t.Fatalf("slot not reused after release: %d", off)
	}
}

func TestAllocatorResetFromUsed(t *testing.T) {
	var a allocator
	a.reset(4096, []extent{{20000, 30000}, {4096, 8192}, {10000, 12000}})
	want := []extent{{8192, 10000}, {12000, 20000}}
	if a.end != 30000 || len(a.holes) != 2 || a.holes[0] != want[0] || a.holes[1] != want[1] {
		t.Fatalf("end %d holes %v", a.end, a.holes)
	}
}

// TestAllocatorNeverOverlaps runs random alloc/free sequences and checks that live
// slots never overlap and that holes never overlap live slots.
func TestAllocatorNeverOverlaps(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var a allocator
	a.reset(4096, nil)
	live := map[int64]int64{}
	for i := 0; i < 20000; i++ {
		if len(live) > 0 && r.IntN(3) == 0 {
			for off, end := range live {
				if r.IntN(2) == 0 {
					a.freeLater(extent{off, end}, int64(i))
				} else {
					a.free(extent{off, end})
				}
				delete(live, off)
				break
			}
			a.freePending(int64(i - r.IntN(5)))
			continue
		}
		n := int64(r.IntN(3 << 20))
		al := slot.PayloadAlign(n)
		off, size := a.alloc(n+1, al)
		if off%al != 0 || size < n+1 {
			t.Fatalf("bad slot %d+%d for %d align %d", off, size, n, al)
		}
		for o, e := range live {
			if off < e && o < off+size {
				t.Fatalf("slot [%d,%d) overlaps [%d,%d)", off, off+size, o, e)
			}
		}
		live[off] = off + size
	}
	for i, h := range a.holes {
		if i > 0 && a.holes[i-1].end >= h.off {
			t.Fatalf("holes not sorted/coalesced: %v", a.holes[i-1:i+1])
		}
		if h.end > a.end {
			t.Fatalf("hole past frontier")
		}
		for o, e := range live {
			if h.off < e && o < h.end {
				t.Fatalf("hole [%d,%d) overlaps live [%d,%d)", h.off, h.end, o, e)
			}
		}
	}
}

// TestAllocatorClaimReplaysAllocation: replaying allocations with claim (and frees with
// free), as recovery does, gives the same free space as the allocator that made them,
// and the same as rebuilding from the slots still in use.
func TestAllocatorClaimReplaysAllocation(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var a, b allocator
	a.reset(4096, nil)
	b.reset(4096, nil)
	live := map[int64]int64{}
	for i := 0; i < 5000; i++ {
		if len(live) > 0 && r.IntN(3) == 0 {
			for off, end := range live {
				a.free(extent{off, end})
				b.free(extent{off, end})
				delete(live, off)
				break
			}
			continue
		}
		n := int64(1 + r.IntN(3<<20))
		off, size := a.alloc(n, slot.PayloadAlign(n))
		if !b.claim(extent{off, off + size}) {
			t.Fatalf("step %d: claim of a fresh slot [%d,%d) says it overlapped", i, off, off+size)
		}
		live[off] = off + size
	}
	var used []extent
	for off, end := range live {
		used = append(used, extent{off, end})
	}
	var c allocator
	c.reset(4096, used)
	for _, x := range []*allocator{&b, &c} {
		if x.end != a.end || len(x.holes) != len(a.holes) {
			t.Fatalf("end %d holes %d, want end %d holes %d", x.end, len(x.holes), a.end, len(a.holes))
		}
		for i := range a.holes {
			if x.holes[i] != a.holes[i] {
				t.Fatalf("hole %d: %v, want %v", i, x.holes[i], a.holes[i])
			}
		}
	}
	// Claiming space already in use is reported.
	for off, end := range live {
		if b.claim(extent{off, end}) {
			t.Fatal("claim of a slot in use did not report the overlap")
		}
		break
	}
}
