package engine

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"time"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/internal/slot"
)

// Recovery: Open replays the committed transactions of the index into the in-memory
// state. A transaction that is well-formed (its CRCs verify) but inconsistent (a version
// of an unknown checkpoint, a version number that does not increase, a slot outside the
// file's limits) ends the replay: it and everything after it are dropped, as for a torn
// record. Then, if the machine has rebooted since the transactions that no durable point
// covers were written, their data may have been lost with the page cache: each of their
// versions that is still kept is checked against its trailer and hash, and the first
// transaction with a damaged version is dropped with everything after it.

// errStop ends a replay at the current transaction.
var errStop = errors.New("stop")

type sessionAt struct {
	pos  int64
	boot [16]byte
}

type replay struct {
	f        *File
	pos      int64 // records replayed so far (committed)
	total    int64 // records in the index (an upper bound of what the replay applies)
	durable  int64
	maxTxn   uint64
	maxID    uint32
	track    bool // replay the allocator too (a writer)
	overlap  bool // two kept slots overlapped while replaying the allocator
	sessions []sessionAt
	dense    []*ckptState // states by id, for ids below denseIDs
	seq      uint64       // transactions checked so far (see ckptState.chkSeq)
	newLast  map[uint32]uint64
	newCount map[uint32]int
	last     *SessionInfo
	invalid  string
	// per-transaction overlay
	names map[uint32]string
}

func (f *File) recover(seed uint32) error {
	recs := f.idx.Bytes()[index.HeaderSize:]
	rp, res, err := f.replay(recs, seed)
	if err != nil {
		return err
	}
	f.recovered.Invalid = rp.invalid
	f.recovered.TornTail = res.Torn
	f.recovered.Unfinished = int64(res.Uncommitted)
	// After a reboot, check the data the durable claims do not cover. Dropping a
	// damaged transaction brings back the versions it and its successors had dropped
	// (retention), unchecked so far: check again, until nothing is damaged.
	for rp.needVerify(f.bootID) {
		cut := f.verifyTail(rp.durable)
		if cut < 0 {
			break
		}
		f.ckpts = make(map[string]*ckptState)
		f.byID = make(map[uint32]*ckptState)
		if rp, res, err = f.replay(recs[:cut*index.RecordSize], seed); err != nil {
			return err
		}
	}
	f.lastSession = rp.last
	f.recovered.Records = rp.pos
	f.recovered.DroppedRecords = droppedRecords(recs[res.End:])
	f.log = logState{
		pos:     index.HeaderSize + res.End,
		crc:     res.CRC,
		synced:  index.HeaderSize + res.End,
		durable: rp.durable,
		gen:     f.log.gen,
		records: rp.pos,
	}
	f.nextTxn = rp.maxTxn + 1
	f.nextID = rp.maxID + 1
	for _, s := range f.byID {
		// Every version in use, pinned ones too, with its BLOCKS record if it has one.
		f.live += int64(index.NameRecordCount(len(s.name)))
		for _, rec := range s.recs[s.head:] {
			f.live += recordsOf(f.recordHasBlocks(rec))
		}
	}
	// A writer's free space was built while replaying (a reader allocates nothing),
	// unless kept slots overlapped, which only an inconsistent index can do: then it is
	// built again from the kept slots alone, the safe way.
	if !f.ro && rp.overlap {
		f.rebuildFreeSpace()
	}
	return nil
}

