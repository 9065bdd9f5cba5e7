package engine

import (
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/dirty"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/internal/copier"
	"github.com/ckp-go/ckp/internal/detect"
	"github.com/ckp-go/ckp/internal/slot"
)

// Differential saves (Options.Differential) store a large region by blocks (blocks.go).
// This file finds which blocks changed since the region's previous version, and chooses
// how to find them.
//
// Two ways. Tracking: the kernel reports the pages written since the last save (package
// dirty), and only the blocks holding them are hashed and compared with the previous
// version's hashes. Hashing: every block is hashed and compared. Both give the same
// versions for the same writes; they differ in cost, and in what they can miss.
//
// What tracking cannot see: a write through a long-term pin (an io_uring fixed buffer,
// an RDMA registration, VFIO, host memory registered with a GPU) takes no fault, so the
// kernel never reports it. Two defences:
//
//   - Pins the kernel counts. Around each scan the engine reads the process's pinned
//     and locked memory (dirty.ReadPins). A report is trusted only when there was none
//     at the previous scan (or at Track) nor when this scan began: else the save
//     hashes every block. A region whose reports go on being distrusted stops being
//     tracked until the pins are gone.
//   - The scrub, for pins the kernel charges to no counter of the process (a GPU
//     driver's). Every trusted tracked save also hashes a window of 1/ScrubSaves of the
//     region's blocks (with the blocks the kernel reported, on both cores), the window
//     moving on each save, and compares the blocks the kernel did not report with the
//     previous version's hashes: within ScrubSaves tracked saves every block has been
//     checked. (A save that copies the whole region checks every block.) A difference
//     is a write the kernel did not report. That save hashes every block, so its
//     version holds every change; the region is hashed for the rest of the File's
//     life; the miss is counted (FileInfo.TrackingMisses, and the SESSION record that
//     ckp info reads). Versions saved between the unreported write and the save that
//     found it lack that write; Info names them.
//
// Which way costs less differs by machine: tracking makes the program pay a fault on its
// first write to each page after a save (dirty.FaultCost: about a microsecond here, 25
// on some virtual machines) and the save a scan; hashing costs the save a pass over
// every block. The engine measures what each costs where it runs, and the cost model
// of package internal/detect decides, after each save, whether the region is tracked
// until the next (its doc says how).
//
// A full version is written when there is no base (the first save, another size or
// block size, a base that cannot be read), when the chain of deltas since the last full
// version reaches maxChain, when the chain's payload with this delta would outweigh
// the region, when more than detect.FullShare of the blocks changed, right after a save that
// changed that much (copied and hashed in one pass, with no first pass), and when no
// room would be left under MaxSize for the full version the chain needs next
// (docs/FORMAT.md has the whole rule).

// defaultScrubSaves: every block is checked within this many tracked saves.
const defaultScrubSaves = 256

// diffFile is the differential state of a File as a whole.
type diffFile struct {
	misses atomic.Int64 // writes the kernel did not report, caught by the scrub
	// untracked holds, under File.mu, the names of regions the kernel missed a write
	// of, and why: they are never tracked again while the File is open.
	untracked map[string]string
}

// diffReport is how a region finds its changed blocks, for Info (which does not hold the
// Checkpoint's lock).
type diffReport struct {
	tracked bool
	why     detect.Reason // why not tracked, or why the last save did not trust the tracker
	misses  int
}

// diffState is the differential bookkeeping of one registered checkpoint. It is used
// under the Checkpoint's mutex only, but for report and expect.
type diffState struct {
	name  string
	shift uint8
	nblk  int64
	pages int64 // pages of the region (the policy's unit)

	table   []uint64 // block hashes of version tableOf, the base of the next delta; nil: none
	tableOf uint64
	chain   int   // deltas since the last full version, up to and including tableOf
	chainB  int64 // their payload bytes

	trk     *dirty.Tracker // live kernel tracking, or nil
	repMu   sync.Mutex     // guards report
	report  diffReport
	expect  atomic.Int64  // slot bytes the next save likely needs (0: a full version), for the prefaulter
	noTrack string        // why the kernel never tracks this region (here, or after a miss), or ""
	why     detect.Reason // why not tracked now, or why the last save did not trust the report
	busy    bool          // the last save changed more than detect.FullShare of the blocks
	misses  int           // writes the kernel did not report, caught in this region
	exactAt uint64        // the last version whose save read every block (so holds every write)

	pol      detect.Policy
	cost     detect.Measured // what scanning, hashing and Track cost this region; faults: dirty.FaultCost
	pinned   detect.PinSeen  // at the tracker's last scan or at Track (if bad, its next report is not trusted)
	scrub    int             // tracked saves that check every block (Options.ScrubSaves); 0: no scrub
	scrubAt  int64           // first block of the next scrub window
	distrust int             // tracked saves in a row whose report was not trusted

	// The save in progress.
	p diffPlan

	// Scratch, kept between saves.
	mark    []uint64 // bitset of blocks the tracker reported
	hbuf    []uint64 // new hashes, by block
	changed []uint32 // changed blocks, ascending
	old     []uint64 // their hashes before the save (to undo)
}

