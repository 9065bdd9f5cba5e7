// Package pattern makes and checks the test contents of saved versions: version v of
// region r is a sequence of 4 KiB blocks, each a copy of a base block derived from
// (r, v) whose first 8 bytes are replaced by (r, v, block). Generating and checking
// them is a few memmoves, fast even under -race, and a block out of place, a stale
// block or a mix of two versions is caught. The tests of the engine and of the remote
// tier share it.
package pattern

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// base is the base block of (r, v).
func base(r, v int) []byte {
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

// tag is the first word of block blk of (r, v).
func tag(r, v, blk int) uint64 {
	return uint64(r)<<56 | uint64(v)<<24 | uint64(blk)
}

// Fill writes the pattern of (r, v) into p.
func Fill(p []byte, r, v int) {
	b := base(r, v)
	for off, blk := 0, 0; off < len(p); off, blk = off+4096, blk+1 {
		n := copy(p[off:], b)
		if n >= 8 {
			binary.LittleEndian.PutUint64(p[off:], tag(r, v, blk))
		}
	}
}

// Check reports how p differs from the pattern of (r, v), or nil.
func Check(p []byte, r, v int) error {
	b := base(r, v)
	for off, blk := 0, 0; off < len(p); off, blk = off+4096, blk+1 {
		end := min(off+4096, len(p))
		if end-off >= 8 {
			if got := binary.LittleEndian.Uint64(p[off:]); got != tag(r, v, blk) {
				return fmt.Errorf("region %d version %d: block %d has tag %#x, want %#x", r, v, blk, got, tag(r, v, blk))
			}
			if !bytes.Equal(p[off+8:end], b[8:end-off]) {
				return fmt.Errorf("region %d version %d: block %d body differs", r, v, blk)
			}
		} else if !bytes.Equal(p[off:end], b[:end-off]) {
			return fmt.Errorf("region %d version %d: short block %d differs", r, v, blk)
		}
	}
	return nil
}

// The sparse pattern, for differential saves: block blk of version v of region r holds
// the block of version u of the dense pattern above, u being the newest version up to
// v at which the block changed. Block 0 changes at every version, every other block at
// about one version in eight.

// Changes reports whether block blk of region r changes at version u of the sparse
// pattern.
func Changes(r, blk, u int) bool {
	if u <= 1 || blk == 0 {
		return true
	}
	x := uint64(r)<<48 ^ uint64(blk)<<24 ^ uint64(u)
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return (x^x>>31)%8 == 0
}

// FillSparse writes version v of region r's sparse pattern into p, which holds
// version from already (0: anything), writing only the blocks that differ.
func FillSparse(p []byte, r, v, from int) {
	bases := map[int][]byte{}
	for off, blk := 0, 0; off < len(p); off, blk = off+4096, blk+1 {
		u := v
		for !Changes(r, blk, u) {
			u--
		}
		if from > 0 && u <= from {
			continue
		}
		b := bases[u]
		if b == nil {
			b = base(r, u)
			bases[u] = b
		}
		n := copy(p[off:], b)
		if n >= 8 {
			binary.LittleEndian.PutUint64(p[off:], tag(r, u, blk))
		}
	}
}

// CheckSparse reports how p differs from version v of region r's sparse pattern.
func CheckSparse(p []byte, r, v int) error {
	want := make([]byte, len(p))
	FillSparse(want, r, v, 0)
	if !bytes.Equal(p, want) {
		i := 0
		for p[i] == want[i] {
			i++
		}
		return fmt.Errorf("region %d is not sparse version %d: first difference at byte %d", r, v, i)
	}
	return nil
}