// rebuildFreeSpace gives the allocator the kept versions' slots. Each checkpoint's
// slots are usually in increasing offset order already (appended in turn), so they are
// merged as they are decoded, without collecting them (a million versions would take
// 16 MB); any checkpoint whose slots are not in order sends everything through a sort.
func (f *File) rebuildFreeSpace() {
	type cursor struct {
		s    *ckptState
		i    int
		next extent
	}
	var cs []*cursor
	for _, s := range f.byID {
		if s.held() > 0 {
			cs = append(cs, &cursor{s: s, next: f.slotOf(s.recs[s.head], len(s.name))})
		}
	}
	merged := true
	f.liveBytes = 0
	f.alloc.resetStream(slot.HeaderSize, func() (extent, bool) {
		best := -1
		for k, c := range cs {
			if c.i < c.s.held() && (best < 0 || c.next.off < cs[best].next.off) {
				best = k
			}
		}
		if best < 0 {
			return extent{}, false
		}
		c := cs[best]
		e := c.next
		f.liveBytes += e.end - e.off
		if c.i++; c.i < c.s.held() {
			c.next = f.slotOf(c.s.recs[c.s.head+c.i], len(c.s.name))
			if c.next.off < e.off {
				merged = false // not in order: stop and sort instead
				return extent{}, false
			}
		}
		return e, true
	})
	if merged {
		return
	}
	var used []extent
	f.liveBytes = 0
	for _, s := range f.byID {
		for _, rec := range s.recs[s.head:] {
			e := f.slotOf(rec, len(s.name))
			used = append(used, e)
			f.liveBytes += e.end - e.off
		}
	}
	f.alloc.reset(slot.HeaderSize, used)
}

// droppedRecords counts the record slots after the valid prefix that hold anything:
// torn or unverifiable records and unfinished transactions.
func droppedRecords(tail []byte) int64 {
	return int64(index.LastNonZero(tail)+index.RecordSize) / index.RecordSize
}

// replay applies the committed transactions of recs. limit, when not negative, is the
// number of records to replay at most (already cut by the caller).
func (f *File) replay(recs []byte, seed uint32) (*replay, index.Result, error) {
	rp := &replay{f: f, names: make(map[uint32]string), track: !f.ro, total: int64(len(recs)) / index.RecordSize}
	f.alloc.reset(slot.HeaderSize, nil)
	f.liveBytes = 0
	res, err := index.Scan(recs, seed, rp.apply)
	f.replayLeft = 0
	if err != nil && err != errStop {
		return nil, res, err
	}
	if err == errStop {
		// Recompute the end of what was applied: the scan stopped inside the bad txn.
		res, _ = index.Scan(recs[:rp.pos*index.RecordSize], seed, nil)
		res.Torn = true
	}
	return rp, res, nil
}

// apply validates one committed transaction and applies it, or stops the replay.
func (rp *replay) apply(txn []index.Record) error {
	rp.f.replayLeft = rp.total - rp.pos
	if len(txn) == 1 && rp.applyOne(&txn[0]) {
		return nil
	}
	if msg := rp.check(txn); msg != "" {
		rp.invalid = fmt.Sprintf("record %d: %s", rp.pos, msg)
		return errStop
	}
	f := rp.f
	start := rp.pos
	if len(txn) > 64 {
		rp.reserve(txn)
	}
	for i := 0; i < len(txn); i++ {
		r := &txn[i]
		switch r.Kind {
		case index.KindName:
			n := int(r.Aux)
			name := make([]byte, 0, n)
			name = append(name, r.Name[:min(n, len(r.Name))]...)
			for len(name) < n {
				i++
				name = append(name, txn[i].Name[:min(n-len(name), len(txn[i].Name))]...)
			}
			rp.bind(&ckptState{f: f, id: r.Ckpt, name: string(name), named: true, next: 1})
			rp.maxID = max(rp.maxID, r.Ckpt)
		case index.KindVersion:
			s := rp.state(r.Ckpt)
			s.push(start+int64(i), r.Version)
			var next *index.Record
			if r.Flags&index.FlagBlocks != 0 {
				next = &txn[i+1] // its BLOCKS record (check made sure it is there)
			}
			if rp.track {
				// Replay the allocation: the writer's free space comes out of the replay.
				e := recordSlot(r, next, len(s.name))
				rp.overlap = !f.alloc.claim(e) || rp.overlap
				f.liveBytes += e.end - e.off
			}
			if r.Aux > 0 { // retention: the r.Aux oldest kept versions go
				rp.freeSlots(s, s.dropOldest(int(r.Aux)))
			}
			rp.maxTxn = max(rp.maxTxn, r.Txn)
		case index.KindDrop:
			s := rp.state(r.Ckpt)
			rp.freeSlots(s, s.dropBelow(r.Version))
			if s.next < r.Version {
				s.next = r.Version
			}
		case index.KindSession:
			ss := index.SessionOf(r)
			rp.sessions = append(rp.sessions, sessionAt{start, ss.BootID})
			rp.last = sessionInfo(ss)
			if ss.NextTxn > 0 {
				rp.maxTxn = max(rp.maxTxn, ss.NextTxn-1)
			}
		case index.KindMark:
			if r.Flags&index.FlagDurable != 0 {
				rp.durable = max(rp.durable, int64(r.Version))
			}
			rp.maxTxn = max(rp.maxTxn, r.Txn)
		}
	}
	rp.pos += int64(len(txn))
	last := &txn[len(txn)-1]
	if last.Flags&index.FlagDurable != 0 && last.Kind != index.KindMark {
		// Every transaction before this one was durable when it was written.
		rp.durable = max(rp.durable, start)
	}
	return nil
}

