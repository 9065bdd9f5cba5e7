// Package record defines the deterministic, self-describing fixed-size
// records that the stand-in power-cut workload appends to its log, so the
// host can check byte-exactly what survived a cut.
//
// Layout of a record of Size bytes (Size >= HeaderSize, multiple of 8):
//
//	[0:8)   magic "CKPREC01"
//	[8:16)  index, little endian
//	[16:24) size, little endian
//	[24:32) seed, little endian
//	[32:)   splitmix64 stream seeded from (seed, index)
package record

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Magic starts every record.
const Magic = "CKPREC01"

// HeaderSize is the size of the fixed header.
const HeaderSize = 32

// Fill writes record idx of len(buf) bytes for seed into buf.
func Fill(buf []byte, seed, idx uint64) {
	if len(buf) < HeaderSize || len(buf)%8 != 0 {
		panic(fmt.Sprintf("record: bad size %d", len(buf)))
	}
	copy(buf, Magic)
	binary.LittleEndian.PutUint64(buf[8:], idx)
	binary.LittleEndian.PutUint64(buf[16:], uint64(len(buf)))
	binary.LittleEndian.PutUint64(buf[24:], seed)
	x := seed ^ (idx+1)*0x9e3779b97f4a7c15
	for off := HeaderSize; off < len(buf); off += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(buf[off:], z^(z>>31))
	}
}

// Check reports whether got is exactly record idx for seed. On mismatch the
// error names the first differing byte offset.
func Check(got []byte, seed, idx uint64, scratch []byte) error {
	if len(scratch) != len(got) {
		scratch = make([]byte, len(got))
	}
	Fill(scratch, seed, idx)
	if bytes.Equal(got, scratch) {
		return nil
	}
	for i := range got {
		if got[i] != scratch[i] {
			return fmt.Errorf("record %d differs at byte %d (got %#x, want %#x)", idx, i, got[i], scratch[i])
		}
	}
	return nil
}

// Verify checks a log file made of records of size size: it returns how
// many leading records are intact, and an error if fewer than acked are
// (an acked record is missing, short or corrupt). Data after the intact
// prefix is allowed when it is not acked (a torn, unacknowledged tail).
func Verify(log []byte, size int, seed uint64, acked int) (intact int, err error) {
	scratch := make([]byte, size)
	n := len(log) / size
	for intact < n {
		i := intact
		if e := Check(log[i*size:(i+1)*size], seed, uint64(i), scratch); e != nil {
			if i < acked {
				return intact, fmt.Errorf("acked %s", e)
			}
			break
		}
		intact++
	}
	if intact < acked {
		return intact, fmt.Errorf("log holds %d bytes (%d whole records, %d intact) but %d records were acked",
			len(log), n, intact, acked)
	}
	return intact, nil
}
