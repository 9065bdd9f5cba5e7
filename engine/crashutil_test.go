package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Test patterns: the bytes of version v of region r are 4 KiB blocks, each a copy of a
// base block derived from (r, v) whose first 8 bytes are replaced by (r, v, block).
// Generating and checking them is a few memmoves, fast even under -race, and a block
// out of place, a stale block or a mix of two versions is caught.

func crashBase(r, v int) []byte {
	b := make([]byte, 4096)
	x := uint64(r)*0x9e3779b97f4a7c15 ^ uint64(v)*0xbf58476d1ce4e5b9
	for i := 0; i < len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b
}

func crashTag(r, v, blk int) uint64 {
	return uint64(r)<<56 | uint64(v)<<24 | uint64(blk)
}

// crashFill writes the pattern of (r, v) into p.
func crashFill(p []byte, r, v int) {
	base := crashBase(r, v)
	for off, blk := 0, 0; off < len(p); off, blk = off+4096, blk+1 {
		n := copy(p[off:], base)
		if n >= 8 {
			binary.LittleEndian.PutUint64(p[off:], crashTag(r, v, blk))
		}
	}
}

// crashCheck reports how p differs from the pattern of (r, v), or nil.
func crashCheck(p []byte, r, v int) error {
	base := crashBase(r, v)
	for off, blk := 0, 0; off < len(p); off, blk = off+4096, blk+1 {
		end := min(off+4096, len(p))
		if end-off >= 8 {
			if got := binary.LittleEndian.Uint64(p[off:]); got != crashTag(r, v, blk) {
				return fmt.Errorf("region %d version %d: block %d has tag %#x, want %#x", r, v, blk, got, crashTag(r, v, blk))
			}
			if !bytes.Equal(p[off+8:end], base[8:end-off]) {
				return fmt.Errorf("region %d version %d: block %d body differs", r, v, blk)
			}
		} else if !bytes.Equal(p[off:end], base[:end-off]) {
			return fmt.Errorf("region %d version %d: short block %d differs", r, v, blk)
		}
	}
	return nil
}

// The sparse pattern, for differential saves: block blk of version v of region r holds
// the block of version u of the dense pattern above, u being the newest version up to
// v at which the block changed. Block 0 changes at every version, every other block at
// about one version in eight.

func crashChanges(r, blk, u int) bool {
	if u <= 1 || blk == 0 {
		return true
	}
	x := uint64(r)<<48 ^ uint64(blk)<<24 ^ uint64(u)
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return (x^x>>31)%8 == 0
}

// crashFillSparse writes version v of region r's sparse pattern into p, which holds
// version from already (0: anything), writing only the blocks that differ.
func crashFillSparse(p []byte, r, v, from int) {
	bases := map[int][]byte{}
	for off, blk := 0, 0; off < len(p); off, blk = off+4096, blk+1 {
		u := v
		for !crashChanges(r, blk, u) {
			u--
		}
		if from > 0 && u <= from {
			continue
		}
		base := bases[u]
		if base == nil {
			base = crashBase(r, u)
			bases[u] = base
		}
		n := copy(p[off:], base)
		if n >= 8 {
			binary.LittleEndian.PutUint64(p[off:], crashTag(r, u, blk))
		}
	}
}

// crashCheckSparse reports how p differs from version v of region r's sparse pattern.
func crashCheckSparse(p []byte, r, v int) error {
	want := make([]byte, len(p))
	crashFillSparse(want, r, v, 0)
	if !bytes.Equal(p, want) {
		i := 0
		for p[i] == want[i] {
			i++
		}
		return fmt.Errorf("region %d is not sparse version %d: first difference at byte %d", r, v, i)
	}
	return nil
}