// diffPlan is what prepareDiff decided for one save.
type diffPlan struct {
	active      bool   // the save goes by blocks
	full        bool   // every block is stored
	fused       bool   // full, known before reading the region: copied and hashed in one pass
	tracked     bool   // candidates came from the tracker, and the report was trusted
	fresh       bool   // table was built by this save (undo: drop it)
	scanned     bool   // the tracker was scanned (pages is its count)
	pages       int    // pages the tracker reported
	allReported bool   // ... every page of the region (after a restore, a failed save)
	miss        int64  // a block the scrub found changed that the tracker did not report, or -1
	hash        uint64 // the version's hash
	lay         slot.Layout
}

// newDiffState returns the bookkeeping for a region of n bytes called name, or nil when
// the region is saved whole. The caller holds f.mu.
func (f *File) newDiffState(name string, n int) *diffState {
	if !f.opts.Differential || int64(n) < minDiffBlocks<<f.blockShift {
		return nil
	}
	d := &diffState{name: name, shift: f.blockShift, nblk: blockCount(int64(n), f.blockShift),
		pages: int64(max(1, n/dirty.PageSize())), scrub: f.opts.scrubSaves()}
	d.p.miss = -1
	switch {
	case f.opts.NoTracking:
		d.noTrack = "Options.NoTracking"
	case f.diff.untracked[name] != "":
		d.noTrack = f.diff.untracked[name]
	default:
		if err := dirty.Available(); err != nil {
			d.noTrack = err.Error()
		}
	}
	d.why = detect.Reason{Kind: detect.New}
	if d.noTrack != "" {
		d.why = detect.Reason{Kind: detect.Text, Text: d.noTrack}
	}
	d.publish()
	return d
}

// publish makes the region's detection state visible to Info.
func (d *diffState) publish() {
	d.repMu.Lock()
	d.report = diffReport{tracked: d.trk != nil, why: d.why, misses: d.misses}
	d.repMu.Unlock()
}

// reported returns what publish made visible.
func (d *diffState) reported() diffReport {
	d.repMu.Lock()
	defer d.repMu.Unlock()
	return d.report
}

// close stops the region's tracking.
func (d *diffState) close() {
	if d != nil && d.trk != nil {
		_ = d.trk.Close()
		d.trk = nil
	}
}

