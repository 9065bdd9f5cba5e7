package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// Sending a version's bytes: a data object is a sequence of segments (blocks of the
// version, where the data file holds them), each checked against its block hash as it
// is read and sent as checked, so an object whose bytes do not match the version never
// exists.

// segment is one block of an upload: block b, at src in the data file, at `at` in the
// object, n bytes whose xxhash64 is hash.
type segment struct {
	b, src, at, n int64
	hash          uint64
}

// uploadWhole creates the data object of a version stored whole (its payload), unless
// a committed version already names it.
func (t *Tier) uploadWhole(it *item) error {
	v := &it.v
	table, src, err := t.blocks(it)
	if err != nil {
		return err
	}
	if len(table) > 1 {
		it.table = tableBytes(table)
	}
	// A data object of this life with the same bytes, named by a kept manifest, serves
	// again; otherwise a new one, named by this version.
	t.mu.Lock()
	it.key = t.dedup[dedupKey{v.Hash, v.Length}]
	if it.key == "" || t.refs[it.key] == 0 {
		it.key = dataKey(t.cfg.rank, it.life, v.Num, v.Hash, v.Length)
	}
	t.inUse[it.key]++
	t.mu.Unlock()
	if committed, err := t.needObject(it.key); committed || err != nil {
		return err
	}
	segs := make([]segment, len(table))
	for b := range segs {
		lo := int64(b) << crc.BlockShift
		segs[b] = segment{b: int64(b), src: src[b], at: lo, n: min(crc.BlockSize, v.Length-lo), hash: table[b]}
	}
	return t.send(it, it.key, segs, v.Length)
}

// blocks returns the block hashes of the pinned version of it and where its blocks
// are (Host.Blocks), or errAbandoned when a rewind made the version obsolete.
func (t *Tier) blocks(it *item) ([]uint64, []int64, error) {
	table, src, err := t.h.Blocks(it.v.Pin)
	if err != nil && t.isAbandoned(it) {
		return nil, nil, errAbandoned
	}
	return table, src, err
}

// tableBytes returns a block table as the little-endian bytes a manifest holds.
func tableBytes(table []uint64) []byte {
	b := make([]byte, 8*len(table))
	for i, h := range table {
		binary.LittleEndian.PutUint64(b[8*i:], h)
	}
	return b
}

// send creates object key, of size bytes made of segs, retrying transient errors. An
// object that already exists is the same bytes (keys are content-addressed): an
// earlier attempt. Every read of a data object checks its bytes against the block
// hashes its manifest holds, so the store may send them without a checksum of its own
// (store.WithVerifiedContent; S3 then skips the SHA-256 of every byte on both ends).
func (t *Tier) send(it *item, key string, segs []segment, size int64) error {
	return retry(store.WithVerifiedContent(t.ctx), size, func(ctx context.Context) error {
		r := &reader{t: t, it: it, segs: segs, size: size}
		err := t.st.Create(ctx, key, r, size)
		r.release()
		if rerr := r.failure(); rerr != nil {
			return rerr // the local copy is damaged (or the upload was abandoned)
		}
		if errors.Is(err, store.ErrExists) {
			return nil
		}
		return err
	})
}

// reader reads an upload's object out of the data file for the store (Read, ReadAt
// and Seek, so that an S3 store can send parts in parallel and again on a retry),
// checking the bytes of each segment against its hash as it reads them (a retry, or a
// segment read in pieces, is checked again): a segment that does not match fails the
// read, and so the upload, before the object can exist, and the bytes sent are the
// bytes checked. While a large save runs a read waits, so that the save has the cores.
type reader struct {
	t    *Tier
	it   *item
	segs []segment
	size int64
	pos  int64

	mu  sync.Mutex
	err error

	// Segments checked whole in a buffer by a read that cut them, kept for the next
	// pieces: a streaming body reads a segment in pieces (64 KiB for S3, 32 KiB for a
	// directory), which are copied from the bytes checked rather than read from the
	// data file again (it may have changed since). An S3 store reads up to
	// heldSegments parts at once, each a stream of its own.
	heldMu sync.Mutex
	held   [heldSegments]heldSegment
	tick   uint64 // the clock of heldSegment.used
}

// heldSegments is the number of streams of one body whose current segment a reader
// keeps (an S3 store's parts read at once).
const heldSegments = 4

// heldSegment is a segment a reader keeps: segment i, checked, in buf, last read at
// tick used of the reader's clock.
type heldSegment struct {
	i    int
	buf  *[]byte
	used uint64
}

// copyHeld copies bytes [lo, lo+len(dst)) of segment i into dst if r keeps it.
func (r *reader) copyHeld(i int, lo int64, dst []byte) bool {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	for k := range r.held {
		if h := &r.held[k]; h.buf != nil && h.i == i {
			copy(dst, (*h.buf)[lo:])
			r.tick++
			h.used = r.tick
			return true
		}
	}
	return false
}