// applyOne applies a transaction of one VERSION record of a version stored whole, of a
// checkpoint named before it (a Save in a hot loop: most of a large index), when it
// passes the same checks as check makes; it returns false, having done nothing, for
// any other transaction, which then goes the general way.
func (rp *replay) applyOne(r *index.Record) bool {
	if r.Kind != index.KindVersion || r.Flags&index.FlagBlocks != 0 {
		return false
	}
	s := rp.state(r.Ckpt)
	if s == nil || r.Version <= s.next-1 || r.Version > 1<<62 || r.Length == 0 || r.Length > maxLength || int(r.Aux) > s.n() {
		return false
	}
	e := recordSlot(r, nil, len(s.name))
	if int64(r.Offset) < slot.HeaderSize || r.Offset%8 != 0 || r.Offset > 1<<60 || e.end > rp.f.opts.MaxSize || e.end < int64(r.Offset) {
		return false
	}
	f := rp.f
	s.push(rp.pos, r.Version)
	if rp.track {
		rp.overlap = !f.alloc.claim(e) || rp.overlap
		f.liveBytes += e.end - e.off
	}
	if r.Aux > 0 {
		rp.freeSlots(s, s.dropOldest(int(r.Aux)))
	}
	rp.maxTxn = max(rp.maxTxn, r.Txn)
	start := rp.pos
	rp.pos++
	if r.Flags&index.FlagDurable != 0 {
		rp.durable = max(rp.durable, start)
	}
	return true
}

// reserve grows the File's name maps ahead of a transaction that names many
// checkpoints (the first SaveAll of thousands of regions), so they are sized once
// instead of growing step by step.
func (rp *replay) reserve(txn []index.Record) {
	k := 0
	for i := range txn {
		if txn[i].Kind == index.KindName {
			k++
		}
	}
	f := rp.f
	if k < 64 || k < len(f.byID) {
		return
	}
	byID := make(map[uint32]*ckptState, len(f.byID)+k)
	for id, s := range f.byID {
		byID[id] = s
	}
	ckpts := make(map[string]*ckptState, len(f.ckpts)+k)
	for n, s := range f.ckpts {
		ckpts[n] = s
	}
	f.byID, f.ckpts = byID, ckpts
}

// freeSlots gives back the slots of versions retention dropped during the replay.
func (rp *replay) freeSlots(s *ckptState, recs []int64) {
	if !rp.track {
		return
	}
	for _, rec := range recs {
		e := rp.f.slotOf(rec, len(s.name))
		rp.f.alloc.free(e)
		rp.f.liveBytes -= e.end - e.off
	}
}

// denseIDs bounds the checkpoint ids the replay looks up in a slice rather than in the
// File's map (ids are handed out from 1 up; a damaged or hostile index may hold any).
const denseIDs = 1 << 20

// state returns the state of checkpoint id.
func (rp *replay) state(id uint32) *ckptState {
	if id < denseIDs {
		if int(id) < len(rp.dense) {
			return rp.dense[id]
		}
		return nil
	}
	return rp.f.byID[id]
}

// bind records the state of a checkpoint named during the replay.
func (rp *replay) bind(s *ckptState) {
	rp.f.byID[s.id] = s
	rp.f.ckpts[s.name] = s
	if s.id < denseIDs {
		for int(s.id) >= len(rp.dense) {
			rp.dense = append(rp.dense, nil)
		}
		rp.dense[s.id] = s
	}
}

