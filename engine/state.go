package engine

import (
	"encoding/binary"

	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/internal/slot"
)

// version is one kept version of a checkpoint, decoded from its index record.
type version struct {
	num    uint64 // version number, 1..N
	off    int64  // payload offset in the data file
	length int64  // bytes of the version (the region's length)
	hash   uint64 // payload hash
	time   int64  // unix nanoseconds
	txn    uint64 // transaction number
	size   int64  // slot size: footprint plus slack
	pos    int64  // the number of its VERSION record in the index
	blocks bool   // stored by blocks (differential): lay describes the slot
	lay    slot.Layout
}

func (v *version) slot() extent { return extent{v.off, v.off + v.size} }

// delta reports whether the version holds only the blocks changed since its base.
func (v *version) delta() bool { return v.blocks && v.lay.Delta() }

// footprint is the slot's size without slack: what the version wrote.
func (v *version) footprint(nameLen int) int64 {
	if v.blocks {
		return v.lay.Footprint(nameLen)
	}
	return slot.Footprint(v.length, nameLen)
}

// ckptState is everything the File knows about one checkpoint name, registered or not.
//
// Its versions are held as the numbers of their VERSION records in the index, decoded
// when needed: 8 bytes per version in memory, so that opening a file of a million
// versions costs little more than reading its index.
//
// recs[head:] are the versions whose slots are in use, oldest first: recs[vis:] the
// kept (visible) ones, recs[head:vis] versions retention dropped whose blocks a kept
// version of a differential checkpoint still reads (its chain of deltas goes back to a
// full version). Only versions stored by blocks are ever pinned that way.
type ckptState struct {
	f     *File
	id    uint32
	name  string
	named bool // the name's records are in the index
	recs  []int64
	head  int
	vis   int
	next  uint64      // the next version number
	reg   *Checkpoint // the registered handle, or nil

	// Scratch of the replay's check of one transaction (see replay.check): the last
	// version and the number of versions of this checkpoint in the transaction whose
	// sequence number is chkSeq.
	chkSeq   uint64
	chkLast  uint64
	chkCount int
}

// n is the number of kept versions.
func (s *ckptState) n() int { return len(s.recs) - s.vis }

// at decodes the i-th kept version (0 = oldest).
func (s *ckptState) at(i int) version { return s.f.decodeVersion(s.recs[s.vis+i], len(s.name)) }

// held is the number of versions whose slots are in use: kept and pinned.
func (s *ckptState) held() int { return len(s.recs) - s.head }

// heldAt decodes the i-th version in use (0 = oldest, pinned ones first).
func (s *ckptState) heldAt(i int) version { return s.f.decodeVersion(s.recs[s.head+i], len(s.name)) }

// newest decodes the newest kept version; ok is false when none is kept.
func (s *ckptState) newest() (v version, ok bool) {
	if s.n() == 0 {
		return v, false
	}
	return s.at(s.n() - 1), true
}

// push adds the version in record rec, numbered num, as the newest.
func (s *ckptState) push(rec int64, num uint64) {
	if len(s.recs) == cap(s.recs) {
		s.grow()
	}
	s.recs = append(s.recs, rec)
	s.next = num + 1
}

// grow makes room for one more record: it moves the records in use to the front when
// retention left room there, and otherwise doubles the capacity (append grows a large
// slice by a quarter at a time: replaying a million versions of one checkpoint would
// copy it dozens of times). While a replay runs, a checkpoint with thousands of
// versions gets room for every record left in the index at once.
func (s *ckptState) grow() {
	if s.head > 0 {
		n := copy(s.recs, s.recs[s.head:])
		s.recs = s.recs[:n]
		s.vis -= s.head
		s.head = 0
		if n < cap(s.recs) {
			return
		}
	}
	c := max(2*cap(s.recs), 8)
	if left := s.f.replayLeft; cap(s.recs) >= 4096 && left > 0 {
		c = max(c, len(s.recs)+int(left)+1)
	}
	r := make([]int64, len(s.recs), c)
	copy(r, s.recs)
	s.recs = r
}

// dropOldest drops the k oldest kept versions (retention) and returns the records of
// the versions whose slots are free now: the dropped ones, and pinned ones, that no
// kept version's chain of deltas reads any more.
func (s *ckptState) dropOldest(k int) []int64 {
	s.vis += min(k, s.n())
	return s.unhold()
}

// dropBelow drops the kept versions numbered below first and returns the records of
// the versions whose slots are free now (see dropOldest).
func (s *ckptState) dropBelow(first uint64) []int64 {
	k := 0
	for k < s.n() && s.at(k).num < first {
		k++
	}
	return s.dropOldest(k)
}

