package crc

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestPayloadSingleBlockIsPlainXXHash(t *testing.T) {
	for _, n := range []int{0, 1, 4096, BlockSize} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		if got, want := Payload(p), xxhash.Sum64(p); got != want {
			t.Fatalf("n=%d: Payload=%x want %x", n, got, want)
		}
	}
}

func TestPayloadMultiBlockIsHashOfBlockHashes(t *testing.T) {
	n := 3*BlockSize + 17
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i>>3 + i)
	}
	if Blocks(int64(n)) != 4 || TableSize(int64(n)) != 32 {
		t.Fatalf("Blocks=%d TableSize=%d", Blocks(int64(n)), TableSize(int64(n)))
	}
	table := make([]byte, 0, 32)
	for off := 0; off < n; off += BlockSize {
		table = binary.LittleEndian.AppendUint64(table, xxhash.Sum64(p[off:min(off+BlockSize, n)]))
	}
	if got, want := Payload(p), Combine(table); got != want {
		t.Fatalf("Payload=%x want %x", got, want)
	}
	if Block(p[:BlockSize]) != binary.LittleEndian.Uint64(table) {
		t.Fatal("Block differs from the table's first entry")
	}
	// Changing one byte of the last block changes the hash.
	p[n-1] ^= 1
	if Payload(p) == Combine(table) {
		t.Fatal("hash did not change")
	}
}

func TestBlocksEdges(t *testing.T) {
	for _, c := range []struct {
		n     int64
		b, ts int
	}{{0, 1, 0}, {1, 1, 0}, {BlockSize, 1, 0}, {BlockSize + 1, 2, 16}, {2 * BlockSize, 2, 16}} {
		if Blocks(c.n) != c.b || TableSize(c.n) != c.ts {
			t.Errorf("n=%d: Blocks=%d TableSize=%d, want %d %d", c.n, Blocks(c.n), TableSize(c.n), c.b, c.ts)
		}
	}
}

func TestCRC32CIsCastagnoli(t *testing.T) {
	p := []byte("123456789")
	if got := CRC32C(0, p); got != 0xe3069283 {
		t.Fatalf("CRC32C=%x", got)
	}
	if CRC32C(CRC32C(0, p[:4]), p[4:]) != crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)) {
		t.Fatal("CRC32C does not continue")
	}
}

func TestPayloadAllocatesNothing(t *testing.T) {
	p := make([]byte, 3*BlockSize)
	if a := testing.AllocsPerRun(10, func() { Payload(p) }); a != 0 {
		t.Fatalf("allocs=%v", a)
	}
}
