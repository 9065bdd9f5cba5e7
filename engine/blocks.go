package engine

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// Versions stored by blocks (Options.Differential). A region of at least minDiffBlocks
// blocks is stored by blocks: each version is either full (every block, with a table of
// one xxhash64 per block) or a delta (only the blocks that changed since the version
// before it, with their numbers and hashes). The version's hash is the xxhash64 of the
// table of all its block hashes (little-endian uint64 each), so a restore checks every
// block it copies and, through that hash, the block map that chose them. A delta reads
// its chain: the full version it starts from and every delta after it, at most
// maxChain. This file writes, reads and checks such versions; which blocks changed is
// found in detect.go. docs/FORMAT.md has the bytes.

const (
	minBlockShift     = 12 // 4 KiB: a page, the granularity of kernel tracking
	maxBlockShift     = 21 // 2 MiB: one piece of the copy engine
	defaultBlockShift = 12
	minDiffBlocks     = 16 // smaller regions are saved whole
	maxChain          = 64 // deltas after a full version, at most
)

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// blockLen is the length of block b of a region of n bytes.
func blockLen(b int64, shift uint8, n int64) int64 {
	return min(int64(1)<<shift, n-b<<shift)
}

// chainOf returns the versions v reads, oldest first: the full version its chain
// starts from, then every delta up to v.
func (f *File) chainOf(s *ckptState, v *version) (chain []version, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.chainLocked(s, v)
}

// chainLocked is chainOf for a caller holding f.mu.
func (f *File) chainLocked(s *ckptState, v *version) ([]version, error) {
	if !v.delta() {
		return []version{*v}, nil
	}
	i := s.held() - 1
	for i >= 0 && s.recs[s.head+i] != v.pos {
		i--
	}
	if i < 0 {
		return nil, errf(ErrCorrupt, "version %d of %q is not held", v.num, s.name)
	}
	var rev []version
	cur := *v
	for {
		rev = append(rev, cur)
		if !cur.delta() {
			break
		}
		if i == 0 {
			return nil, errf(ErrCorrupt, "version %d of %q: its base %d is gone", cur.num, s.name, cur.lay.Base)
		}
		i--
		prev := s.heldAt(i)
		if prev.num != cur.lay.Base || !prev.blocks || prev.lay.Shift != cur.lay.Shift || prev.length != cur.length {
			return nil, errf(ErrCorrupt, "version %d of %q: its base %d is not the version before it", cur.num, s.name, cur.lay.Base)
		}
		cur = prev
	}
	for l, r := 0, len(rev)-1; l < r; l, r = l+1, r-1 {
		rev[l], rev[r] = rev[r], rev[l]
	}
	return rev, nil
}

// blockTrailer reads and checks the trailer of a version stored by blocks against its
// index record.
func (f *File) blockTrailer(data []byte, v *version, nameLen int) (trailer, error) {
	end := v.off + v.footprint(nameLen)
	if v.off < dataHeaderSize || end > int64(len(data)) || end < v.off {
		return trailer{}, errf(ErrCorrupt, "version %d lies beyond the end of the data file", v.num)
	}
	t, ok := readTrailer(data[v.off+pad8(v.lay.Payload):end], f.seed)
	if !ok || t.Kind == trailerClassic || t.Blocks != v.lay || t.Version != v.num || t.Txn != v.txn || t.Hash != v.hash {
		return trailer{}, errf(ErrCorrupt, "version %d: block trailer does not match the index", v.num)
	}
	return t, nil
}

