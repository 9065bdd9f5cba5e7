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
	fullShare      = 0.25 // more blocks changed than this: a full version
	denseFraction  = 0.25
	denseSaves     = 2
	sparseFraction = 0.05
	sparseSaves    = 4
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
	d.p.hash = xxhash.Sum64(tableAsBytes(d.table))
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
