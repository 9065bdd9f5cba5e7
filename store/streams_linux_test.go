//go:build linux

package store

import (
	"syscall"
	"testing"
)

// TestReadStreams: a directory store on a local file system is read in one stream (the
// kernel's readahead serves it best), one on a network or parallel file system in
// several.
func TestReadStreams(t *testing.T) {
	for _, c := range []struct {
		name    string
		magic   uint32
		network bool
	}{
		{"ext4", 0xef53, false}, {"xfs", 0x58465342, false}, {"btrfs", 0x9123683e, false},
		{"tmpfs", 0x01021994, false}, {"overlayfs", 0x794c7630, false},
		{"nfs", 0x6969, true}, {"lustre", 0x0bd00bd0, true}, {"gpfs", 0x47504653, true},
		{"cephfs", 0x00c36400, true}, {"beegfs", 0x19830326, true}, {"fuse", 0x65735546, true},
		{"smb2", 0xfe534d42, true}, {"orangefs", 0x20030528, true}, {"kafs", 0x6b414653, true},
	} {
		if got := networkFS(c.magic); got != c.network {
			t.Errorf("%s (%#x): networkFS %v, want %v", c.name, c.magic, got, c.network)
		}
	}
	dir := t.TempDir()
	d, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		t.Fatal(err)
	}
	want := 1
	if networkFS(uint32(s.Type)) {
		want = 4
	}
	if n := d.(ReadStreamer).ReadStreams(); n != want {
		t.Fatalf("a directory store on file system %#x: ReadStreams %d, want %d", s.Type, n, want)
	}
}
