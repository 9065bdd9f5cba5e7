package engine

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/dirty"
)

// Differential saves (Options.Differential). A region of at least minDiffBlocks blocks
// is stored by blocks: each version is either full (every block, with a table of one
// xxhash64 per block) or a delta (only the blocks that changed since the version
// before it, with their numbers and hashes). The version's hash is the xxhash64 of the
// table of all its block hashes (little-endian uint64 each), so a restore checks every
// block it copies and, through that hash, the block map that chose them.
//
// Which blocks changed: where the kernel can track written pages (package dirty), the
// pages written since the previous save are hashed and compared with the previous
// version's hashes; everywhere else every block is hashed and compared. A region whose
// program writes most of its pages between saves (a dense writer) is not tracked: the
// first write to each protected page costs the program a fault, more than hashing the
// region would. The rule (docs/FORMAT.md, "Differential saves"):
//
//   - a tracked region with more than denseFraction of its pages written in
//     denseSaves saves in a row stops being tracked;
//   - a hashed region with less than sparseFraction of its blocks changed in
//     sparseSaves saves in a row is tracked again.
//
// A full version is written when there is no base (the first save, another size or
// block size, a base that cannot be read), when the chain of deltas since the last full
// version reaches maxChain, when the chain's payload with this delta would outweigh
// the region, when more than fullShare of the blocks changed, right after a save that
// changed that much (copied and hashed in one pass, with no first pass), and when no
// room would be left under MaxSize for the full version the chain needs next
// (docs/FORMAT.md has the whole rule).

const (
	minBlockShift     = 12 // 4 KiB: a page, the granularity of kernel tracking
	maxBlockShift     = 21 // 2 MiB: one piece of the copy engine
	defaultBlockShift = 12
	minDiffBlocks     = 16 // smaller regions are saved whole
	maxChain          = 64
	fullShare         = 0.25 // more blocks changed than this: a full version
	denseFraction     = 0.25
	denseSaves        = 2
	sparseFraction    = 0.05
	sparseSaves       = 4
)

// diffState is the differential bookkeeping of one registered checkpoint. It is used
// under the Checkpoint's mutex only.
type diffState struct {
	shift uint8
	nblk  int64

	table   []uint64 // block hashes of version tableOf, the base of the next delta; nil: none
	tableOf uint64
	chain   int   // deltas since the last full version, up to and including tableOf
	chainB  int64 // their payload bytes

	trk     *dirty.Tracker // live kernel tracking, or nil
	tracked atomic.Bool    // trk != nil, for Info (which does not hold the Checkpoint's lock)
	expect  atomic.Int64   // slot bytes the next save likely needs (0: a full version), for the prefaulter
	noTrack string         // why the kernel can never track this region, or ""
	hashing bool           // change detection by hashing (not tracked now)
	why     string         // why not tracked now
	dense   int            // tracked saves in a row above denseFraction
	sparse  int            // hashed saves in a row below sparseFraction
	busy    bool           // the last save changed more than fullShare of the blocks

	// The save in progress.
	p diffPlan

	// Scratch, kept between saves.
	mark    []uint64 // bitset of candidate blocks
	hbuf    []uint64 // new hashes, by block
	changed []uint32 // changed blocks, ascending
	old     []uint64 // their hashes before the save (to undo)
	tbytes  []byte   // the table as bytes, on big-endian machines
}

// diffPlan is what prepareDiff decided for one save.
type diffPlan struct {
	active  bool   // the save goes by blocks
	full    bool   // every block is stored
	fused   bool   // full, known before reading the region: copied and hashed in one pass
	tracked bool   // candidates came from the tracker
	fresh   bool   // table was built by this save (undo: drop it)
	pages   int    // pages the tracker reported (tracked saves)
	hash    uint64 // the version's hash
	lay     blockLayout
}

// newDiffState returns the bookkeeping for a region of n bytes, or nil when the region
// is saved whole.
func (f *File) newDiffState(n int) *diffState {
	if !f.opts.Differential || int64(n) < minDiffBlocks<<f.blockShift {
		return nil
	}
	d := &diffState{shift: f.blockShift, nblk: blockCount(int64(n), f.blockShift)}
	if f.opts.NoTracking {
		d.noTrack = "Options.NoTracking"
	} else if err := dirty.Available(); err != nil {
		d.noTrack = err.Error()
	}
	if d.noTrack != "" {
		d.hashing, d.why = true, d.noTrack
	}
	return d
}

