package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/ckp-go/ckp/index"
)

// The remote tier's changes to the local file: versions brought in from the store
// (a restart elsewhere, a restore of a version only the store holds) and rewinds.
// Both go through rewriteIndex, which writes a new index the way compaction does: the
// imported slots are complete (payload, block table, trailer) before it starts; the
// data not yet durable is synced, except the imported slots (the store holds them);
// the new index lists every kept version, then a durable mark covering what came
// before, then the imported versions, so that after a reboot recovery checks those;
// it is written to path.idx.tmp, synced and renamed over path.idx, and the directory
// synced. A crash before the rename leaves the old index, in which the imported slots
// are free space; after it, the new one.

// indexPlan says how rewriteIndex changes the kept versions.
type indexPlan struct {
	upTo map[*ckptState]uint64  // keep only the versions numbered up to this (a rewind)
	add  map[*ckptState]version // insert this filled slot as a version (replacing one of its number)
}

// rewriteIndex replaces the index by one that lists the kept versions as changed by p,
// with KeepVersions applied. A checkpoint in p.upTo continues its numbering after its
// newest version left; one in p.add after the added version, if that is newer. Caller
// holds f.syncMu and f.mu.
func (f *File) rewriteIndex(p indexPlan) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	ranges, all := f.takeUnsynced()
	if err := f.syncData(ranges, all); err != nil {
		f.putUnsynced(ranges)
		return err
	}
	f.syncBuf = ranges[:0]
	s := index.Session{PID: uint32(os.Getpid()), NextTxn: f.nextTxn, BootID: f.bootID, Policy: f.opts.Sync.code(),
		Keep: uint64(f.opts.KeepVersions), Time: time.Now().UnixNano()}
	if ls := f.lastSession; ls != nil {
		s.Time = ls.Opened.UnixNano()
	}
	sr := s.Record()
	sr.Flags = index.FlagCommit
	recs := []index.Record{sr}
	states := sortedStates(f.byID)
	newRecs := make([][]int64, len(states))
	nexts := make([]uint64, len(states))
	live := int64(0)
	type late struct {
		si int
		st *ckptState
		v  version
	}
	var imported []late // added versions that stay: after the durable mark
	pinnedOf := make([]int, len(states))
	for si, st := range states {
		lim, rewound := p.upTo[st]
		add, added := p.add[st]
		var vs []version
		for i := 0; i < st.n(); i++ {
			v := st.at(i)
			if (rewound && v.num > lim) || (added && v.num == add.num) {
				continue
			}
			vs = append(vs, v)
		}
		if added {
			i := len(vs)
			for i > 0 && vs[i-1].num > add.num {
				i--
			}
			vs = append(vs, version{})
			copy(vs[i+1:], vs[i:])
			vs[i] = add
		}
		if keep := f.opts.KeepVersions; keep > 0 && len(vs) > keep {
			vs = vs[len(vs)-keep:]
		}
		// The versions a kept delta reads stay, pinned, ahead of the kept ones: the
		// chain of the oldest kept version, back to its full version.
		// So do those an unfinished upload reads (upFloor).
		var pinned []version
		if len(vs) > 0 {
			floor := vs[0].num
			if vs[0].delta() {
				for i := st.held() - 1; i >= 0; i-- {
					if h := st.heldAt(i); h.num < floor && !h.delta() {
						floor = h.num
						break
					}
				}
			}
			if st.upFloor > 0 {
				floor = min(floor, st.upFloor)
			}
			for i := 0; i < st.held(); i++ {
				if h := st.heldAt(i); h.num >= floor && h.num < vs[0].num {
					pinned = append(pinned, h)
				}
			}
		}
		next := st.next
		if rewound {
			next = 1
			if len(vs) > 0 {
				next = vs[len(vs)-1].num + 1
			}
		}
		if added {
			next = max(next, add.num+1)
		}
		nexts[si] = next
		if !st.named && len(vs) == 0 {
			continue
		}
		recs = append(recs, index.NameRecords(st.id, st.name)...)
		live += int64(index.NameRecordCount(len(st.name)))
		if len(vs) == 0 {
			recs[len(recs)-1].Flags |= index.FlagCommit
			continue
		}
		for _, v := range pinned {
			newRecs[si] = append(newRecs[si], int64(len(recs)))
			recs = append(recs, versionRecords(st, v)...)
			live += recordsOf(v.blocks)
		}
		pinnedOf[si] = len(pinned)
		if len(pinned) > 0 {
			recs = append(recs, index.Record{Kind: index.KindDrop, Ckpt: st.id, Version: vs[0].num, Flags: index.FlagCommit})
		}
		for _, v := range vs {
			if added && v.num == add.num && v.off == add.off {
				imported = append(imported, late{si, st, v}) // the newest: it goes last
				continue
			}
			newRecs[si] = append(newRecs[si], int64(len(recs)))
			recs = append(recs, versionRecords(st, v)...)
			live += recordsOf(v.blocks)
		}
	}
	covered := int64(len(recs))
	recs = append(recs, index.Record{Kind: index.KindMark, Flags: index.FlagCommit | index.FlagDurable,
		Version: uint64(covered), Txn: f.nextTxn - 1, Time: time.Now().UnixNano()})
	for _, x := range imported {
		newRecs[x.si] = append(newRecs[x.si], int64(len(recs)))
		recs = append(recs, versionRecords(x.st, x.v)...)
		live += recordsOf(x.v.blocks)
	}
	h, old, crc, err := f.replaceIndex(recs)
	if err != nil {
		return err
	}
	for si, st := range states {
		st.recs, st.head, st.vis, st.next = newRecs[si], 0, pinnedOf[si], nexts[si]
		if len(newRecs[si]) > 0 {
			st.named = true
		}
	}
	n := int64(len(recs))
	pos := index.HeaderSize + n*index.RecordSize
	f.log = logState{pos: pos, crc: crc, synced: pos, durable: covered + 1, gen: h.Generation, records: n}
	f.live = live
	f.dirty = len(imported) > 0
	for _, x := range imported { // made durable by the next durable point
		f.unsynced = addRange(f.unsynced, x.v.slot())
	}
	f.rebuildFreeSpace()
	f.rm.reclaim()
	f.pf.indexSwapped()
	f.pf.wake()
	old.Close()
	return nil
}