// prepareDiff decides how c's save goes: it finds the changed blocks, chooses a full
// version or a delta, and computes the version's hash. It reads the region (and the
// data file, to load the base's hashes) and sets c.slot.blocks and c.slot.lay. The
// caller holds c.mu and the File's operation lock, not f.mu. On failure of the save
// after it, finishDiff puts everything back.
//
// With deltaOnly (the full version did not fit under MaxSize), the save is a delta
// whenever there is a base, whatever the rules for a full version say.
func (f *File) prepareDiff(c *Checkpoint, deltaOnly bool) error {
	d := c.diff
	d.p = diffPlan{active: true, miss: -1}
	region := c.region
	n := int64(len(region))
	newest, haveNewest := f.newestOf(c.st)
	reloaded := false
	if !haveNewest || d.table == nil || d.tableOf != newest.num {
		// No base in memory (first save of this registration, or versions saved through
		// another path): take the newest version's hashes from the file, if it is stored
		// by blocks of this size. The tracker's report is relative to what this
		// registration saved last, so it does not apply to that base.
		d.table = nil
		reloaded = true
		if haveNewest {
			f.loadTable(c, &newest)
		}
	}
	if cap(d.mark) < int(d.nblk+63)/64 {
		d.mark = make([]uint64, (d.nblk+63)/64)
	}
	d.mark = d.mark[:(d.nblk+63)/64]
	clear(d.mark)
	if cap(d.hbuf) < int(d.nblk) {
		d.hbuf = make([]uint64, d.nblk)
	}
	d.hbuf = d.hbuf[:d.nblk]
	d.changed, d.old = d.changed[:0], d.old[:0]
	limit := maxChain
	if f.opts.chainLimit > 0 {
		limit = f.opts.chainLimit
	}
	if fullFirst(d.table != nil, d.chain, limit, d.busy, deltaOnly) {
		// A full version, known before reading the region: no base, the chain is
		// at its limit, or the region changed more than detect.FullShare of its blocks last
		// time (a dense writer, likely to do it again). Copy and hash in one pass, as a
		// whole save does. The tracker's report is consumed (the save reads every page)
		// and kept in the marks: finishDiff checks it against what changed.
		if d.trk != nil {
			d.p.tracked = f.scan(d) && !reloaded
		}
		d.p.full, d.p.fused, d.p.fresh = true, true, d.table == nil
		d.p.lay = slot.Layout{RegionLen: n, Shift: d.shift, K: d.nblk, Payload: n}
		c.slot.blocks, c.slot.lay = true, d.p.lay
		return nil
	}
	all := true
	if d.trk != nil && f.scan(d) && !reloaded {
		// The blocks the tracker reported, and the scrub's window with them.
		lo, hi := d.scrubWindow()
		t0 := time.Now()
		k := f.hashMarked(c, lo, hi)
		d.cost.HashW.Add(time.Since(t0), max(1, k<<d.shift/int64(dirty.PageSize())))
		all = false
		d.p.tracked = true
		d.p.miss = d.scrubCheck(lo, hi)
		if d.p.miss < 0 {
			d.scrubAt = hi % d.nblk
		} else {
			all = true // the kernel missed a write: find every one
		}
	}
	if all {
		t0 := time.Now()
		f.hashBlocks(region, d.shift, d.hbuf, 0, d.nblk)
		d.cost.Hash.Add(time.Since(t0), d.pages)
	}
	// Changed blocks.
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
				b := int64(w)*64 + int64(bits.TrailingZeros64(m))
				m &= m - 1
				if b >= d.nblk {
					break
				}
				if h := d.hbuf[b]; h != d.table[b] {
					d.changed = append(d.changed, uint32(b))
					d.old = append(d.old, d.table[b])
					d.table[b] = h
					payload += base.BlockLen(b, d.shift, n)
				}
			}
		}
		k := int64(len(d.changed))
		d.p.full = fullAfter(d.chainB, payload, n, k, d.nblk, deltaOnly, func() bool { return f.roomAfter(c, payload, k) })
	}
	if d.p.full {
		d.p.lay = slot.Layout{RegionLen: n, Shift: d.shift, K: d.nblk, Payload: n}
	} else {
		// A delta may hold no block at all: nothing changed, the version is its base's
		// bytes under a new number.
		d.p.lay = slot.Layout{RegionLen: n, Shift: d.shift, Base: newest.num, K: int64(len(d.changed)), Payload: payload}
	}
	d.p.hash = xxhash.Sum64(slot.TableBytes(d.table))
	c.slot.blocks = true
	c.slot.lay = d.p.lay
	return nil
}

// fullFirst reports whether a save is a full version known before the region is read
// (so copied and hashed in one pass): there is no base, or, unless the save must be a
// delta (deltaOnly), the chain holds limit deltas or the last save changed more than
// detect.FullShare of the blocks (busy).
func fullFirst(haveBase bool, chain, limit int, busy, deltaOnly bool) bool {
	return !haveBase || !deltaOnly && (chain >= limit || busy)
}

// fullAfter reports whether a save that found k of nblk blocks changed, payload bytes
// of a region of n, is a full version rather than a delta: unless it must be a delta,
// when the chain's payload (chainB) with this one would outweigh the region, when more
// than detect.FullShare of the blocks changed, or when room (asked last: it may take the
// File's lock) says no room would be left under MaxSize for the next full version.
func fullAfter(chainB, payload, n, k, nblk int64, deltaOnly bool, room func() bool) bool {
	return !deltaOnly && (chainB+payload > n || float64(k) > detect.FullShare*float64(nblk) || !room())
}

