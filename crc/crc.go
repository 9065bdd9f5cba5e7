// Package crc holds the checksums of the ckp file format.
//
// Two checksums are used:
//
//   - Payload hashes: xxhash64 (github.com/cespare/xxhash/v2, seed 0). A payload of at
//     most BlockSize bytes is hashed directly. A larger payload is cut into blocks of
//     BlockSize bytes (the last one may be shorter); each block is hashed, and the
//     payload hash is the xxhash64 of the block hashes written as little-endian uint64
//     values one after another (a two-level "hash of hashes"). Blocks can therefore be
//     hashed in parallel and, later, compared one by one for differential saves.
//
//   - Record checksums: CRC-32C (Castagnoli), used for index records, file headers and
//     data trailers. The CPU computes it in hardware on amd64 and arm64.
package crc

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/cespare/xxhash/v2"
)

// BlockShift is log2 of BlockSize.
const BlockShift = 20

// BlockSize is the size of one hashed block of a payload: 1 MiB.
const BlockSize = 1 << BlockShift

// castagnoli is the CRC-32C table; crc32 uses the SSE4.2/ARMv8 instructions with it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the CRC-32C of p, continuing from crc (0 to start).
func CRC32C(crc uint32, p []byte) uint32 {
	return crc32.Update(crc, castagnoli, p)
}

// Blocks returns how many hash blocks a payload of n bytes has (at least 1).
func Blocks(n int64) int {
	if n <= BlockSize {
		return 1
	}
	return int((n + BlockSize - 1) >> BlockShift)
}

// TableSize returns the size in bytes of the block-hash table stored for a payload of n
// bytes: 0 when the payload is a single block, 8 bytes per block otherwise.
func TableSize(n int64) int {
	b := Blocks(n)
	if b == 1 {
		return 0
	}
	return 8 * b
}

// Block returns the xxhash64 of one block.
func Block(p []byte) uint64 { return xxhash.Sum64(p) }

// Combine returns the payload hash of a multi-block payload from its block-hash table:
// the xxhash64 of the table's bytes (little-endian uint64 per block).
func Combine(table []byte) uint64 { return xxhash.Sum64(table) }

// Payload returns the payload hash of p as defined by the format (see the package doc).
// It allocates nothing for payloads of any size.
func Payload(p []byte) uint64 {
	n := int64(len(p))
	if n <= BlockSize {
		return xxhash.Sum64(p)
	}
	var d xxhash.Digest
	d.Reset()
	var b [8]byte
	for off := int64(0); off < n; off += BlockSize {
		end := min(off+BlockSize, n)
		binary.LittleEndian.PutUint64(b[:], xxhash.Sum64(p[off:end]))
		d.Write(b[:])
	}
	return d.Sum64()
}
