// Package ckpcheck is shared by the power-cut guest and the host: the
// contents every saved version must have (a pattern derived from the seed,
// the region and the version number), and the check of a recovered ckp file
// (Inspect) with its judgement against what the guest acknowledged
// (Report.Problems).
package ckpcheck

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The pattern of version v of region r: an 8-byte little-endian word at
// every multiple of 8, word i being base(seed, r, v) + i*step, except words
// 0 to 2, a header "CKPPAT01", r, v (when the region is long enough). A
// trailing partial word holds the low bytes of its word. Versions differ in
// every word, so a byte from any other version, another region or a zeroed
// block is caught, and Describe can tell which version a word came from.

const (
	magic = "CKPPAT01"
	step  = 0x9e3779b97f4a7c15 // odd: word values never repeat within a region
)

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func base(seed uint64, r, v int) uint64 {
	return mix(seed ^ mix(uint64(r)<<40^uint64(v)+0x632be59bd9b4e019))
}

func word(seed uint64, r, v, i int) uint64 {
	switch {
	case i == 0:
		return binary.LittleEndian.Uint64([]byte(magic))
	case i == 1:
		return uint64(r)
	case i == 2:
		return uint64(v)
	}
	return base(seed, r, v) + uint64(i)*step
}

// Fill writes version v of region r into buf.
func Fill(buf []byte, seed uint64, r, v int) {
	b := base(seed, r, v)
	n := len(buf) / 8
	for i := 0; i < n; i++ {
		var w uint64
		if i < 3 {
			w = word(seed, r, v, i)
		} else {
			w = b + uint64(i)*step
		}
		binary.LittleEndian.PutUint64(buf[8*i:], w)
	}
	if rest := len(buf) - 8*n; rest > 0 {
		var t [8]byte
		binary.LittleEndian.PutUint64(t[:], word(seed, r, v, n))
		copy(buf[8*n:], t[:rest])
	}
}

// Check returns nil if got is exactly version v of region r, otherwise an
// error that says where it differs and what is there instead. scratch, if
// len(got) long, saves an allocation.
func Check(got []byte, seed uint64, r, v int, scratch []byte) error {
	if len(scratch) != len(got) {
		scratch = make([]byte, len(got))
	}
	Fill(scratch, seed, r, v)
	if bytes.Equal(got, scratch) {
		return nil
	}
	first := 0
	for got[first] == scratch[first] {
		first++
	}
	last := len(got) - 1
	for got[last] == scratch[last] {
		last--
	}
	bad := 0
	for i := first; i <= last; i++ {
		if got[i] != scratch[i] {
			bad++
		}
	}
	return fmt.Errorf("region %d is not version %d: %d bytes differ in [%d, %d]; at byte %d: %s",
		r, v, bad, first, last+1, first, Describe(got, seed, r, first, v+64))
}

// Describe says what the 8-byte word holding byte off of a region's bytes
// is: a word of some version of region r (searched up to maxV), zeros, or
// unknown.
func Describe(got []byte, seed uint64, r, off, maxV int) string {
	if allZero(got[off:min(off+8, len(got))]) {
		return "zero bytes"
	}
	i := off / 8
	if 8*i+8 > len(got) {
		return "in the trailing partial word"
	}
	w := binary.LittleEndian.Uint64(got[8*i:])
	if i < 3 {
		return fmt.Sprintf("header word %#x", w)
	}
	for v := 1; v <= maxV; v++ {
		if base(seed, r, v)+uint64(i)*step == w {
			return fmt.Sprintf("the word of version %d", v)
		}
	}
	return fmt.Sprintf("word %#x of no version 1..%d of region %d", w, maxV, r)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// The sparse pattern, for differential saves: the region is cut into 4 KiB blocks, and
// block b of version v holds the bytes of Fill's version u at those offsets, u being
// the newest version up to v at which block b changed. Block 0 (with the header words)
// changes at every version, every other block at version 1 and then at about one
// version in eight.

const sparseBlock = 4096

// SparseChanged reports whether block b of region r changes at version v.
func SparseChanged(seed uint64, r, b, v int) bool {
	if v <= 1 || b == 0 {
		return true
	}
	return mix(seed^mix(uint64(r)<<48^uint64(b)<<24^uint64(v)))%8 == 0
}

// sparseVersion is the version whose bytes block b of version v holds.
func sparseVersion(seed uint64, r, b, v int) int {
	for !SparseChanged(seed, r, b, v) {
		v--
	}
	return v
}

// FillSparse writes version v of region r's sparse pattern into buf, which holds
// version from of it already (0: anything): only blocks that changed since are written.
func FillSparse(buf []byte, seed uint64, r, v, from int) {
	var tmp [sparseBlock]byte
	for off, b := 0, 0; off < len(buf); off, b = off+sparseBlock, b+1 {
		u := sparseVersion(seed, r, b, v)
		if from > 0 && u <= from {
			continue
		}
		// Fill's words of version u at this block's offsets.
		end := min(off+sparseBlock, len(buf))
		fillRange(tmp[:end-off], seed, r, u, off)
		copy(buf[off:end], tmp[:end-off])
	}
}

// fillRange writes bytes [off, off+len(dst)) of Fill's version v of region r into dst;
// off is a multiple of 8.
func fillRange(dst []byte, seed uint64, r, v, off int) {
	bs := base(seed, r, v)
	var t [8]byte
	for k := 0; k < len(dst); k += 8 {
		i := (off + k) / 8
		w := bs + uint64(i)*step
		if i < 3 {
			w = word(seed, r, v, i)
		}
		binary.LittleEndian.PutUint64(t[:], w)
		copy(dst[k:], t[:])
	}
}

// CheckSparse returns nil if got is exactly version v of region r's sparse pattern,
// otherwise an error that says where it differs.
func CheckSparse(got []byte, seed uint64, r, v int, scratch []byte) error {
	if len(scratch) != len(got) {
		scratch = make([]byte, len(got))
	}
	FillSparse(scratch, seed, r, v, 0)
	if bytes.Equal(got, scratch) {
		return nil
	}
	first := 0
	for got[first] == scratch[first] {
		first++
	}
	b := first / sparseBlock
	return fmt.Errorf("region %d is not sparse version %d: block %d (which holds version %d's bytes) differs at byte %d: %s",
		r, v, b, sparseVersion(seed, r, b, v), first, Describe(got, seed, r, first, v+64))
}