// close stops the region's tracking.
func (d *diffState) close() {
	if d != nil && d.trk != nil {
		_ = d.trk.Close()
		d.trk = nil
		d.tracked.Store(false)
	}
}

// tableBytes returns the table as the little-endian bytes its hash is defined over.
func (d *diffState) tableBytes() []byte {
	if len(d.table) == 0 {
		return nil
	}
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&d.table[0])), 8*len(d.table))
	}
	d.tbytes = d.tbytes[:0]
	for _, h := range d.table {
		d.tbytes = binary.LittleEndian.AppendUint64(d.tbytes, h)
	}
	return d.tbytes
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// blockLen is the length of block b of a region of n bytes.
func blockLen(b int64, shift uint8, n int64) int64 {
	return min(int64(1)<<shift, n-b<<shift)
}

// prepareDiff decides how c's save goes: it finds the changed blocks, chooses a full
// version or a delta, and computes the version's hash. It reads the region (and the
// data file, to load the base's hashes) and sets c.slot.blocks and c.slot.lay. The
// caller holds c.mu and the File's operation lock, not f.mu. On failure of the save
// after it, undoDiff puts everything back.
//
// With deltaOnly (the full version did not fit under MaxSize), the save is a delta
// whenever there is a base, whatever the rules for a full version say.
func (f *File) prepareDiff(c *Checkpoint, deltaOnly bool) error {
	d := c.diff
	d.p = diffPlan{active: true}
	region := c.region
	n := int64(len(region))
	newest, haveNewest := f.newestOf(c.st)
	if !haveNewest || d.table == nil || d.tableOf != newest.num {
		// No base in memory (first save of this registration, or versions saved through
		// another path): take the newest version's hashes from the file, if it is stored
		// by blocks of this size.
		d.table = nil
		if haveNewest {
			f.loadTable(c, &newest)
		}
	}
	limit := maxChain
	if f.opts.chainLimit > 0 {
		limit = f.opts.chainLimit
	}
	if d.table == nil || !deltaOnly && (d.chain >= limit || d.busy) {
		// A full version, known before reading the region: no base, the chain is
		// at its limit, or the region changed more than fullShare of its blocks last
		// time (a dense writer, likely to do it again). Copy and hash in one pass, as a
		// whole save does; the tracker's report is consumed (the save reads every page).
		if d.trk != nil {
			d.p.pages, _ = d.trk.Written(d.markNothing)
		}
		d.p.full, d.p.fused, d.p.fresh = true, true, d.table == nil
		d.p.lay = blockLayout{RegionLen: n, Shift: d.shift, K: d.nblk, Payload: n}
		d.changed, d.old = d.changed[:0], d.old[:0]
		c.slot.blocks, c.slot.lay = true, d.p.lay
		return nil
	}
	// Candidate blocks: what the tracker reports, or every block.
	if cap(d.mark) < int(d.nblk+63)/64 {
		d.mark = make([]uint64, (d.nblk+63)/64)
	}
	d.mark = d.mark[:(d.nblk+63)/64]
	clear(d.mark)
	all := true
	if d.trk != nil {
		pages, err := d.trk.Written(d.markRange)
		d.p.pages = pages
		if err == nil && d.table != nil {
			all = false
			d.p.tracked = true
		}
	}
	if cap(d.hbuf) < int(d.nblk) {
		d.hbuf = make([]uint64, d.nblk)
	}
	d.hbuf = d.hbuf[:d.nblk]
	if all {
		f.hashBlocks(region, d.shift, d.hbuf, 0, d.nblk)
	} else {
		f.hashMarked(c)
	}
	// Changed blocks.
	d.changed, d.old = d.changed[:0], d.old[:0]
	var payload int64
	if d.table == nil {
		d.table = append(make([]uint64, 0, d.nblk), d.hbuf...)
		d.p.fresh = true
		d.p.full = true
	} else {
		for w, m := range d.mark {
			if all {
				m = ^uint64(0)
			}
			for m != 0 {
				b := int64(w)*64 + int64(trailingZeros(m))
				m &= m - 1
				if b >= d.nblk {
					break
				}
				if h := d.hbuf[b]; h != d.table[b] {
					d.changed = append(d.changed, uint32(b))
					d.old = append(d.old, d.table[b])
					d.table[b] = h
					payload += blockLen(b, d.shift, n)
				}
			}
		}
		k := int64(len(d.changed))
		d.p.full = !deltaOnly && (d.chainB+payload > n || float64(k) > fullShare*float64(d.nblk) || !f.roomAfter(c, payload, k))
	}
	if d.p.full {
		d.p.lay = blockLayout{RegionLen: n, Shift: d.shift, K: d.nblk, Payload: n}
	} else {
		// A delta may hold no block at all: nothing changed, the version is its base's
		// bytes under a new number.
		d.p.lay = blockLayout{RegionLen: n, Shift: d.shift, Base: newest.num, K: int64(len(d.changed)), Payload: payload}
	}
	d.p.hash = xxhash.Sum64(d.tableBytes())
	c.slot.blocks = true
	c.slot.lay = d.p.lay
	return nil
}

