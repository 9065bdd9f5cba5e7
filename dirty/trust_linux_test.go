//go:build linux && (amd64 || arm64 || riscv64 || loong64 || s390x)

package dirty

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckp-go/ckp/internal/kwrite"
)

func TestStatusKB(t *testing.T) {
	for in, want := range map[string]int64{"\t       0 kB": 0, "  12 kB": 12 << 10, "123456 kB\n": 123456 << 10} {
		if got, ok := statusKB([]byte(in)); !ok || got != want {
			t.Errorf("statusKB(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", " kB", "12", "12 MB", "-1 kB", "1x kB", "9999999999999999 kB"} {
		if got, ok := statusKB([]byte(in)); ok {
			t.Errorf("statusKB(%q) = %d, accepted", in, got)
		}
	}
}

// TestPinsIOURing shows what the kernel does with a page pinned long-term, and what
// ReadPins sees of it: the pin itself is a write (reported once, by the next scan);
// a write through the pin after that scan is reported never; the pin is counted in
// VmPin while it lasts.
func TestPinsIOURing(t *testing.T) {
	requireTracking(t)
	ring := kwrite.Require(t)
	if p, err := ReadPins(); err != nil || p.Pinned != 0 || p.Why() != "" {
		t.Fatalf("before any pin: %+v, %v (Why %q)", p, err, p.Why())
	}
	ps := int(pageSize)
	region := mmapAnon(t, 16*ps)
	for i := range region {
		region[i] = 1
	}
	tr := mustTrack(t, region)
	if err := ring.RegisterBuffers(region[4*ps : 8*ps]); err != nil {
		t.Fatal(err)
	}
	p, err := ReadPins()
	if err != nil || p.Pinned < int64(4*ps) || !strings.Contains(p.Why(), "VmPin") {
		t.Fatalf("with 4 pages registered: %+v, %v (Why %q)", p, err, p.Why())
	}
	want := make(pageSet, tr.Pages())
	for i := 4; i < 8; i++ {
		want[i] = true
	}
	if got := written(t, tr, region); !slices.Equal(got, want) {
		t.Fatalf("pinning pages 4..7 for writing: reported %v, want %v", got, want)
	}
	file := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(file, make([]byte, 2*ps), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if n, err := ring.ReadFixed(src, 0, region[5*ps:7*ps], 0); err != nil || n != 2*ps {
		t.Fatalf("READ_FIXED: %d, %v", n, err)
	}
	if region[5*ps] != 0 || region[7*ps-1] != 0 {
		t.Fatal("READ_FIXED did not write the region")
	}
	if got := written(t, tr, region); got.count() != 0 {
		t.Logf("this kernel reported the write through the pin: %v", got)
	} else {
		t.Logf("the write through the pin (pages 5, 6) was not reported, as expected")
	}
	if err := ring.UnregisterBuffers(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err = ReadPins()
		if err != nil || p.Pinned == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil || p.Pinned != 0 || p.Why() != "" {
		t.Fatalf("after unregistering: %+v, %v", p, err)
	}
}

// TestPinsLocked: mlock'ed memory counts as locked (the kernel does not tell it from a
// VFIO mapping).
func TestPinsLocked(t *testing.T) {
	requireTracking(t)
	mem := mmapAnon(t, 4*int(pageSize))
	if err := unix.Mlock(mem); err != nil {
		t.Skipf("mlock: %v", err)
	}
	defer unix.Munlock(mem)
	p, err := ReadPins()
	if err != nil || p.Locked < int64(len(mem)) || !strings.Contains(p.Why(), "VmLck") {
		t.Fatalf("%+v, %v (Why %q)", p, err, p.Why())
	}
}

func TestFaultCost(t *testing.T) {
	requireTracking(t)
	c, err := FaultCost()
	if err != nil || c <= 0 || c > time.Second {
		t.Fatalf("FaultCost() = %v, %v", c, err)
	}
	m, err := MeasureFaultCost()
	if err != nil || m <= 0 || m > time.Second {
		t.Fatalf("MeasureFaultCost() = %v, %v", m, err)
	}
	if c2, _ := FaultCost(); c2 != m {
		t.Fatalf("FaultCost() = %v after MeasureFaultCost() = %v", c2, m)
	}
	// An old measurement is replaced in the background.
	old := faultCostAge
	faultCostAge = 0
	defer func() { faultCostAge = old }()
	fc.mu.Lock()
	fc.cost = time.Hour
	fc.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := FaultCost()
		if err != nil {
			t.Fatal(err)
		}
		if c != time.Hour {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("FaultCost was not measured again")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("fault cost %v", m)
}