// scan takes the tracker's report into d.mark and reports whether it can be trusted:
// the scan worked, and no memory of the process was pinned at the previous scan (or at
// Track) nor when this one began. Why not goes into d.why.
func (f *File) scan(d *diffState) bool {
	before := detect.ReadPins()
	t0 := time.Now()
	pages, err := d.trk.Written(d.markRange)
	took := time.Since(t0)
	after := detect.ReadPins()
	d.p.scanned, d.p.pages = true, pages
	d.p.allReported = pages >= d.trk.Pages()
	if !d.p.allReported {
		// (A scan that re-protects every page, after a restore, costs what Track does.)
		d.cost.Scan.Add(took, d.pages)
	}
	why := detect.Reason{Kind: detect.Distrust}
	switch {
	case err != nil:
		why.Text = "the kernel's scan failed (" + err.Error() + "): every block hashed, and the region tracked anew"
		d.close()
	case d.pinned.Bad():
		why.Pins = d.pinned
	case before.Bad():
		why.Pins = before
	default:
		why.Kind = detect.None
	}
	// Pins alive during this scan may have been written after it re-protected their
	// pages: the next report is not trusted either.
	d.pinned = after
	if before.Bad() {
		d.pinned = before
	}
	d.why = why
	if why.Kind != detect.None {
		d.distrust++
		return false
	}
	d.distrust = 0
	return true
}

// scrubWindow returns the blocks [lo, hi) this save's scrub checks: 1/d.scrub of the
// region from d.scrubAt (less at the region's end), or an empty window without a scrub.
func (d *diffState) scrubWindow() (lo, hi int64) {
	if d.scrub <= 0 {
		return 0, 0
	}
	k := (d.nblk + int64(d.scrub) - 1) / int64(d.scrub)
	lo = d.scrubAt
	if lo >= d.nblk {
		lo = 0
	}
	d.scrubAt = lo
	return lo, min(lo+k, d.nblk)
}

// scrubCheck compares the blocks of the scrub window [lo, hi) that the tracker did not
// report with the base's hashes, and returns the first that differs (a write the
// kernel did not report), or -1.
func (d *diffState) scrubCheck(lo, hi int64) int64 {
	for b := lo; b < hi; b++ {
		if d.mark[b>>6]&(1<<(b&63)) == 0 && d.hbuf[b] != d.table[b] {
			return b
		}
	}
	return -1
}

// markRange marks the blocks holding bytes [start, end) of the region as written.
func (d *diffState) markRange(start, end int) {
	if end <= start {
		return
	}
	for b := int64(start) >> d.shift; b <= int64(end-1)>>d.shift && b < d.nblk; b++ {
		d.mark[b>>6] |= 1 << (b & 63)
	}
}

// marked reports whether the tracker reported block b.
func (d *diffState) marked(b int64) bool { return d.mark[b>>6]&(1<<(b&63)) != 0 }

// hashMarked hashes into d.hbuf the blocks the tracker reported and the blocks [lo, hi)
// (the scrub's window), on both cores when they add up to a lot, and returns about how
// many blocks it hashed (the window's reported ones counted twice).
func (f *File) hashMarked(c *Checkpoint, lo, hi int64) int64 {
	d := c.diff
	region := c.region
	n := int64(len(region))
	count := hi - lo
	for _, m := range d.mark {
		count += int64(bits.OnesCount64(m))
	}
	if count<<d.shift < copier.Threshold || f.pool.Helpers() == 0 {
		d.eachRun(lo, hi, func(from, to int64) {
			for b := from; b < to; b++ {
				s := b << d.shift
				d.hbuf[b] = xxhash.Sum64(region[s : s+base.BlockLen(b, d.shift, n)])
			}
		})
		return count
	}
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	bt := &f.batchBuf
	bt.Reset(copier.Hash)
	hb := slot.HashBytes(d.hbuf)
	d.eachRun(lo, hi, func(from, to int64) {
		bt.Add(copier.Job{Src: region[from<<d.shift : min(to<<d.shift, n)], Table: hb[8*from : 8*to], Shift: d.shift})
	})
	f.pool.Run(bt)
	slot.FromHashBytes(d.hbuf, hb, 0, d.nblk)
	return count
}