// hold keeps buf, holding checked segment i: in place of segment i-1 (the same
// stream's previous segment), else of none, else of the segment read least recently
// (a stream that finished its part leaves its last one behind).
func (r *reader) hold(i int, buf *[]byte) {
	r.heldMu.Lock()
	k := -1
	for j, h := range r.held {
		if h.buf != nil && h.i == i-1 {
			k = j
			break
		}
	}
	if k < 0 {
		k = 0
		for j, h := range r.held {
			if h.buf == nil {
				k = j
				break
			}
			if h.used < r.held[k].used {
				k = j
			}
		}
	}
	old := r.held[k].buf
	r.tick++
	r.held[k] = heldSegment{i, buf, r.tick}
	r.heldMu.Unlock()
	if old != nil {
		segBufs.Put(old)
	}
}

// release gives back the buffers r keeps, once the store is done with r.
func (r *reader) release() {
	r.heldMu.Lock()
	held := r.held
	r.held = [heldSegments]heldSegment{}
	r.heldMu.Unlock()
	for _, h := range held {
		if h.buf != nil {
			segBufs.Put(h.buf)
		}
	}
}

// failure returns the error that failed a read, if any.
func (r *reader) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *reader) fail(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	return err
}

// Read reads from the current position.
func (r *reader) Read(p []byte) (int, error) {
	n, err := r.ReadAt(p, r.pos)
	r.pos += int64(n)
	return n, err
}

// Seek moves the position.
func (r *reader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.size
	default:
		return 0, errors.New("remote: bad whence")
	}
	if off < 0 {
		return 0, errors.New("remote: negative position")
	}
	r.pos = off
	return off, nil
}

// ReadAt copies object bytes from off into p.
func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	r.t.yieldToSaves()
	segs := r.segs
	i := sort.Search(len(segs), func(i int) bool { return segs[i].at+segs[i].n > off })
	n := 0
	for n < len(p) && i < len(segs) {
		sg := &segs[i]
		lo := off + int64(n) - sg.at
		k := min(sg.n-lo, int64(len(p)-n))
		dst := p[n : n+int(k)]
		if err := r.readSegment(i, lo, dst); err != nil {
			return n, err
		}
		n += int(k)
		i++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readSegment copies bytes [lo, lo+len(dst)) of segment i into dst, checking the
// whole segment against its hash: the bytes a read returns are bytes it checked.
func (r *reader) readSegment(i int, lo int64, dst []byte) error {
	sg := &r.segs[i]
	if lo == 0 && int64(len(dst)) == sg.n {
		if err := r.read(dst, sg.src); err != nil {
			return err
		}
		return r.check(sg, dst)
	}
	if r.copyHeld(i, lo, dst) {
		return nil
	}
	// A read that cuts the segment: the whole segment is read and checked in a buffer,
	// kept for the next pieces.
	buf := segBufs.Get().(*[]byte)
	if int64(cap(*buf)) < sg.n {
		*buf = make([]byte, sg.n)
	}
	whole := (*buf)[:sg.n]
	err := r.read(whole, sg.src)
	if err == nil {
		err = r.check(sg, whole)
	}
	if err != nil {
		segBufs.Put(buf)
		return err
	}
	copy(dst, whole[lo:])
	r.hold(i, buf)
	return nil
}

// check checks the bytes b of segment sg against its hash.
func (r *reader) check(sg *segment, b []byte) error {
	if xxhash.Sum64(b) == sg.hash {
		return nil
	}
	if r.t.isAbandoned(r.it) {
		return r.fail(errAbandoned)
	}
	return r.fail(base.Errf(base.ErrCorrupt, "version %d of %q: block %d does not match its hash in the local file; not uploaded", r.it.v.Num, r.it.v.Name, sg.b))
}

// segBufs holds buffers for checking whole segments (blocks of at most 1 MiB, or of a
// version's block size).
var segBufs = sync.Pool{New: func() any { b := make([]byte, crc.BlockSize); return &b }}

// read reads len(p) bytes of the data file at off.
func (r *reader) read(p []byte, off int64) error {
	n, err := r.t.h.ReadAt(p, off)
	if err == nil && n < len(p) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		if r.t.isAbandoned(r.it) {
			return r.fail(errAbandoned)
		}
		return r.fail(err)
	}
	return nil
}

// yieldToSaves waits while a large save runs (it uses every core), unless the tier is
// stopping.
func (t *Tier) yieldToSaves() {
	for t.h.Busy() && t.ctx.Err() == nil {
		time.Sleep(100 * time.Microsecond)
	}
}
