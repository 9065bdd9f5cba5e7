package engine

import (
	"os"
	"runtime/debug"
	"time"

	"github.com/ckp-go/ckp/index"
)

// Rewriting the index for changes that are not saves: versions brought in from the
// store (an import, a restore of a version only the store holds) and rewinds. The
// index is written the way compaction writes it: the imported slots are complete
// (payload, block table, trailer) before it starts; the data not yet durable is synced,
// except the imported slots (the store holds them); the new index lists every kept
// version, then a durable mark covering what came before, then the imported versions,
// so that after a reboot recovery checks those; it is written to path.idx.tmp, synced
// and renamed over path.idx, and the directory synced. A crash before the rename leaves
// the old index, in which the imported slots are free space; after it, the new one.

// indexPlan says how rewriteIndex changes the kept versions.
type indexPlan struct {
	upTo map[*ckptState]uint64  // keep only the versions numbered up to this (a rewind)
	add  map[*ckptState]version // insert this filled slot as a version (replacing one of its number)
}

// rewriteIndex replaces the index by one that lists the kept versions as changed by p,
// with KeepVersions applied. A checkpoint in p.upTo continues its numbering after its
// newest version left; one in p.add after the added version, if that is newer. The
// slots of versions it removes are free afterwards, unless the remote tier still reads
// them (pinned: they are orphans until unpinned). Caller holds f.syncMu and f.mu.
func (f *File) rewriteIndex(p indexPlan) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	ranges, all := f.takeUnsynced()
	if err := f.syncData(ranges, all); err != nil {
		f.putUnsynced(ranges)
		return err
	}
	f.syncBuf = ranges[:0]
	recs := []index.Record{f.sessionRecord(f.openedAt())}
	states := sortedStates(f.byID)
	newRecs := make([][]int64, len(states))
	nexts := make([]uint64, len(states))
	heldOf := make([]int, len(states))
	live := int64(0)
	type late struct {
		si int
		st *ckptState
		v  version
	}
	var imported []late // added versions that stay: after the durable mark
	var removed []version
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
		// The versions the oldest kept one reads stay, held, ahead of the kept ones:
		// its chain of deltas back to a full version.
		var held []version
		if len(vs) > 0 && vs[0].delta() {
			for i := st.held() - 1; i >= 0; i-- {
				h := st.heldAt(i)
				if h.num >= vs[0].num {
					continue
				}
				held = append([]version{h}, held...)
				if !h.delta() {
					break
				}
			}
		}
		// Every version in use before that is in use no more.
		for i := 0; i < st.held(); i++ {
			h := st.heldAt(i)
			if !listed(h, held) && !listed(h, vs) {
				removed = append(removed, h)
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
		for _, v := range held {
			newRecs[si] = append(newRecs[si], int64(len(recs)))
			recs = append(recs, versionRecords(st, v)...)
			live += recordsOf(v.blocks)
		}
		heldOf[si] = len(held)
		if len(held) > 0 {
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
		st.recs, st.head, st.vis, st.next = newRecs[si], 0, heldOf[si], nexts[si]
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
	for i := range removed {
		f.orphanRemoved(&removed[i])
	}
	f.rebuildFreeSpace()
	f.claimOrphans()
	f.pf.indexSwapped()
	f.pf.wake()
	old.Close()
	return nil
}

// listed reports whether version v (its slot) is among vs.
func listed(v version, vs []version) bool {
	for _, w := range vs {
		if w.num == v.num && w.off == v.off {
			return true
		}
	}
	return false
}

// sessionRecord is the record of the writer's session, opened at opened (Unix ns): the
// first record the session appends, and the first of every index a compaction or a
// rewrite writes.
func (f *File) sessionRecord(opened int64) index.Record {
	s := index.Session{PID: uint32(os.Getpid()), NextTxn: f.nextTxn, BootID: f.bootID, Policy: f.opts.Sync.code(),
		Keep: uint64(f.opts.KeepVersions), Time: opened, Flags: f.sessionFlags()}
	r := s.Record()
	r.Flags = index.FlagCommit
	return r
}

// openedAt is when this writer's session began (Unix ns).
func (f *File) openedAt() int64 {
	if ls := f.lastSession; ls != nil {
		return ls.Opened.UnixNano()
	}
	return time.Now().UnixNano()
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
	b := v.lay.Record(st.id, v.num, v.txn)
	b.Flags = index.FlagCommit
	return []index.Record{r, b}
}
