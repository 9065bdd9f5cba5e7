package engine

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/ckp-go/ckp/internal/copier"
	"github.com/ckp-go/ckp/internal/slot"
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
	defaultBlockShift = 12
	minDiffBlocks     = 16 // smaller regions are saved whole
	maxChain          = 64 // deltas after a full version, at most
)

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
	// Found by number and slot, not by its record's place in the index: a rewrite of
	// the index (compaction, a rewind) moves records while a restore holds v.
	i := s.held() - 1
	for i >= 0 {
		if h := s.heldAt(i); h.num == v.num && h.off == v.off {
			break
		}
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
func (f *File) blockTrailer(data []byte, v *version, nameLen int) (slot.Trailer, error) {
	end := v.off + v.footprint(nameLen)
	if v.off < slot.HeaderSize || end > int64(len(data)) || end < v.off {
		return slot.Trailer{}, errf(ErrCorrupt, "version %d lies beyond the end of the data file", v.num)
	}
	t, ok := slot.ReadTrailer(data[v.off+pad8(v.lay.Payload):end], f.seed)
	if !ok || t.Kind == slot.KindClassic || t.Blocks != v.lay || t.Version != v.num || t.Txn != v.txn || t.Hash != v.hash {
		return slot.Trailer{}, errf(ErrCorrupt, "version %d: block trailer does not match the index", v.num)
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
		if ci == 0 && t.Kind != slot.KindFull || ci > 0 && t.Kind != slot.KindDelta {
			return nil, nil, errf(ErrCorrupt, "version %d: chain of deltas is broken", v.num)
		}
		err = t.Walk(func(i, b, off, l int64) error {
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
	if xxhash.Sum64(slot.TableBytes(table)) != last.hash {
		return nil, nil, errf(ErrCorrupt, "version %d: its block map does not match its hash", last.num)
	}
	return table, src, nil
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
	runs := copier.Runs(src, v.lay.Shift, v.length)
	tb := slot.TableBytes(table)
	data := f.data.Bytes()
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	b := &f.batchBuf
	b.Reset(copier.Copy)
	b.AddRuns(runs, data, dst, tb, v.lay.Shift)
	f.pool.Run(b)
	if err := b.Err(); err != nil {
		return err
	}
	b.Reset(copier.Verify)
	b.Add(copier.Job{Src: dst, Table: tb, Shift: v.lay.Shift})
	f.pool.Run(b)
	if err := b.Err(); err != nil {
		return err
	}
	if b.Mismatch() {
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
	if t.Kind == slot.KindFull && xxhash.Sum64(t.Table) != v.hash {
		return errf(ErrCorrupt, "version %d: block table does not match its hash", v.num)
	}
	payload := data[v.off : v.off+t.Blocks.Payload]
	return t.Walk(func(i, b, off, l int64) error {
		if xxhash.Sum64(payload[off:off+l]) != binary.LittleEndian.Uint64(t.Table[8*i:]) {
			return errf(ErrCorrupt, "version %d: block %d does not match its hash", v.num, b)
		}
		return nil
	})
}

// fillBlocks copies what c's save stores by blocks into its slot: the whole region for
// a full version, the changed blocks for a delta; then the block numbers and hashes.
// The trailer's header, name and fixed part come after (slot.WriteBlockTrailer).
func (f *File) fillBlocks(data []byte, c *Checkpoint) error {
	d := c.diff
	lay := &c.slot.lay
	region := c.region
	n := int64(len(region))
	dst := data[c.slot.off : c.slot.off+lay.Payload]
	t0 := c.slot.off + pad8(lay.Payload)
	tr := data[t0 : t0+slot.Fixed+lay.ExtLen(len(c.name))]
	idx, hashes := slot.BlockParts(tr, lay)
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
	if !lay.Delta() {
		f.copyRegion(dst, region)
		copy(hashes, slot.TableBytes(d.table))
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
	if len(src) < copier.Threshold || f.pool.Helpers() == 0 {
		bs := 1 << shift
		for b, off := 0, 0; off < len(src); b, off = b+1, off+bs {
			end := min(off+bs, len(src))
			binary.LittleEndian.PutUint64(table[8*b:], copier.CopyHash(dst[off:end], src[off:end]))
		}
		return
	}
	f.runSaveJob(copier.Save, copier.Job{Src: src, Dst: dst, Table: table, Shift: shift})
}

// copyRegion copies src to dst, on both cores when large.
func (f *File) copyRegion(dst, src []byte) {
	if len(src) < copier.Threshold || f.pool.Helpers() == 0 {
		copy(dst, src)
		return
	}
	f.runSaveJob(copier.Copy, copier.Job{Src: src, Dst: dst})
}

// runSaveJob runs one job of a save on the workers, counted as a save in progress.
func (f *File) runSaveJob(kind copier.Kind, j copier.Job) {
	f.activeSaves(1)
	defer f.activeSaves(-1)
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	b := &f.batchBuf
	b.Reset(kind)
	b.Add(j)
	f.pool.Run(b)
}

// blockPlan is where the blocks of a version stored by blocks are in the data file,
// with the hash each must have.
type blockPlan struct {
	runs  []copier.Run
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
	return &blockPlan{runs: copier.Runs(src, v.lay.Shift, v.length), tb: slot.TableBytes(table), shift: v.lay.Shift}, nil
}

// check verifies every block of the plan in data, one after the other.
func (p *blockPlan) check(data []byte) error {
	for _, r := range p.runs {
		bs := int64(1) << p.shift
		for o, b := int64(0), r.B0; o < r.N; o, b = o+bs, b+1 {
			if xxhash.Sum64(data[r.Data+o:r.Data+min(o+bs, r.N)]) != binary.LittleEndian.Uint64(p.tb[8*b:]) {
				return errMismatch
			}
		}
	}
	return nil
}