// reclaim marks as in use, after rewriteIndex rebuilt the free space from the new
// index, the slots of queued uploads whose versions the index no longer lists (a rewind
// abandoned them, or retention had dropped them): an upload may be reading them. Caller
// holds f.mu.
func (rm *remote) reclaim() {
	if rm == nil {
		return
	}
	f := rm.f
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for _, it := range rm.bySlot {
		if s := f.byID[it.id]; s != nil {
			if v, err := s.resolve(int(it.ver)); err == nil && v.off == it.off {
				continue // still kept
			}
		}
		if !it.dropped {
			it.dropped = true
			it.slot = extent{it.off, it.off + footprint(it.length, len(it.name))}
		}
		it.dropDurable = false // the new index is durable and does not list it
		f.alloc.claim(it.slot)
	}
}

// rewound abandons the uploads of versions above nums[i] of cs[i] and queues the
// deletion of this rank's committed versions above them, if there are any.
func (rm *remote) rewound(cs []*Checkpoint, nums []uint64) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	queued := false
	for i, c := range cs {
		above := false
		for _, it := range rm.open {
			if it.id == c.st.id && it.kind == itemUpload && it.ver > nums[i] {
				it.abandoned = true
				above = true
			}
		}
		seg := rm.seg(c.st.id, c.name)
		if sc := rm.ckpts[seg]; sc != nil && sc.newest() > nums[i] {
			above = true
		}
		if above {
			rm.enqueue(&upItem{kind: itemDeleteAbove, id: c.st.id, name: c.name, seg: seg, ver: nums[i]})
			queued = true
		}
	}
	if queued {
		rm.signal()
	}
}

// restoreAny restores version v of cs (Restore, RestoreAll: all), from the local file
// or, when the local copy is missing (ErrVersion) or damaged (ErrCorrupt), from the
// store: the store's copy is fetched into a free slot of the data file, checked, and
// only then copied, every region located and checked before any is written. In a job
// of several ranks a RestoreAll also rewinds: each checkpoint's versions above the one
// restored are dropped, locally and from this rank's store, and its next save
// continues right after it, so that every rank's version numbers stay in step after a
// restart at the job version. The caller holds f.begin and every c.mu.
func (f *File) restoreAny(cs []*Checkpoint, v int, all bool) error {
	rm := f.rm
	if rm == nil {
		return f.restore(cs, v)
	}
	if all && rm.cfg.ranks > 1 {
		return f.remoteRestore(cs, v, nil, true)
	}
	err := f.restore(cs, v)
	if err == nil || (!errors.Is(err, ErrVersion) && !errors.Is(err, ErrCorrupt)) {
		return err
	}
	return f.remoteRestore(cs, v, err, false)
}