func trailingZeros(x uint64) int { return bits.TrailingZeros64(x) }

func popCount(x uint64) int { return bits.OnesCount64(x) }

// markNothing discards a tracker's report.
func (d *diffState) markNothing(start, end int) {}

// markRange marks the blocks holding bytes [start, end) of the region as candidates.
func (d *diffState) markRange(start, end int) {
	if end <= start {
		return
	}
	for b := int64(start) >> d.shift; b <= int64(end-1)>>d.shift && b < d.nblk; b++ {
		d.mark[b>>6] |= 1 << (b & 63)
	}
}

// hashMarked hashes the candidate blocks of c's region into d.hbuf, on both cores when
// they add up to a lot.
func (f *File) hashMarked(c *Checkpoint) {
	d := c.diff
	region := c.region
	n := int64(len(region))
	count := int64(0)
	for _, bits := range d.mark {
		count += int64(popCount(bits))
	}
	if count<<d.shift < parallelThreshold || f.pool.n == 0 {
		for w, bits := range d.mark {
			for bits != 0 {
				b := int64(w)*64 + int64(trailingZeros(bits))
				bits &= bits - 1
				if b < d.nblk {
					lo := b << d.shift
					d.hbuf[b] = xxhash.Sum64(region[lo : lo+blockLen(b, d.shift, n)])
				}
			}
		}
		return
	}
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	bt := &f.batchBuf
	bt.reset(jobHash)
	hb := unsafe.Slice((*byte)(unsafe.Pointer(&d.hbuf[0])), 8*len(d.hbuf))
	for b := int64(0); b < d.nblk; {
		if d.mark[b>>6]&(1<<(b&63)) == 0 {
			b++
			continue
		}
		run := b
		for b < d.nblk && d.mark[b>>6]&(1<<(b&63)) != 0 {
			b++
		}
		bt.add(job{src: region[run<<d.shift : min(b<<d.shift, n)], table: hb[8*run : 8*b], shift: d.shift})
	}
	f.pool.run(bt)
	if !littleEndian {
		for i := range d.hbuf {
			d.hbuf[i] = binary.LittleEndian.Uint64(hb[8*i:])
		}
	}
}

// hashBlocks hashes blocks [lo, hi) of region into out, on both cores for large ranges.
func (f *File) hashBlocks(region []byte, shift uint8, out []uint64, lo, hi int64) {
	n := int64(len(region))
	from, to := lo<<shift, min(hi<<shift, n)
	if to-from < parallelThreshold || f.pool.n == 0 {
		for b := lo; b < hi; b++ {
			s := b << shift
			out[b] = xxhash.Sum64(region[s : s+blockLen(b, shift, n)])
		}
		return
	}
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	bt := &f.batchBuf
	bt.reset(jobHash)
	ob := unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 8*len(out))
	bt.add(job{src: region[from:to], table: ob[8*lo : 8*hi], shift: shift})
	f.pool.run(bt)
	if !littleEndian {
		for b := lo; b < hi; b++ {
			out[b] = binary.LittleEndian.Uint64(ob[8*b:])
		}
	}
}

// newestOf decodes the newest kept version of s.
func (f *File) newestOf(s *ckptState) (version, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return s.newest()
}

