// Package repair rebuilds a checkpoint file's index from its data file alone (ckp
// repair, engine.Repair): every slot trailer names its checkpoint, version and
// transaction, and is checked by its CRC and its payload's hash. It needs no open File.
package repair

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/internal/slot"
	"github.com/ckp-go/ckp/mmapfile"
)

// maxSize is the mapping's reservation (the engine's default MaxSize), and defaultPerm the
// index's permissions when the data file's cannot be read.
const (
	maxSize     = 1 << 40
	defaultPerm = 0o600
)

// errMismatch: a block does not match its hash.
var errMismatch = errors.New("hash mismatch")

// Options configure Repair. The zero value repairs.
type Options struct {
	DryRun bool // report what would be recovered; change nothing
}

// Report says what Repair found.
type Report struct {
	Scanned        int64    // bytes of the data file scanned
	Trailers       int      // trailers that verified
	DamagedPayload int      // trailers whose payload did not match its hash
	Incomplete     int      // intact versions dropped because their SaveAll lost a member
	Duplicates     int      // intact versions left out because another copy of them (or a newer version) was kept
	Versions       int      // versions in the new index
	Checkpoints    []string // names in the new index, sorted
	Index          string   // the index written (or that would be written)
	Backup         string   // where the old index was kept, if there was one
	DryRun         bool     // nothing was written
}

// found is a slot whose trailer verified.
type found struct {
	name     string
	ver      uint64
	txn      uint64
	txnCount uint32
	off      int64
	length   int64
	hash     uint64
	time     int64
	session  uint64
	blocks   bool // stored by blocks: lay, and the trailer's offset
	lay      slot.Layout
	trailer  int64
}

// Repair rebuilds the index of path from its data file alone (engine.Repair says how).
func Repair(path string, opts *Options) (rep *Report, err error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	rep = &Report{DryRun: o.DryRun, Index: path + ".idx"}
	defer base.Catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data, err := mmapfile.Open(path, mmapfile.Options{ReadOnly: true, MaxSize: maxSize})
	if err != nil {
		return rep, fmt.Errorf("ckp: open %s: %w", path, err)
	}
	defer data.Close()
	if !o.DryRun {
		if err := data.TryLock(); err != nil {
			if errors.Is(err, mmapfile.ErrLocked) {
				return rep, fmt.Errorf("%w: %s (stop the writer before repairing)", base.ErrLocked, path)
			}
			return rep, err
		}
	}
	b := data.Bytes()
	h, err := slot.DecodeHeader(b)
	if errors.Is(err, slot.ErrUnknownFormat) {
		// An intact header of a format this build does not know: never guess.
		return rep, err
	}
	if err != nil {
		// The data header is damaged: the old index may still name the file id.
		ib, rerr := os.ReadFile(path + ".idx")
		ih, _, ierr := index.DecodeHeader(ib)
		if rerr != nil || ierr != nil {
			return rep, fmt.Errorf("%w; the index header cannot supply the file id either", err)
		}
		h.FileID = ih.FileID
	}
	seed := slot.Seed(h.FileID)
	var all []found
	magic := binary.LittleEndian.Uint64(slot.TrailerMagic[:])
	for off := int64(slot.HeaderSize); off+slot.Fixed <= int64(len(b)); off += 8 {
		if binary.LittleEndian.Uint64(b[off:]) != magic {
			continue
		}
		t, ok := slot.ReadTrailer(b[off:], seed)
		if !ok {
			continue
		}
		p := off - base.Pad8(int64(t.Length))
		if p < slot.HeaderSize {
			continue
		}
		rep.Trailers++
		length := int64(t.Length)
		fd := found{name: string(t.Name), ver: t.Version, txn: t.Txn, txnCount: t.TxnCount,
			off: p, length: length, hash: t.Hash, time: t.Time, session: t.Session}
		if t.Kind != slot.KindClassic {
			fd.blocks, fd.lay, fd.trailer = true, t.Blocks, off
			fd.length = t.Blocks.RegionLen
			if !blocksIntact(b[p:p+length], &t) {
				rep.DamagedPayload++
				continue
			}
		} else if (len(t.Table) > 0 && crc.Combine(t.Table) != t.Hash) || crc.Payload(b[p:p+length]) != t.Hash {
			rep.DamagedPayload++
			continue
		}
		all = append(all, fd)
		off += t.Size() - 8
	}
	rep.Scanned = int64(len(b))

	// Group the intact versions into transactions. A transaction is named by its writer
	// session and its number: a writer killed after filling its slots but before
	// publishing leaves intact trailers whose numbers (transaction and versions) the next
	// writer, reading an index that never heard of them, uses again. The session id
	// tells the two apart, so a SaveAll is never rebuilt from members of two saves.
	type txnKey struct{ session, txn uint64 }
	type group struct {
		txn  uint64
		time int64
		vs   []found
	}
	byTxn := map[txnKey][]found{}
	for _, v := range all {
		k := txnKey{v.session, v.txn}
		byTxn[k] = append(byTxn[k], v)
	}
	groups := make([]group, 0, len(byTxn))
	for k, vs := range byTxn {
		sort.Slice(vs, func(i, j int) bool { return vs[i].name < vs[j].name })
		whole := uint32(len(vs)) == vs[0].txnCount
		for i := 1; i < len(vs) && whole; i++ {
			whole = vs[i].name != vs[i-1].name && vs[i].txnCount == vs[0].txnCount
		}
		if !whole {
			rep.Incomplete += len(vs)
			continue
		}
		groups = append(groups, group{txn: k.txn, time: vs[0].time, vs: vs})
	}
	// In transaction order; where two writers used the same number, the later one
	// first: it is the one whose index lived on, and its versions win.
	sort.Slice(groups, func(i, j int) bool {
		if groups[i].txn != groups[j].txn {
			return groups[i].txn < groups[j].txn
		}
		return groups[i].time > groups[j].time
	})

	ids := map[string]uint32{}
	last := map[string]uint64{}
	var recs []index.Record
	tables := map[string][]uint64{} // block hashes of the last version taken, by name
	next := make([][]uint64, 0, 8)
	for _, g := range groups {
		vs := g.vs
		ok := true
		for _, v := range vs {
			if v.ver <= last[v.name] {
				ok = false
			}
		}
		if !ok {
			// Another copy of these versions was taken (or newer ones): a whole
			// transaction stays out, never a part of it.
			rep.Duplicates += len(vs)
			continue
		}
		// Versions stored by blocks: a full one brings its table; a delta applies to
		// the table of its base, which must be the last version taken of its name, and
		// the result must match its hash. Otherwise the whole transaction stays out.
		next = next[:0]
		for _, v := range vs {
			var tb []uint64
			if v.blocks {
				tb = blockTable(b, seed, &v, tables[v.name], last[v.name])
				ok = ok && tb != nil
			}
			next = append(next, tb)
		}
		if !ok {
			rep.Incomplete += len(vs)
			continue
		}
		for i, v := range vs {
			if v.blocks {
				tables[v.name] = next[i]
			} else {
				delete(tables, v.name)
			}
		}
		for _, v := range vs {
			id, known := ids[v.name]
			if !known {
				id = uint32(len(ids) + 1)
				ids[v.name] = id
				recs = append(recs, index.NameRecords(id, v.name)...)
			}
			last[v.name] = v.ver
			r := index.Record{Kind: index.KindVersion, Ckpt: id, Version: v.ver,
				Offset: uint64(v.off), Length: uint64(v.length), Hash: v.hash, Time: v.time, Txn: v.txn}
			if v.blocks {
				r.Flags = index.FlagBlocks
				recs = append(recs, r, v.lay.Record(id, v.ver, v.txn))
			} else {
				recs = append(recs, r)
			}
			rep.Versions++
		}
		recs[len(recs)-1].Flags |= index.FlagCommit
	}
	for n := range ids {
		rep.Checkpoints = append(rep.Checkpoints, n)
	}
	sort.Strings(rep.Checkpoints)
	if o.DryRun {
		return rep, nil
	}
	// The data we found is what the index will promise: make it durable first.
	if err := data.OSFile().Sync(); err != nil {
		return rep, fmt.Errorf("ckp: sync %s: %w", path, err)
	}
	if len(recs) > 0 {
		recs = append(recs, index.Record{Kind: index.KindMark, Flags: index.FlagCommit | index.FlagDurable,
			Version: uint64(len(recs)), Time: time.Now().UnixNano()})
	}
	idxPath := path + ".idx"
	if _, err := os.Stat(idxPath); err == nil {
		rep.Backup = idxPath + ".bak"
		os.Remove(rep.Backup)
		if err := os.Link(idxPath, rep.Backup); err != nil {
			return rep, fmt.Errorf("ckp: keep the old index: %w", err)
		}
	}
	st, err := os.Stat(path)
	perm := os.FileMode(defaultPerm)
	if err == nil {
		perm = st.Mode().Perm()
	}
	ih := index.Header{FileID: h.FileID, Created: time.Now().UnixNano()}
	return rep, index.WriteFile(idxPath, ih, recs, perm, true)
}

