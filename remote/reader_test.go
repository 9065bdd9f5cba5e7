package remote

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
)

// bytesHost is a Host whose data file is data; it counts the reads.
type bytesHost struct {
	Host
	data  []byte
	reads atomic.Int64
}

func (h *bytesHost) ReadAt(p []byte, off int64) (int, error) {
	h.reads.Add(1)
	return copy(p, h.data[off:]), nil
}

func (h *bytesHost) Busy() bool { return false }

// testReader returns a reader of an object of size bytes laid out as the data file of
// h holds it, in segments of crc.BlockSize (the last one shorter when size says so).
func testReader(size int64) (*reader, *bytesHost) {
	h := &bytesHost{data: make([]byte, size)}
	// A pattern of 64 KiB, repeated, with each 4 KiB page's offset written into it
	// (cheap to make under the race detector; no two pages alike).
	for i := range min(len(h.data), 64<<10) {
		h.data[i] = byte(i*7 + i>>13)
	}
	for n := 64 << 10; n < len(h.data); n *= 2 {
		copy(h.data[n:], h.data[:n])
	}
	for off := 0; off+8 <= len(h.data); off += 4096 {
		binary.LittleEndian.PutUint64(h.data[off:], uint64(off))
	}
	var segs []segment
	for lo := int64(0); lo < size; lo += crc.BlockSize {
		n := min(crc.BlockSize, size-lo)
		segs = append(segs, segment{b: int64(len(segs)), src: lo, at: lo, n: n, hash: xxhash.Sum64(h.data[lo : lo+n])})
	}
	return &reader{t: &Tier{h: h, ctx: context.Background()}, it: &item{}, segs: segs, size: size}, h
}

// TestReaderStreamsReadEachSegmentOnce: an S3 store sends a large object in parts, up
// to four read at once in pieces of 64 KiB, a new part starting as one ends. Each
// segment is read from the data file once (a part boundary may cost one more read),
// however the streams' pieces interleave, and every byte arrives as the file holds it.
func TestReaderStreamsReadEachSegmentOnce(t *testing.T) {
	const nseg, partSegs = 96, 8
	size := int64(nseg * crc.BlockSize)
	for seed := range uint64(3) {
		r, h := testReader(size)
		rng := rand.New(rand.NewPCG(seed, 1))
		part := int64(partSegs * crc.BlockSize)
		next := int64(0)
		var active []*io.SectionReader
		start := func() {
			if next < size {
				active = append(active, io.NewSectionReader(r, next, part))
				next += part
			}
		}
		for range 4 {
			start()
		}
		out := make([]byte, size)
		piece := make([]byte, 64<<10)
		for len(active) > 0 {
			k := rng.IntN(len(active))
			s := active[k]
			off, _ := s.Seek(0, io.SeekCurrent)
			n, err := s.Read(piece)
			_, base, _ := s.Outer()
			copy(out[base+off:], piece[:n])
			if err == io.EOF || n == 0 {
				active = append(active[:k], active[k+1:]...)
				start()
			} else if err != nil {
				t.Fatal(err)
			}
		}
		r.release()
		if !bytes.Equal(out, h.data) {
			t.Fatalf("seed %d: the object's bytes differ from the data file's", seed)
		}
		if reads, most := h.reads.Load(), int64(nseg+nseg/partSegs); reads > most {
			t.Fatalf("seed %d: %d reads of the data file for %d segments in %d parts, want at most %d", seed, reads, nseg, nseg/partSegs, most)
		}
	}
}

// TestReaderPartsAtOnce: parts read at once on goroutines, cutting segments, in pieces
// of odd sizes, of an object whose last segment is short: every part's bytes are the
// data file's (run with -race).
func TestReaderPartsAtOnce(t *testing.T) {
	size := int64(20*crc.BlockSize - 12345)
	r, h := testReader(size)
	for round := range 3 {
		part := int64(3*crc.BlockSize + 777)
		var wg sync.WaitGroup
		sem := make(chan struct{}, heldSegments)
		for off := int64(0); off < size; off += part {
			n := min(part, size-off)
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				var b bytes.Buffer
				piece := make([]byte, 65536-round*1000)
				if _, err := io.CopyBuffer(&b, struct{ io.Reader }{io.NewSectionReader(r, off, n)}, piece); err != nil {
					t.Error(err)
				}
				if !bytes.Equal(b.Bytes(), h.data[off:off+n]) {
					t.Errorf("round %d: the part at %d differs from the data file", round, off)
				}
			})
		}
		wg.Wait()
		r.release()
	}
}