// loadTable sets c.diff's table to the block hashes of version v, read from the data
// file along its chain of deltas, when v is stored by blocks of c's layout and its
// chain reads back. Otherwise the table stays nil and the save is full.
func (f *File) loadTable(c *Checkpoint, v *version) {
	d := c.diff
	if !v.blocks || v.lay.Shift != d.shift || v.length != int64(len(c.region)) {
		return
	}
	chain, err := f.chainOf(c.st, v)
	if err != nil {
		return
	}
	table, _, err := f.assembleTable(chain, len(c.name), false)
	if err != nil {
		return
	}
	d.table, d.tableOf = table, v.num
	d.chain, d.chainB = len(chain)-1, 0
	for _, m := range chain[1:] {
		d.chainB += m.lay.Payload
	}
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
		off := v.off
		prev := int64(-1)
		for i := int64(0); i < t.Blocks.K; i++ {
			b := i
			if t.Kind == trailerDelta {
				b = int64(binary.LittleEndian.Uint32(t.Index[4*i:]))
				if b <= prev || b >= nb {
					return nil, nil, errf(ErrCorrupt, "version %d: block list out of order", v.num)
				}
				prev = b
			}
			table[b] = binary.LittleEndian.Uint64(t.Table[8*i:])
			if where {
				src[b] = off
			}
			off += blockLen(b, v.lay.Shift, v.length)
			if off > v.off+t.Blocks.Payload {
				return nil, nil, errf(ErrCorrupt, "version %d: blocks overrun the payload", v.num)
			}
		}
		if off != v.off+t.Blocks.Payload {
			return nil, nil, errf(ErrCorrupt, "version %d: blocks do not fill the payload", v.num)
		}
	}
	var h uint64
	if littleEndian {
		h = xxhash.Sum64(unsafe.Slice((*byte)(unsafe.Pointer(&table[0])), 8*len(table)))
	} else {
		b := make([]byte, 0, 8*len(table))
		for _, x := range table {
			b = binary.LittleEndian.AppendUint64(b, x)
		}
		h = xxhash.Sum64(b)
	}
	if h != last.hash {
		return nil, nil, errf(ErrCorrupt, "version %d: its block map does not match its hash", last.num)
	}
	return table, src, nil
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