// unhold gives up the dropped versions that the oldest kept version does not read: all
// of them below the full version its chain starts from (all of them when the oldest
// kept version is full, or when none is kept).
func (s *ckptState) unhold() []int64 {
	keep := s.vis // index of the first version still in use
	if s.vis < len(s.recs) {
		for keep > s.head && s.f.recordIsDelta(s.recs[keep]) {
			keep--
		}
	}
	d := s.recs[s.head:keep]
	s.head = keep
	return d
}

// resolve maps an API version number (1..N absolute, 0..-(N-1) relative) to a kept
// version.
func (s *ckptState) resolve(v int) (version, error) {
	n := s.n()
	if n == 0 {
		return version{}, errf(ErrVersion, "checkpoint %q has no saved version", s.name)
	}
	if v <= 0 {
		i := n - 1 + v
		if i < 0 {
			return version{}, errf(ErrVersion, "version %d of %q: only %d kept", v, s.name, n)
		}
		return s.at(i), nil
	}
	u := uint64(v)
	first, last := s.at(0).num, s.at(n-1).num
	if u < first || u > last {
		if u < first {
			return version{}, errf(ErrVersion, "version %d of %q is no longer kept (kept: %d..%d)", v, s.name, first, last)
		}
		return version{}, errf(ErrVersion, "version %d of %q does not exist (kept: %d..%d)", v, s.name, first, last)
	}
	// Versions increase; usually they are contiguous.
	if i := int(u - first); i < n {
		if x := s.at(i); x.num == u {
			return x, nil
		}
	}
	lo, hi := 0, n
	for lo < hi {
		m := (lo + hi) / 2
		if s.at(m).num < u {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < n {
		if x := s.at(lo); x.num == u {
			return x, nil
		}
	}
	return version{}, errf(ErrVersion, "version %d of %q is not kept", v, s.name)
}

// decodeVersion decodes the VERSION record number rec of the index (verified when it
// was replayed or written), and the BLOCKS record after it for a version stored by
// blocks. Caller holds f.mu, or is alone with the File.
func (f *File) decodeVersion(rec int64, nameLen int) version {
	b := f.idx.Bytes()[index.HeaderSize+rec*index.RecordSize:][:index.RecordSize]
	v := version{
		num:    binary.LittleEndian.Uint64(b[8:]),
		off:    int64(binary.LittleEndian.Uint64(b[16:])),
		length: int64(binary.LittleEndian.Uint64(b[24:])),
		hash:   binary.LittleEndian.Uint64(b[32:]),
		time:   int64(binary.LittleEndian.Uint64(b[40:])),
		txn:    binary.LittleEndian.Uint64(b[48:]),
		pos:    rec,
	}
	slack := int64(binary.LittleEndian.Uint32(b[56:]))
	if b[1]&index.FlagBlocks == 0 {
		v.size = slot.Footprint(v.length, nameLen) + slack
		return v
	}
	v.blocks = true
	v.lay = f.decodeLayout(rec+1, v.length)
	v.size = v.lay.Footprint(nameLen) + slack
	return v
}

// decodeLayout decodes the BLOCKS record number rec.
func (f *File) decodeLayout(rec int64, regionLen int64) slot.Layout {
	b := f.idx.Bytes()[index.HeaderSize+rec*index.RecordSize:][:index.RecordSize]
	return slot.Layout{
		RegionLen: regionLen,
		Shift:     uint8(binary.LittleEndian.Uint16(b[2:])),
		Base:      binary.LittleEndian.Uint64(b[32:]),
		K:         int64(binary.LittleEndian.Uint64(b[24:])),
		Payload:   int64(binary.LittleEndian.Uint64(b[16:])),
	}
}

// recordHasBlocks reports whether VERSION record rec is stored by blocks.
func (f *File) recordHasBlocks(rec int64) bool {
	return f.idx.Bytes()[index.HeaderSize+rec*index.RecordSize+1]&index.FlagBlocks != 0
}

// recordIsDelta reports whether VERSION record rec is a delta: stored by blocks, with
// a base version.
func (f *File) recordIsDelta(rec int64) bool {
	b := f.idx.Bytes()[index.HeaderSize+rec*index.RecordSize:]
	if b[1]&index.FlagBlocks == 0 {
		return false
	}
	return binary.LittleEndian.Uint64(b[index.RecordSize+32:]) != 0
}

// slotOf decodes only the slot extent of VERSION record rec: what rebuilding the free
// space at open needs.
func (f *File) slotOf(rec int64, nameLen int) extent {
	v := f.decodeVersion(rec, nameLen)
	return v.slot()
}

// txnStart returns the number of the first record of the transaction that holds
// record rec: the record after the previous commit.
func (f *File) txnStart(rec int64) int64 {
	b := f.idx.Bytes()[index.HeaderSize:]
	for rec > 0 && b[(rec-1)*index.RecordSize+1]&index.FlagCommit == 0 {
		rec--
	}
	return rec
}