// recordSlot is the slot of the version of VERSION record r; blk is its BLOCKS record
// when it is stored by blocks, else nil.
func recordSlot(r, blk *index.Record, nameLen int) extent {
	size := slot.Footprint(int64(r.Length), nameLen)
	if blk != nil {
		lay := layoutOf(r, blk)
		size = lay.Footprint(nameLen)
	}
	return extent{int64(r.Offset), int64(r.Offset) + size + int64(r.Slack)}
}

// layoutOf is the block layout of VERSION record r from its BLOCKS record blk.
func layoutOf(r, blk *index.Record) slot.Layout {
	return slot.Layout{RegionLen: int64(r.Length), Shift: uint8(blk.Aux), Base: blk.Hash, K: int64(blk.Length), Payload: int64(blk.Offset)}
}

// maxLength bounds a version's length in a record we trust: 1 PiB.
const maxLength = base.MaxLength

// check returns why a transaction cannot be applied, or "".
func (rp *replay) check(txn []index.Record) string {
	f := rp.f
	if len(rp.names) > 0 {
		clear(rp.names)
	}
	// Each checkpoint's last version and count of versions within this transaction are
	// kept on its state (stamped with the transaction's sequence number), or, for one
	// named in this very transaction, in two maps; so a SaveAll of thousands of regions
	// is checked in linear time.
	rp.seq++
	if len(rp.newLast) > 0 {
		clear(rp.newLast)
		clear(rp.newCount)
	}
	nameOf := func(id uint32) (string, bool) {
		if n, ok := rp.names[id]; ok {
			return n, true
		}
		if s := rp.state(id); s != nil {
			return s.name, true
		}
		return "", false
	}
	lastOf := func(id uint32) uint64 {
		if s := rp.state(id); s != nil {
			if s.chkSeq == rp.seq {
				return s.chkLast
			}
			return s.next - 1 // the newest version, kept or dropped
		}
		return rp.newLast[id]
	}
	countOf := func(id uint32) int {
		if s := rp.state(id); s != nil {
			if s.chkSeq == rp.seq {
				return s.chkCount
			}
			return 0
		}
		return rp.newCount[id]
	}
	var namesIn map[string]bool // names bound within this transaction, when many
	for i := 0; i < len(txn); i++ {
		r := &txn[i]
		switch r.Kind {
		case index.KindName:
			n := int(r.Aux)
			if n < 1 || n > MaxNameLen {
				return fmt.Sprintf("name length %d", n)
			}
			if _, ok := nameOf(r.Ckpt); ok {
				return fmt.Sprintf("checkpoint id %d named twice", r.Ckpt)
			}
			if r.Ckpt == 0 {
				return "checkpoint id 0"
			}
			name := make([]byte, 0, n)
			name = append(name, r.Name[:min(n, len(r.Name))]...)
			for len(name) < n {
				i++
				if i >= len(txn) || txn[i].Kind != index.KindNameMore || txn[i].Ckpt != r.Ckpt {
					return "name continuation missing"
				}
				name = append(name, txn[i].Name[:min(n-len(name), len(txn[i].Name))]...)
			}
			if _, dup := f.ckpts[string(name)]; dup {
				return fmt.Sprintf("name %q bound to two ids", name)
			}
			if len(rp.names) >= 8 && namesIn == nil {
				namesIn = make(map[string]bool, len(rp.names))
				for _, other := range rp.names {
					namesIn[other] = true
				}
			}
			if namesIn != nil {
				if namesIn[string(name)] {
					return fmt.Sprintf("name %q bound to two ids", name)
				}
				namesIn[string(name)] = true
			} else {
				for _, other := range rp.names {
					if other == string(name) {
						return fmt.Sprintf("name %q bound to two ids", name)
					}
				}
			}
			rp.names[r.Ckpt] = string(name)
		case index.KindNameMore:
			return "stray name continuation"
		case index.KindBlocks:
			if i == 0 || txn[i-1].Kind != index.KindVersion || txn[i-1].Flags&index.FlagBlocks == 0 {
				return "stray BLOCKS record"
			}
		case index.KindVersion:
			name, ok := nameOf(r.Ckpt)
			if !ok {
				return fmt.Sprintf("version of unknown checkpoint id %d", r.Ckpt)
			}
			if r.Version <= lastOf(r.Ckpt) || r.Version > 1<<62 {
				return fmt.Sprintf("version %d of %q does not increase", r.Version, name)
			}
			if r.Length == 0 || r.Length > maxLength {
				return fmt.Sprintf("version %d of %q has length %d", r.Version, name, r.Length)
			}
			var blk *index.Record
			if r.Flags&index.FlagBlocks != 0 {
				if i+1 >= len(txn) || txn[i+1].Kind != index.KindBlocks || txn[i+1].Ckpt != r.Ckpt || txn[i+1].Version != r.Version {
					return fmt.Sprintf("version %d of %q lacks its BLOCKS record", r.Version, name)
				}
				blk = &txn[i+1]
				if msg := rp.checkBlocks(r, blk, name, lastOf(r.Ckpt), countOf(r.Ckpt)); msg != "" {
					return msg
				}
			}
			end := recordSlot(r, blk, len(name)).end
			if int64(r.Offset) < slot.HeaderSize || r.Offset%8 != 0 || r.Offset > 1<<60 || end > f.opts.MaxSize || end < int64(r.Offset) {
				return fmt.Sprintf("version %d of %q has a slot outside the file (offset %d)", r.Version, name, r.Offset)
			}
			if r.Aux > 0 {
				have := countOf(r.Ckpt)
				if s := rp.state(r.Ckpt); s != nil {
					have += s.n()
				}
				if int(r.Aux) > have {
					return fmt.Sprintf("version %d of %q drops %d versions, %d are kept", r.Version, name, r.Aux, have)
				}
			}
			if s := rp.state(r.Ckpt); s != nil {
				if s.chkSeq != rp.seq {
					s.chkSeq, s.chkCount = rp.seq, 0
				}
				s.chkLast = r.Version
				s.chkCount++
			} else {
				if rp.newLast == nil {
					rp.newLast, rp.newCount = make(map[uint32]uint64), make(map[uint32]int)
				}
				rp.newLast[r.Ckpt] = r.Version
				rp.newCount[r.Ckpt]++
			}
		case index.KindDrop:
			if _, ok := nameOf(r.Ckpt); !ok {
				return fmt.Sprintf("drop of unknown checkpoint id %d", r.Ckpt)
			}
			if r.Version > lastOf(r.Ckpt)+1 {
				return fmt.Sprintf("drop below %d beyond the newest version", r.Version)
			}
		case index.KindMark:
			if int64(r.Version) > rp.pos+int64(len(txn)) {
				return "durable mark beyond its own position"
			}
		}
	}
	return ""
}