// eachRun calls fn for each run [from, to) of consecutive blocks that the tracker
// reported or that lie in [lo, hi), in order.
func (d *diffState) eachRun(lo, hi int64, fn func(from, to int64)) {
	start := int64(-1)
	for w := range d.mark {
		base := int64(w) * 64
		m := d.mark[w] | windowBits(base, lo, hi)
		switch m {
		case 0:
			if start >= 0 {
				fn(start, base)
				start = -1
			}
			continue
		case ^uint64(0):
			if start < 0 {
				start = base
			}
			continue
		}
		for i := int64(0); i < 64; i++ {
			switch {
			case m&(1<<i) != 0 && start < 0:
				start = base + i
			case m&(1<<i) == 0 && start >= 0:
				fn(start, base+i)
				start = -1
			}
		}
	}
	if start >= 0 {
		fn(start, d.nblk)
	}
}

// windowBits returns the bits of the 64 blocks from base that lie in [lo, hi).
func windowBits(base, lo, hi int64) uint64 {
	a, z := max(lo-base, 0), min(hi-base, 64)
	if a >= z {
		return 0
	}
	m := ^uint64(0) << a
	if z < 64 {
		m &= 1<<z - 1
	}
	return m
}

// hashBlocks hashes blocks [lo, hi) of region into out, on both cores for large ranges.
func (f *File) hashBlocks(region []byte, shift uint8, out []uint64, lo, hi int64) {
	n := int64(len(region))
	from, to := lo<<shift, min(hi<<shift, n)
	if to-from < copier.Threshold || f.pool.Helpers() == 0 {
		for b := lo; b < hi; b++ {
			s := b << shift
			out[b] = xxhash.Sum64(region[s : s+base.BlockLen(b, shift, n)])
		}
		return
	}
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	bt := &f.batchBuf
	bt.Reset(copier.Hash)
	ob := slot.HashBytes(out)
	bt.Add(copier.Job{Src: region[from:to], Table: ob[8*lo : 8*hi], Shift: shift})
	f.pool.Run(bt)
	slot.FromHashBytes(out, ob, lo, hi)
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
// the new version's; on failure everything prepareDiff changed is put back, and the
// tracker (whose report this save consumed) reports every page next time. Either way
// a write the kernel missed ends the region's tracking, and the policy chooses how the
// next save finds its changes.
func (f *File) finishDiff(c *Checkpoint, published bool) {
	d := c.diff
	if !d.p.active {
		return
	}
	p := &d.p
	p.active = false
	defer d.publish()
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
		if p.miss >= 0 {
			f.missed(c, p.miss, 0)
		}
		return
	}
	changed := len(d.changed)
	if p.fused {
		// The table is the one the copy computed; count what changed against the old,
		// and look for changes the tracker did not report.
		changed = int(d.nblk)
		if d.table != nil {
			changed = 0
			for b, h := range d.hbuf {
				if h != d.table[b] {
					changed++
					if p.tracked && p.miss < 0 && !d.marked(int64(b)) {
						p.miss = int64(b)
					}
				}
			}
		}
		d.table, d.hbuf = d.hbuf, d.table
	}
	d.busy = !p.fresh && float64(changed) > detect.FullShare*float64(d.nblk)
	d.tableOf = c.slot.ver
	if p.full {
		d.chain, d.chainB = 0, 0
		d.expect.Store(0)
	} else {
		d.chain++
		d.chainB += p.lay.Payload
		// The next delta is likely about as large: the prefaulter readies that much
		// (with room to spare), not a whole region.
		d.expect.Store(p.lay.Footprint(len(c.name)) * 5 / 4)
	}
	if p.miss >= 0 {
		f.missed(c, p.miss, c.slot.ver)
	}
	if p.full || !p.tracked || p.miss >= 0 || p.allReported {
		d.exactAt = c.slot.ver
	}
	// What this save saw of the program's writes: the pages the tracker reported, or
	// (hashed, or every page reported after a restore or a failed save) the blocks that
	// changed.
	switch {
	case p.scanned && d.trk != nil && !p.allReported:
		d.pol.Observe(float64(p.pages) / float64(d.trk.Pages()))
	case !p.fresh:
		d.pol.Observe(float64(changed) / float64(d.nblk))
	}
	f.chooseDetection(c)
}