// blocksIntact checks the blocks a blocks slot holds against their hashes, and a full
// slot's table against its hash.
func blocksIntact(payload []byte, t *slot.Trailer) bool {
	if t.Kind == slot.KindFull && xxhash.Sum64(t.Table) != t.Hash {
		return false
	}
	if int64(len(payload)) != t.Blocks.Payload {
		return false
	}
	return t.Walk(func(i, b, off, l int64) error {
		if xxhash.Sum64(payload[off:off+l]) != binary.LittleEndian.Uint64(t.Table[8*i:]) {
			return errMismatch
		}
		return nil
	}) == nil
}

// blockTable returns the block hashes of version v (stored by blocks), or nil when it
// cannot be taken: a delta whose base is not lastVer (the last version of its name
// taken), or whose table with its changes does not match its hash. prev is lastVer's
// table (nil when it was not stored by blocks); it is not modified.
func blockTable(data []byte, seed uint32, v *found, prev []uint64, lastVer uint64) []uint64 {
	t, ok := slot.ReadTrailer(data[v.trailer:], seed)
	if !ok {
		return nil
	}
	nb := base.BlockCount(v.lay.RegionLen, v.lay.Shift)
	tb := make([]uint64, nb)
	if t.Kind == slot.KindDelta {
		if v.lay.Base != lastVer || len(prev) != int(nb) {
			return nil
		}
		copy(tb, prev)
	}
	err := t.Walk(func(i, b, off, l int64) error {
		tb[b] = binary.LittleEndian.Uint64(t.Table[8*i:])
		return nil
	})
	if err != nil || xxhash.Sum64(slot.TableBytes(tb)) != v.hash {
		return nil
	}
	return tb
}
