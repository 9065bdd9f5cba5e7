package engine

import (
	"errors"
	"math"
	"runtime/debug"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/internal/copier"
	"github.com/ckp-go/ckp/internal/slot"
)

// save writes one new version of each checkpoint in cs as one transaction. The caller
// holds f.begin and every c.mu. The steps:
//
//  1. allocate a slot per region (under f.mu), growing the data file if needed;
//  2. copy and hash each region into its slot (on both cores when large), then write
//     each slot's trailer;
//  3. at a durable point, make the data durable (this save's and every earlier
//     unsynced one's);
//  4. publish: append the transaction's records to the index (under f.mu) and apply
//     them: new versions become visible, retention drops the oldest;
//  5. at a durable point, make the index durable; under SyncAsync, start write-back.
//
// Until step 4 nothing is visible: an error or a crash before it leaves every earlier
// version as it was, and the slots are free again.
func (f *File) save(cs []*Checkpoint) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	for _, c := range cs {
		if c.diff != nil {
			return f.saveWithDiffs(cs)
		}
	}
	var published bool
	return f.saveSlots(cs, &published)
}

// saveWithDiffs is save for a set of checkpoints of which some are differential: their
// changed blocks are found first (prepareDiff), and their bookkeeping follows the
// outcome (finishDiff).
func (f *File) saveWithDiffs(cs []*Checkpoint) error {
	err := f.saveDiffsOnce(cs, false)
	if errors.Is(err, ErrFull) {
		// A full version does not fit under MaxSize while its chain is held: deltas
		// instead, where there is a base, rather than no save at all.
		err = f.saveDiffsOnce(cs, true)
	}
	return err
}

// saveDiffsOnce prepares the differential checkpoints of cs (with deltaOnly, a delta
// wherever there is a base) and saves.
func (f *File) saveDiffsOnce(cs []*Checkpoint, deltaOnly bool) error {
	var published bool
	defer func() {
		for _, c := range cs {
			if c.diff != nil {
				f.finishDiff(c, published)
			}
		}
	}()
	for _, c := range cs {
		if c.diff != nil {
			if err := f.prepareDiff(c, deltaOnly); err != nil {
				return err
			}
		}
	}
	return f.saveSlots(cs, &published)
}

// saveSlots runs the steps above; *published is set once the save's records are in the
// index (the versions exist, even if a later step fails).
func (f *File) saveSlots(cs []*Checkpoint, published *bool) (err error) {
	// Remote tier: report a permanent upload failure, or wait while too much is
	// pending (MaxPending), before anything is allocated.
	if err := f.admitRemote(cs); err != nil {
		return err
	}
	durablePoint, txn, err := f.allocate(cs)
	if err != nil {
		return err
	}
	defer func() {
		if !*published {
			f.unallocate(cs)
		}
	}()
	now, err := f.fill(cs, txn)
	if err != nil {
		return err
	}
	if durablePoint {
		f.syncMu.Lock()
		defer f.syncMu.Unlock()
		return f.publishDurable(cs, txn, now, published)
	}
	if err := f.publish(cs, txn, now, false); err != nil {
		return err
	}
	*published = true
	if f.opts.Sync.kind == syncAsync {
		f.startWriteback(cs)
	}
	if f.compactDue.Load() {
		f.maybeCompact()
	}
	if f.heldTooMuch.Load() {
		// Slots of durable versions wait for their drop to be durable. When they add up
		// to more than what is kept (KeepVersions lowered on a big file, or saves that
		// never reach a durable point), make the drops durable now so the space is
		// reused instead of the file growing.
		// The save is published: a failure here only delays the reuse; a later save
		// tries again.
		f.heldTooMuch.Store(false)
		_ = f.syncAll()
	}
	return nil
}

// allocate reserves a slot for each checkpoint and a transaction number.
func (f *File) allocate(cs []*Checkpoint) (durablePoint bool, txn uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	txn = f.nextTxn
	f.nextTxn++
	f.saveSeq++
	switch f.opts.Sync.kind {
	case syncAlways:
		durablePoint = true
	case syncEvery:
		durablePoint = f.saveSeq%uint64(f.opts.Sync.n) == 0
	}
	var top int64
	for _, c := range cs {
		need, align := c.need()
		off, size := f.alloc.alloc(need, align)
		c.slot.off, c.slot.size, c.slot.ver, c.slot.hash = off, size, c.st.next, 0
		if c.slot.blocks {
			c.slot.hash = c.diff.p.hash
		}
		top = max(top, off+size)
	}
	var err2 error
	if top > f.opts.MaxSize {
		// One rule for the limit, the one recovery applies: no slot ends past MaxSize.
		err2 = errf(ErrFull, "save of %d region(s) needs the data file to reach %d bytes, MaxSize is %d", len(cs), top, f.opts.MaxSize)
	} else if top > f.data.Size() {
		if err := f.data.Grow(top); err != nil {
			err2 = fileErr("grow", f.path, err)
		}
	}
	if err2 != nil {
		for _, c := range cs {
			f.alloc.free(extent{c.slot.off, c.slot.off + c.slot.size})
			c.slot = slotPlan{}
		}
		f.saveSeq-- // not a save: SyncEvery counts only those made
		return false, 0, err2
	}
	return durablePoint, txn, nil
}