// checkBlocks checks the BLOCKS record blk of VERSION record r of the checkpoint
// called name, whose newest version before it is last (count: its versions earlier in
// this transaction): a sane layout, and a delta's base is that newest version, kept or
// pinned, stored by blocks of the same size over a region of the same length.
func (rp *replay) checkBlocks(r, blk *index.Record, name string, last uint64, count int) string {
	lay := layoutOf(r, blk)
	bad := func(why string) string {
		return fmt.Sprintf("version %d of %q: %s", r.Version, name, why)
	}
	if blk.Txn != r.Txn {
		return bad("BLOCKS record of another transaction")
	}
	if lay.Shift < base.MinBlockShift || lay.Shift > base.MaxBlockShift {
		return bad(fmt.Sprintf("block size 2^%d", lay.Shift))
	}
	n := blockCount(lay.RegionLen, lay.Shift)
	if lay.K < 0 || lay.K > n || (lay.K == 0) != (lay.Payload == 0) || lay.Payload > lay.K<<lay.Shift || (lay.K > 0 && lay.Payload < (lay.K-1)<<lay.Shift) {
		return bad(fmt.Sprintf("%d blocks in %d payload bytes", lay.K, lay.Payload))
	}
	if !lay.Delta() {
		if lay.K != n || lay.Payload != lay.RegionLen {
			return bad("full version without every block")
		}
		return ""
	}
	s := rp.state(r.Ckpt)
	if s == nil || count > 0 || lay.Base != last || s.held() == 0 {
		return bad(fmt.Sprintf("delta on version %d, which is not the newest before it", lay.Base))
	}
	base := s.heldAt(s.held() - 1)
	if base.num != lay.Base || !base.blocks || base.lay.Shift != lay.Shift || base.length != lay.RegionLen {
		return bad(fmt.Sprintf("delta on version %d, which is gone or of another layout", lay.Base))
	}
	return ""
}

