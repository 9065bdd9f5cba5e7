package engine

import (
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestCreateLeavesTheChunkUnread: creating a file writes its header without faulting
// the data mapping. A fault on a fresh file reads ahead (up to read_ahead_kb, 8 MiB on
// some disks), which allocated and zeroed the whole first chunk on every Open that
// created a file: of the data file's first chunk, only the header page is resident.
func TestCreateLeavesTheChunkUnread(t *testing.T) {
	f, err := Open(filepath.Join(t.TempDir(), "c.ckp"), &Options{NoPrefault: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := f.data.Bytes()
	n := min(len(m), 8<<20)
	page := unix.Getpagesize()
	vec := make([]byte, (n+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Skipf("mincore: %v", e)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	if resident > 1 {
		t.Fatalf("%d pages of the data file's first %d bytes are resident after Open created it, want at most the header's", resident, n)
	}
}