// assembleTable reads the trailers of a chain (oldest first, a full version then
// deltas) and returns the block hashes of its newest version, checked against that
// version's hash. With where, it also returns where each block's bytes are in the data
// file (an offset per block). It reads only trailers, not payloads.
func (f *File) assembleTable(chain []version, nameLen int, where bool) (table []uint64, src []int64, err error) {
	defer catch(&err)
	data := f.data.Bytes()
	last := &chain[len(chain)-1]
	nb := blockCount(last.length, last.lay.Shift)
	table = make([]uint64, nb)
	if where {
		src = make([]int64, nb)
	}
	for ci := range chain {
		v := &chain[ci]
		t, err := f.blockTrailer(data, v, nameLen)
		if err != nil {
			return nil, nil, err
		}
		if ci == 0 && t.Kind != trailerFull || ci > 0 && t.Kind != trailerDelta {
			return nil, nil, errf(ErrCorrupt, "version %d: chain of deltas is broken", v.num)
		}
		err = walkBlocks(&t, func(i, b, off, l int64) error {
			table[b] = binary.LittleEndian.Uint64(t.Table[8*i:])
			if where {
				src[b] = v.off + off
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if xxhash.Sum64(tableAsBytes(table)) != last.hash {
		return nil, nil, errf(ErrCorrupt, "version %d: its block map does not match its hash", last.num)
	}
	return table, src, nil
}

// walkBlocks calls fn for each block the slot of trailer t holds (t from readTrailer, of
// a version stored by blocks), in the order of its payload: i is the block's place in
// the slot (its hash is t.Table[8*i:]), b its number in the region, off where its bytes
// start in the payload and l their length. Before trusting the list it checks what any
// reader must: a delta's block numbers increase and lie inside the region, and the
// blocks fill the payload exactly. It returns fn's first error, or an error wrapping
// ErrCorrupt when the list is bad.
func walkBlocks(t *trailer, fn func(i, b, off, l int64) error) error {
	lay := &t.Blocks
	nb := blockCount(lay.RegionLen, lay.Shift)
	off, prev := int64(0), int64(-1)
	for i := int64(0); i < lay.K; i++ {
		b := i
		if t.Kind == trailerDelta {
			b = int64(binary.LittleEndian.Uint32(t.Index[4*i:]))
			if b <= prev || b >= nb {
				return errf(ErrCorrupt, "version %d: block list out of order", t.Version)
			}
			prev = b
		}
		l := blockLen(b, lay.Shift, lay.RegionLen)
		if off+l > lay.Payload {
			return errf(ErrCorrupt, "version %d: blocks overrun the payload", t.Version)
		}
		if err := fn(i, b, off, l); err != nil {
			return err
		}
		off += l
	}
	if off != lay.Payload {
		return errf(ErrCorrupt, "version %d: blocks do not fill the payload", t.Version)
	}
	return nil
}

// blockRun is a run of blocks of a version whose bytes are consecutive in the data
// file.
type blockRun struct {
	data, region int64 // where the run starts in the data file and in the region
	n            int64 // bytes
	b0, b1       int64 // blocks [b0, b1)
}

// blockRuns coalesces the per-block sources of a version into runs.
func blockRuns(src []int64, shift uint8, n int64) []blockRun {
	var runs []blockRun
	for b := int64(0); b < int64(len(src)); b++ {
		l := blockLen(b, shift, n)
		if k := len(runs) - 1; k >= 0 && runs[k].b1 == b && runs[k].data+runs[k].n == src[b] {
			runs[k].n += l
			runs[k].b1++
			continue
		}
		runs = append(runs, blockRun{data: src[b], region: b << shift, n: l, b0: b, b1: b + 1})
	}
	return runs
}

// tableAsBytes returns table as the little-endian bytes a version's hash is defined
// over, aliasing it where the machine is little-endian.
func tableAsBytes(table []uint64) []byte {
	if len(table) == 0 {
		return nil
	}
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&table[0])), 8*len(table))
	}
	b := make([]byte, 0, 8*len(table))
	for _, x := range table {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return b
}

// readBlocks assembles version v (stored by blocks; chain from chainOf) into dst, a
// scratch buffer: it copies every block from where its chain holds it, then checks
// the whole of dst against the block hashes, whose table was checked against the
// version's hash. It returns an error wrapping errMismatch when a block does not match.
func (f *File) readBlocks(chain []version, nameLen int, dst []byte) (err error) {
	defer catch(&err)
	v := &chain[len(chain)-1]
	table, src, err := f.assembleTable(chain, nameLen, true)
	if err != nil {
		return err
	}
	if int64(len(dst)) != v.length {
		return errf(ErrSize, "version %d holds %d bytes, the region has %d", v.num, v.length, len(dst))
	}
	runs := blockRuns(src, v.lay.Shift, v.length)
	tb := tableAsBytes(table)
	data := f.data.Bytes()
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	b := &f.batchBuf
	b.reset(jobCopy)
	b.addRuns(runs, data, dst, tb, v.lay.Shift)
	f.pool.run(b)
	if err := b.err(); err != nil {
		return err
	}
	b.reset(jobVerify)
	b.add(job{src: dst, table: tb, shift: v.lay.Shift})
	f.pool.run(b)
	if err := b.err(); err != nil {
		return err
	}
	if b.bad.Load() {
		return fmt.Errorf("%w", errMismatch)
	}
	return nil
}

// checkBlockSlot verifies the slot of a version stored by blocks: its trailer against
// the index, and each block it holds against its hash (a full version's table against
// the version's hash too). A delta's block map is checked against the version's hash
// along its chain by assembleTable, not here.
func (f *File) checkBlockSlot(v *version, nameLen int) error {
	data := f.data.Bytes()
	t, err := f.blockTrailer(data, v, nameLen)
	if err != nil {
		return err
	}
	if t.Kind == trailerFull && xxhash.Sum64(t.Table) != v.hash {
		return errf(ErrCorrupt, "version %d: block table does not match its hash", v.num)
	}
	payload := data[v.off : v.off+t.Blocks.Payload]
	return walkBlocks(&t, func(i, b, off, l int64) error {
		if xxhash.Sum64(payload[off:off+l]) != binary.LittleEndian.Uint64(t.Table[8*i:]) {
			return errf(ErrCorrupt, "version %d: block %d does not match its hash", v.num, b)
		}
		return nil
	})
}

// fillBlocks copies what c's save stores by blocks into its slot: the whole region for
// a full version, the changed blocks for a delta; then the block numbers and hashes.
// The trailer's header, name and fixed part come after (writeBlockTrailer).
func (f *File) fillBlocks(data []byte, c *Checkpoint) error {
	d := c.diff
	lay := &c.slot.lay
	region := c.region
	n := int64(len(region))
	dst := data[c.slot.off : c.slot.off+lay.Payload]
	t0 := c.slot.off + pad8(lay.Payload)
	tr := data[t0 : t0+trailerFixed+lay.extLen(len(c.name))]
	idx, hashes := blockParts(tr, lay)
	if d.p.fused {
		// Copy and hash in one pass; the version's hash follows from the table.
		f.copyHashBlocks(dst, region, hashes, d.shift)
		c.slot.hash = xxhash.Sum64(hashes)
		if cap(d.hbuf) < int(d.nblk) {
			d.hbuf = make([]uint64, d.nblk)
		}
		d.hbuf = d.hbuf[:d.nblk]
		for i := range d.hbuf {
			d.hbuf[i] = binary.LittleEndian.Uint64(hashes[8*i:])
		}
		return nil
	}
	if !lay.delta() {
		f.copyRegion(dst, region)
		copy(hashes, tableAsBytes(d.table))
		return nil
	}
	// Runs of consecutive changed blocks are copied together.
	off := int64(0)
	for i := 0; i < len(d.changed); {
		j := i + 1
		for j < len(d.changed) && d.changed[j] == d.changed[j-1]+1 {
			j++
		}
		lo := int64(d.changed[i]) << d.shift
		hi := min(int64(d.changed[j-1]+1)<<d.shift, n)
		copy(dst[off:off+hi-lo], region[lo:hi])
		off += hi - lo
		i = j
	}
	for i, b := range d.changed {
		binary.LittleEndian.PutUint32(idx[4*i:], b)
		binary.LittleEndian.PutUint64(hashes[8*i:], d.table[b])
	}
	return nil
}

// copyHashBlocks copies src to dst and writes the xxhash64 of each block (1<<shift
// bytes) of src into table, little-endian: in one pass, on both cores when large.
func (f *File) copyHashBlocks(dst, src, table []byte, shift uint8) {
	if len(src) < parallelThreshold || f.pool.n == 0 {
		bs := 1 << shift
		for b, off := 0, 0; off < len(src); b, off = b+1, off+bs {
			end := min(off+bs, len(src))
			binary.LittleEndian.PutUint64(table[8*b:], copyHash(dst[off:end], src[off:end]))
		}
		return
	}
	f.runSaveJob(jobSave, job{src: src, dst: dst, table: table, shift: shift})
}

// copyRegion copies src to dst, on both cores when large.
func (f *File) copyRegion(dst, src []byte) {
	if len(src) < parallelThreshold || f.pool.n == 0 {
		copy(dst, src)
		return
	}
	f.runSaveJob(jobCopy, job{src: src, dst: dst})
}

// runSaveJob runs one job of a save on the workers, counted as a save in progress.
func (f *File) runSaveJob(kind jobKind, j job) {
	f.activeSaves(1)
	defer f.activeSaves(-1)
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	b := &f.batchBuf
	b.reset(kind)
	b.add(j)
	f.pool.run(b)
}

// blockPlan is where the blocks of a version stored by blocks are in the data file,
// with the hash each must have.
type blockPlan struct {
	runs  []blockRun
	tb    []byte // block hashes, little-endian, by block
	shift uint8
}

// planBlocks builds the plan of version v of s from its chain's trailers, checking the
// block map against the version's hash. It reads no payload.
func (f *File) planBlocks(s *ckptState, v *version, nameLen int) (*blockPlan, error) {
	chain, err := f.chainOf(s, v)
	if err != nil {
		return nil, err
	}
	table, src, err := f.assembleTable(chain, nameLen, true)
	if err != nil {
		return nil, err
	}
	return &blockPlan{runs: blockRuns(src, v.lay.Shift, v.length), tb: tableAsBytes(table), shift: v.lay.Shift}, nil
}

// check verifies every block of the plan in data, one after the other.
func (p *blockPlan) check(data []byte) error {
	for _, r := range p.runs {
		bs := int64(1) << p.shift
		for o, b := int64(0), r.b0; o < r.n; o, b = o+bs, b+1 {
			if xxhash.Sum64(data[r.data+o:r.data+min(o+bs, r.n)]) != binary.LittleEndian.Uint64(p.tb[8*b:]) {
				return errMismatch
			}
		}
	}
	return nil
}