// remoteRestore is restoreAny's path through the store; localErr is the local
// restore's failure (nil on the rewind path, which does not try the local one first).
func (f *File) remoteRestore(cs []*Checkpoint, v int, localErr error, rewind bool) (err error) {
	rm := f.rm
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	nums := make([]uint64, len(cs))
	f.mu.Lock()
	for i, c := range cs {
		lv, lerr := c.st.resolve(v)
		switch {
		case lerr == nil:
			nums[i] = lv.num
		case v > 0:
			nums[i] = uint64(v)
		case v == 0:
			rm.mu.Lock()
			if sc := rm.ckpts[nameSegment(c.name)]; sc != nil {
				nums[i] = sc.newest()
			}
			rm.mu.Unlock()
		}
		if nums[i] == 0 {
			f.mu.Unlock()
			if localErr != nil {
				return localErr
			}
			return lerr
		}
	}
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(rm.ctx, rm.cfg.timeout)
	defer cancel()
	fetched := map[*ckptState]version{}
	defer func() {
		if len(fetched) > 0 {
			f.mu.Lock()
			for _, x := range fetched {
				f.alloc.free(x.slot())
			}
			f.mu.Unlock()
		}
	}()
	src := make([]version, len(cs))
	plans := make([]*blockPlan, len(cs)) // local versions stored by blocks: where their blocks are
	for i, c := range cs {
		f.mu.Lock()
		lv, lerr := c.st.resolve(int(nums[i]))
		f.mu.Unlock()
		if lerr == nil && lv.length == int64(len(c.region)) && f.checkVersion(&lv, len(c.name)) == nil {
			if !lv.blocks {
				src[i] = lv
				continue
			}
			if p, err := f.planBlocks(c.st, &lv, len(c.name)); err == nil && p.check(f.data.Bytes()) == nil {
				src[i], plans[i] = lv, p
				continue
			}
		}
		m, err := rm.storeManifest(ctx, c.name, nums[i])
		if err != nil {
			if errors.Is(err, ErrVersion) && lerr == nil && lv.length != int64(len(c.region)) {
				return errf(ErrSize, "version %d of %q holds %d bytes, the region has %d", lv.num, c.name, lv.length, len(c.region))
			}
			if errors.Is(err, ErrVersion) && localErr != nil {
				return fmt.Errorf("%w (local copy: %v)", err, localErr)
			}
			return err
		}
		if m.Length != int64(len(c.region)) {
			return errf(ErrSize, "version %d of %q holds %d bytes, the region has %d", m.Version, c.name, m.Length, len(c.region))
		}
		f.mu.Lock()
		txn := f.nextTxn
		f.nextTxn++
		f.mu.Unlock()
		x, err := f.importSlot(ctx, rm.st, m, c.name, txn, 1)
		if err != nil {
			return remoteErr(rm.st, err, "fetch version %d of %q", nums[i], c.name)
		}
		fetched[c.st] = x
		src[i] = x
	}
	if rewind {
		if err := f.rewind(cs, nums, fetched); err != nil {
			return err
		}
		fetched = nil // the index lists them now
	}
	data := f.data.Bytes()
	for i, c := range cs {
		if p := plans[i]; p != nil {
			for _, r := range p.runs {
				copy(c.region[r.region:r.region+r.n], data[r.data:r.data+r.n])
			}
			continue
		}
		copy(c.region, data[src[i].off:src[i].off+src[i].length])
	}
	return nil
}

// rewind makes nums[i] the newest version of cs[i] (see remoteRestore), adding the
// fetched slots as versions.
func (f *File) rewind(cs []*Checkpoint, nums []uint64, fetched map[*ckptState]version) error {
	need := len(fetched) > 0
	f.mu.Lock()
	for i, c := range cs {
		if nv, ok := c.st.newest(); !ok || nv.num != nums[i] {
			need = true
		}
	}
	f.mu.Unlock()
	if !need {
		f.rm.rewound(cs, nums) // the store may still hold what a killed rewind left
		return nil
	}
	plan := indexPlan{upTo: map[*ckptState]uint64{}, add: fetched}
	for i, c := range cs {
		plan.upTo[c.st] = nums[i]
	}
	f.syncMu.Lock()
	f.mu.Lock()
	err := f.rewriteIndex(plan)
	f.mu.Unlock()
	f.syncMu.Unlock()
	if err != nil {
		return err
	}
	f.rm.rewound(cs, nums)
	return nil
}

// versionRecords are the records of a version in use, committed together: its VERSION
// record, and its BLOCKS record when it is stored by blocks.
func versionRecords(st *ckptState, v version) []index.Record {
	r := index.Record{
		Kind: index.KindVersion, Flags: index.FlagCommit, Ckpt: st.id, Version: v.num,
		Offset: uint64(v.off), Length: uint64(v.length), Hash: v.hash, Time: v.time, Txn: v.txn,
		Slack: uint32(v.size - v.footprint(len(st.name))),
	}
	if !v.blocks {
		return []index.Record{r}
	}
	r.Flags = index.FlagBlocks
	b := blocksRecord(st.id, v.num, v.txn, &v.lay)
	b.Flags = index.FlagCommit
	return []index.Record{r, b}
}