// needVerify reports whether data written after the last durable point may have been
// lost: some session that wrote it ran under another boot than this one.
func (rp *replay) needVerify(boot [16]byte) bool {
	if rp.pos <= rp.durable {
		return false
	}
	var zero [16]byte
	if boot == zero {
		return true
	}
	cur := -1 // the session in effect at the durable point
	for i, s := range rp.sessions {
		if s.pos <= rp.durable {
			cur = i
		}
	}
	if cur < 0 {
		return true
	}
	for _, s := range rp.sessions[cur:] {
		if s.boot != boot {
			return true
		}
	}
	return false
}

// verifyTail checks the kept versions of transactions above the durable coverage and
// returns the index position of the first transaction with a damaged one, or -1.
func (f *File) verifyTail(durable int64) int64 {
	type cand struct {
		v       version
		nameLen int
	}
	var cands []cand
	f.unclaimed(durable, func(v version, nameLen int) { cands = append(cands, cand{v, nameLen}) })
	sort.Slice(cands, func(i, j int) bool { return cands[i].v.pos < cands[j].v.pos })
	for i := range cands {
		f.recovered.Verified++
		if f.checkVersion(&cands[i].v, cands[i].nameLen) != nil {
			f.recovered.DroppedTxns++
			return f.txnStart(cands[i].v.pos)
		}
	}
	return -1
}

// unclaimed calls fn for every version in use (pinned ones too: kept deltas read them)
// whose transaction is at or above record durable: those no durable claim covers.
func (f *File) unclaimed(durable int64, fn func(v version, nameLen int)) {
	for _, s := range f.byID {
		// Versions in use are oldest first: look from the newest back.
		for i := s.held() - 1; i >= 0 && s.recs[s.head+i] >= durable; i-- {
			fn(s.heldAt(i), len(s.name))
		}
	}
}

// checkVersion verifies a version's trailer and payload hash in the mapping. It does not
// touch any caller memory.
func (f *File) checkVersion(v *version, nameLen int) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if v.blocks {
		return f.checkBlockSlot(v, nameLen)
	}
	data := f.data.Bytes()
	end := v.off + slot.Footprint(v.length, nameLen)
	if v.off < slot.HeaderSize || end > int64(len(data)) || end < v.off {
		return errf(ErrCorrupt, "version %d lies beyond the end of the data file", v.num)
	}
	t, ok := slot.ReadTrailer(data[v.off+pad8(v.length):end], f.seed)
	if !ok || t.Length != uint64(v.length) || t.Version != v.num || t.Txn != v.txn || t.Hash != v.hash {
		return errf(ErrCorrupt, "version %d: trailer does not match the index", v.num)
	}
	if crc.Payload(data[v.off:v.off+v.length]) != v.hash {
		return errf(ErrCorrupt, "version %d: payload hash mismatch", v.num)
	}
	return nil
}

func sessionInfo(s index.Session) *SessionInfo {
	si := &SessionInfo{PID: int(s.PID), Opened: time.Unix(0, s.Time), Sync: policyFromCode(s.Policy), KeepVersions: int(s.Keep)}
	if s.Flags&index.SessionDifferential != 0 {
		si.Differential = true
		if sh := s.Flags >> 8 & 0xff; sh >= base.MinBlockShift && sh <= base.MaxBlockShift {
			si.BlockSize = 1 << sh
		}
		si.Tracking = s.Flags&index.SessionTracking != 0
		if s.Flags&index.SessionMissed != 0 {
			si.TrackingMisses = max(1, int(s.Flags>>16))
		}
	}
	return si
}