// unallocate gives back the slots of a save that failed before it was published.
func (f *File) unallocate(cs []*Checkpoint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		if c.slot.size > 0 {
			f.alloc.free(extent{c.slot.off, c.slot.off + c.slot.size})
			c.slot = slotPlan{}
		}
	}
}

// fill copies and hashes every region into its slot and writes the trailers.
func (f *File) fill(cs []*Checkpoint, txn uint64) (now int64, err error) {
	defer catch(&err)
	data := f.data.Bytes()
	total := 0
	for _, c := range cs {
		total += len(c.region)
	}
	if total >= copier.Threshold && f.pool.Helpers() > 0 {
		f.activeSaves(1)
		defer f.activeSaves(-1)
		f.batchMu.Lock()
		b := &f.batchBuf
		b.Reset(copier.Save)
		for _, c := range cs {
			if !c.slot.blocks {
				b.Add(saveJob(data, c))
			}
		}
		if b.Len() > 0 {
			f.pool.Run(b)
			err = b.Err()
		}
		f.batchMu.Unlock()
		if err != nil {
			return 0, err
		}
	} else {
		for _, c := range cs {
			if c.slot.blocks {
				continue
			}
			j := saveJob(data, c)
			if j.Table == nil {
				*j.Hash = copier.CopyHash(j.Dst, j.Src)
				continue
			}
			for blk := 0; blk < len(j.Src); blk += crc.BlockSize {
				end := min(blk+crc.BlockSize, len(j.Src))
				h := copier.CopyHash(j.Dst[blk:end], j.Src[blk:end])
				putTable(j.Table, blk/crc.BlockSize, h)
			}
		}
	}
	for _, c := range cs {
		if c.slot.blocks {
			if err := f.fillBlocks(data, c); err != nil {
				return 0, err
			}
		}
	}
	now = f.clock.now()
	for _, c := range cs {
		if c.slot.blocks {
			lay := &c.slot.lay
			t := slot.Trailer{Hash: c.slot.hash, Length: uint64(lay.Payload), Version: c.slot.ver, Txn: txn, Time: now, TxnCount: uint32(len(cs)), Session: f.session}
			t0 := c.slot.off + pad8(lay.Payload)
			clear(data[c.slot.off+lay.Payload : t0])
			slot.WriteBlockTrailer(data[t0:t0+slot.Fixed+lay.ExtLen(len(c.name))], f.seed, &t, lay, c.name)
			continue
		}
		n := int64(len(c.region))
		t0 := c.slot.off + pad8(n)
		if ts := crc.TableSize(n); ts > 0 {
			c.slot.hash = crc.Combine(data[t0+slot.Fixed : t0+slot.Fixed+int64(ts)])
		}
		// The padding between payload and trailer is zeroed so the slot's bytes are
		// fully determined by the save.
		clear(data[c.slot.off+n : t0])
		t := slot.Trailer{Hash: c.slot.hash, Length: uint64(n), Version: c.slot.ver, Txn: txn, Time: now, TxnCount: uint32(len(cs)), Session: f.session}
		slot.WriteTrailer(data[t0:t0+slot.TrailerLen(n, len(c.name))], f.seed, &t, c.name)
	}
	return now, nil
}

// saveJob describes the copy of c's region into its slot.
func saveJob(data []byte, c *Checkpoint) copier.Job {
	n := int64(len(c.region))
	j := copier.Job{Src: c.region, Dst: data[c.slot.off : c.slot.off+n], Hash: &c.slot.hash}
	if ts := crc.TableSize(n); ts > 0 {
		t0 := c.slot.off + pad8(n) + slot.Fixed
		j.Table = data[t0 : t0+int64(ts)]
	}
	return j
}

// publishDurable runs steps 3 to 5 of a save at a durable point. The caller holds
// f.syncMu. The records are published first; then the data written since the last
// durable point (this save's and every earlier unsynced one's) and the index's new
// records are made durable at the same time, on two goroutines, so the save waits for
// one round of device flushes, not two in a row. The save's records may reach the disk
// before its data: they claim durability only for what came before them (FlagDurable),
// and recovery after a reboot checks the data of the transactions after the last claim.
func (f *File) publishDurable(cs []*Checkpoint, txn uint64, now int64, published *bool) error {
	if err := f.publish(cs, txn, now, true); err != nil {
		return err
	}
	*published = true
	fl, err := f.makeDurable(true)
	if err != nil {
		return err
	}
	f.afterDurable(fl)
	f.maybeCompactLocked()
	return nil
}

// afterDurable records a durable point of a save and frees the slots it made reusable.
func (f *File) afterDurable(fl flushed) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.opts.Sync.kind == syncEvery {
		// The next durable point is n saves away: a mark records this one, so that
		// recovery after a reboot checks at most the saves since the one before.
		_ = f.appendMark(fl.covered)
	}
	f.freeDurable()
}