// missed handles a write the kernel did not report, found in block b of c's region by
// the save of version found (0: a save that failed): the region is hashed for the rest
// of the File's life, and the miss is counted and recorded.
func (f *File) missed(c *Checkpoint, b int64, found uint64) {
	d := c.diff
	d.close()
	d.misses++
	lacking := ""
	if found > d.exactAt+1 {
		lacking = fmt.Sprintf("; versions %d to %d may lack it", d.exactAt+1, found-1)
	}
	d.noTrack = fmt.Sprintf("the kernel did not report a write (block %d, found by the scrub at version %d%s): hashed for the rest of this File's life", b, found, lacking)
	if found == 0 {
		d.noTrack = fmt.Sprintf("the kernel did not report a write (block %d, found by the scrub; versions from %d on may lack it): hashed for the rest of this File's life", b, d.exactAt+1)
	}
	d.why = detect.Reason{Kind: detect.Text, Text: d.noTrack}
	f.diff.misses.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.diff.untracked == nil {
		f.diff.untracked = make(map[string]string)
	}
	f.diff.untracked[c.name] = d.noTrack
	// A SESSION record carries the count to readers (ckp info); the File works on
	// without it.
	_ = f.appendSession(f.openedAt())
}

// chooseDetection applies the policy after a published save: it starts or stops the
// region's tracking.
func (f *File) chooseDetection(c *Checkpoint) {
	d := c.diff
	if d.noTrack != "" {
		d.close()
		d.why = detect.Reason{Kind: detect.Text, Text: d.noTrack}
		return
	}
	if d.trk != nil && d.distrust >= 2 && d.pinned.Bad() {
		// Pins outlast the saves: every report is distrusted, so the faults buy
		// nothing. Hashed until the pins are gone.
		d.close()
		d.why = detect.Reason{Kind: detect.Untracked, Pins: d.pinned}
		return
	}
	fault, err := dirty.FaultCost()
	if err != nil {
		d.noTrack = err.Error()
		d.close()
		d.why = detect.Reason{Kind: detect.Text, Text: d.noTrack}
		return
	}
	costs := d.cost.Costs(detect.FaultScale * float64(fault.Nanoseconds()))
	if f.opts.costs != nil {
		costs = *f.opts.costs
	}
	track, why := d.pol.Decide(costs, d.scrub, d.trk != nil)
	if f.opts.trackAlways {
		track = true
	}
	switch {
	case !track:
		d.close()
		d.why = why
	case d.trk == nil:
		// Track from now on, unless memory is pinned (its reports would not be
		// trusted): the region holds exactly this version's bytes (the caller does not
		// write it during a save).
		before := detect.ReadPins()
		if before.Bad() {
			d.why = detect.Reason{Kind: detect.Untracked, Pins: before}
			return
		}
		t0 := time.Now()
		t, err := dirty.Track(c.region)
		if err != nil {
			d.noTrack = err.Error()
			d.why = detect.Reason{Kind: detect.Text, Text: d.noTrack}
			return
		}
		d.cost.Track.Add(time.Since(t0), d.pages)
		// Pins alive while Track armed the pages: its first report is not trusted.
		d.pinned = detect.ReadPins()
		d.trk, d.why, d.distrust = t, detect.Reason{}, 0
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
	full := slot.Layout{RegionLen: n, Shift: d.shift, K: d.nblk, Payload: n}
	delta := slot.Layout{RegionLen: n, Shift: d.shift, Base: 1, K: k, Payload: payload}
	need := full.Footprint(len(c.name)) + slot.PayloadAlign(n) + delta.Footprint(len(c.name)) + slot.PayloadAlign(max(payload, 1))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.opts.MaxSize-f.alloc.end >= need {
		return true
	}
	// Near the limit: place the delta and then the full version as the allocator would.
	_, _, end := f.alloc.plan([]int64{delta.Footprint(len(c.name)), full.Footprint(len(c.name))},
		[]int64{slot.PayloadAlign(max(payload, 1)), slot.PayloadAlign(n)}, nil, nil)
	return end <= f.opts.MaxSize
}
