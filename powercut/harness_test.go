//go:build linux

package powercut

import (
	"reflect"
	"testing"
)

func TestFsckProblems(t *testing.T) {
	benign := FsckResult{Code: 1, Output: `e2fsck 1.47.0 (5-Feb-2023)
disk.img: recovering journal
Pass 5: Checking group summary information
Free blocks count wrong (124719, counted=123743).
Fix? yes

Free inodes count wrong (32757, counted=32756).
Fix? yes

disk.img: ***** FILE SYSTEM WAS MODIFIED *****
`}
	if p := benign.Problems(); len(p) != 0 {
		t.Errorf("benign crash output: problems %q", p)
	}
	bad := FsckResult{Code: 1, Output: `Pass 1: Checking inodes, blocks, and sizes
Inode 12 extent tree (at level 1) could be shorter.  Optimize? yes

Pass 2: Checking directory structure
Entry 'log' in / (2) has deleted/unused inode 12.  Clear? yes

Block bitmap differences:  -(1234--1240)
Fix? yes
`}
	want := []string{
		"Inode 12 extent tree (at level 1) could be shorter.  Optimize? yes",
		"Entry 'log' in / (2) has deleted/unused inode 12.  Clear? yes",
		"Block bitmap differences:  -(1234--1240)",
	}
	if p := bad.Problems(); !reflect.DeepEqual(p, want) {
		t.Errorf("problems %q, want %q", p, want)
	}
}

func TestMessages(t *testing.T) {
	got := Messages([]string{"[ 1.0] kernel line", "@ckp ready x", "junk@ckp acked 3", "@ckpx"})
	want := []string{"ready x", "acked 3"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Messages = %q, want %q", got, want)
	}
}