// tableAsBytes returns table as little-endian bytes (aliasing it where the machine is
// little-endian).
func tableAsBytes(table []uint64) []byte {
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

// checkBlocks verifies the slot of a version stored by blocks: its trailer against the
// index, and each block it holds against its hash (a full version's table against the
// version's hash too). A delta's block map is checked against the version's hash along
// its chain when chain is given.
func (f *File) checkBlockSlot(v *version, nameLen int) error {
	data := f.data.Bytes()
	t, err := f.blockTrailer(data, v, nameLen)
	if err != nil {
		return err
	}
	if t.Kind == trailerFull && xxhash.Sum64(t.Table) != v.hash {
		return errf(ErrCorrupt, "version %d: block table does not match its hash", v.num)
	}
	off := v.off
	prev := int64(-1)
	nb := blockCount(v.length, v.lay.Shift)
	for i := int64(0); i < t.Blocks.K; i++ {
		b := i
		if t.Kind == trailerDelta {
			b = int64(binary.LittleEndian.Uint32(t.Index[4*i:]))
			if b <= prev || b >= nb {
				return errf(ErrCorrupt, "version %d: block list out of order", v.num)
			}
			prev = b
		}
		l := blockLen(b, v.lay.Shift, v.length)
		if off+l > v.off+t.Blocks.Payload {
			return errf(ErrCorrupt, "version %d: blocks overrun the payload", v.num)
		}
		if xxhash.Sum64(data[off:off+l]) != binary.LittleEndian.Uint64(t.Table[8*i:]) {
			return errf(ErrCorrupt, "version %d: block %d does not match its hash", v.num, b)
		}
		off += l
	}
	if off != v.off+t.Blocks.Payload {
		return errf(ErrCorrupt, "version %d: blocks do not fill the payload", v.num)
	}
	return nil
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
		copy(hashes, d.tableBytes())
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
	f.activeSaves(1)
	defer f.activeSaves(-1)
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	b := &f.batchBuf
	b.reset(jobSave)
	b.add(job{src: src, dst: dst, table: table, shift: shift})
	f.pool.run(b)
}

// copyRegion copies src to dst, on both cores when large.
func (f *File) copyRegion(dst, src []byte) {
	if len(src) < parallelThreshold || f.pool.n == 0 {
		copy(dst, src)
		return
	}
	f.activeSaves(1)
	defer f.activeSaves(-1)
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	b := &f.batchBuf
	b.reset(jobCopy)
	b.add(job{src: src, dst: dst})
	f.pool.run(b)
}

// finishDiff ends c's save in its differential bookkeeping: on success the table is
// the new version's and the tracking rule is applied; on failure everything prepareDiff
// changed is put back, and the tracker (whose report this save consumed) reports every
// page next time.
func (f *File) finishDiff(c *Checkpoint, published bool) {
	d := c.diff
	if !d.p.active {
		return
	}
	p := &d.p
	p.active = false
	if !published {
		for i, b := range d.changed {
			d.table[b] = d.old[i]
		}
		if p.fresh {
			d.table = nil
		}
		if d.trk != nil {
			d.trk.MarkAll()
		}
		return
	}
	changed := len(d.changed)
	if p.fused {
		// The table is the one the copy computed; count what changed against the old.
		changed = int(d.nblk)
		if d.table != nil {
			changed = 0
			for b, h := range d.hbuf {
				if h != d.table[b] {
					changed++
				}
			}
		}
		d.table, d.hbuf = d.hbuf, d.table
	}
	d.busy = !p.fresh && float64(changed) > fullShare*float64(d.nblk)
	d.tableOf = c.slot.ver
	if p.full {
		d.chain, d.chainB = 0, 0
		d.expect.Store(0)
	} else {
		d.chain++
		d.chainB += p.lay.Payload
		// The next delta is likely about as large: the prefaulter readies that much
		// (with room to spare), not a whole region.
		d.expect.Store(p.lay.footprint(len(c.name)) * 5 / 4)
	}
	// The tracking rule.
	switch {
	case d.trk != nil:
		if float64(p.pages) > denseFraction*float64(d.trk.Pages()) {
			d.dense++
		} else {
			d.dense = 0
		}
		if d.dense >= denseSaves {
			d.close()
			d.hashing, d.why = true, fmt.Sprintf("dense writer: over %.0f%% of its pages written in %d saves in a row", 100*denseFraction, denseSaves)
			d.dense, d.sparse = 0, 0
		}
	case d.noTrack != "":
		// Never tracked here.
	default:
		sparse := !p.fresh && float64(changed) < sparseFraction*float64(d.nblk)
		if sparse {
			d.sparse++
		} else {
			d.sparse = 0
		}
		if !d.hashing || d.sparse >= sparseSaves {
			// Track from now on: the region holds exactly this version's bytes (the
			// caller does not write it during a save).
			t, err := dirty.Track(c.region)
			if err != nil {
				d.noTrack = err.Error()
				d.hashing, d.why = true, d.noTrack
				return
			}
			d.trk, d.hashing, d.why, d.sparse = t, false, "", 0
			d.tracked.Store(true)
		}
	}
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

// roomAfter reports whether, after a delta of k blocks and payload bytes, the data file
// still has room under MaxSize for a full version of c's region: the chain's next full
// version can only be written while the chain is still held, so a chain that ate that
// room would leave every later save failing with ErrFull. Far from the limit it costs
// one comparison.
func (f *File) roomAfter(c *Checkpoint, payload, k int64) bool {
	d := c.diff
	n := int64(len(c.region))
	full := blockLayout{RegionLen: n, Shift: d.shift, K: d.nblk, Payload: n}
	delta := blockLayout{RegionLen: n, Shift: d.shift, Base: 1, K: k, Payload: payload}
	need := full.footprint(len(c.name)) + payloadAlign(n) + delta.footprint(len(c.name)) + payloadAlign(max(payload, 1))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.opts.MaxSize-f.alloc.end >= need {
		return true
	}
	// Near the limit: place the delta and then the full version as the allocator would.
	_, _, end := f.alloc.plan([]int64{delta.footprint(len(c.name)), full.footprint(len(c.name))},
		[]int64{payloadAlign(max(payload, 1)), payloadAlign(n)}, nil, nil)
	return end <= f.opts.MaxSize
}