// publish appends the transaction's records and applies them, and queues its slots as
// unsynced data. At a durable point (durable), the commit record also claims that every
// transaction before it is durable, when that is so.
func (f *File) publish(cs []*Checkpoint, txn uint64, now int64, durable bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() {
		return ErrClosed
	}
	recs := f.recBuf[:0]
	for _, c := range cs {
		recs = f.versionRecords(recs, c.st, &c.slot, int64(len(c.region)), now, txn)
	}
	recs[len(recs)-1].Flags |= index.FlagCommit
	start := f.log.records
	if durable && f.log.durable == start {
		// Every transaction before this one is durable: say so.
		recs[len(recs)-1].Flags |= index.FlagDurable
	}
	if err := f.appendRecords(recs); err != nil {
		f.recBuf = recs[:0]
		return err
	}
	f.recBuf = recs[:0]
	end := f.log.records
	for _, c := range cs {
		f.applyVersion(c.st, &c.slot, start, end)
	}
	f.pubSeq++
	f.dirty = true
	f.publishRemote(cs, now) // remote tier: hand it this transaction's versions, pinned
	f.pf.afterSave(cs)
	if f.needCompact() {
		f.compactDue.Store(true)
	}
	if h := f.alloc.held; h > heldMin && h > f.liveBytes {
		f.heldTooMuch.Store(true)
	}
	return nil
}

// versionRecords appends the records that add the version in slot p (n bytes, saved
// at time now, transaction txn) to s: its name's records the first time, its VERSION
// record (p.rec: where, counted from the transaction's first record), its BLOCKS
// record, and what retention drops. Caller holds f.mu.
func (f *File) versionRecords(recs []index.Record, s *ckptState, p *slotPlan, n, now int64, txn uint64) []index.Record {
	if !s.named {
		recs = append(recs, index.NameRecords(s.id, s.name)...)
	}
	p.rec = int64(len(recs))
	fp := slot.Footprint(n, len(s.name))
	var flags uint8
	if p.blocks {
		fp = p.lay.Footprint(len(s.name))
		flags = index.FlagBlocks
	}
	recs = append(recs, index.Record{
		Kind:    index.KindVersion,
		Flags:   flags,
		Ckpt:    s.id,
		Version: p.ver,
		Offset:  uint64(p.off),
		Length:  uint64(n),
		Hash:    p.hash,
		Time:    now,
		Txn:     txn,
		Slack:   uint32(p.size - fp),
	})
	if p.blocks {
		recs = append(recs, p.lay.Record(s.id, p.ver, txn))
	}
	if keep, old := f.opts.KeepVersions, s.n(); keep > 0 && old+1 > keep {
		// After this version is added, the newest keep remain: the version record
		// says how many of the oldest go (one, in a steady hot loop); a drop record
		// says it when that number does not fit.
		d := old + 1 - keep
		if d <= math.MaxUint16 {
			recs[p.rec].Aux = uint16(d)
		} else {
			first := p.ver // the first version kept
			if d < old {
				first = s.at(d).num
			}
			recs = append(recs, index.Record{Kind: index.KindDrop, Ckpt: s.id, Version: first})
		}
	}
	return recs
}

// applyVersion makes the version of slot p, whose records versionRecords wrote into a
// transaction that starts at record start and ends before end, the newest of s:
// retention drops the oldest, and the slot joins the unsynced data. Caller holds f.mu.
func (f *File) applyVersion(s *ckptState, p *slotPlan, start, end int64) {
	if !s.named {
		s.named = true
		f.live += int64(index.NameRecordCount(len(s.name)))
	}
	s.push(start+p.rec, p.ver)
	f.live += recordsOf(p.blocks)
	f.liveBytes += p.size
	if keep := f.opts.KeepVersions; keep > 0 && s.n() > keep {
		for _, rec := range s.dropOldest(s.n() - keep) {
			d := f.decodeVersion(rec, len(s.name))
			f.live -= recordsOf(d.blocks)
			f.liveBytes -= d.size
			f.freeDropped(&d, end)
		}
	}
	f.unsynced = addRange(f.unsynced, extent{p.off, p.off + p.size})
	p.size = 0 // published: no longer ours to free
}

// addRange appends e to rs, merging it with the last range when they touch.
func addRange(rs []extent, e extent) []extent {
	if n := len(rs); n > 0 && rs[n-1].end == e.off {
		rs[n-1].end = e.end
		return rs
	}
	return append(rs, e)
}

func putTable(table []byte, i int, h uint64) {
	e := table[8*i : 8*i+8]
	e[0], e[1], e[2], e[3] = byte(h), byte(h>>8), byte(h>>16), byte(h>>24)
	e[4], e[5], e[6], e[7] = byte(h>>32), byte(h>>40), byte(h>>48), byte(h>>56)
}

// recordsOf is the number of index records a version takes: its VERSION record, and a
// BLOCKS record when it is stored by blocks.
func recordsOf(blocks bool) int64 {
	if blocks {
		return 2
	}
	return 1
}
