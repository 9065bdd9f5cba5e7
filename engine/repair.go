package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"time"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/mmapfile"
)

// Repair rebuilds the index of the checkpoint file at path from its data file alone:
// every slot trailer (found by its magic, checked by its CRC, which is seeded with the
// file's id) names its checkpoint, version and transaction, and its payload is checked
// against its hash. A SaveAll is taken back only when every one of its versions is
// intact, so the rebuilt file keeps SaveAll atomic. Versions that retention had
// dropped but whose slots were not reused yet come back too.
//
// The new index is written beside the old one, synced, and renamed over it; the old
// index, if any, is kept as path.idx.bak. Repair needs the writer's lock (ErrLocked
// when a writer holds the file); with RepairOptions.DryRun it only reports, writes
// nothing and takes no lock.

// RepairOptions configure Repair. The zero value repairs.
type RepairOptions struct {
	DryRun bool // report what would be recovered; change nothing
}

// RepairReport says what Repair found.
type RepairReport struct {
	Scanned        int64    // bytes of the data file scanned
	Trailers       int      // trailers that verified
	DamagedPayload int      // trailers whose payload did not match its hash
	Incomplete     int      // intact versions dropped because their SaveAll lost a member
	Duplicates     int      // intact versions left out because another copy of them (or a newer version) was kept
	Versions       int      // versions in the new index
	Checkpoints    []string // names in the new index, sorted
	Index          string   // the index written (or that would be written)
	Backup         string   // where the old index was kept, if there was one
	DryRun         bool
}

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
}

// Repair rebuilds the index of path; see the comment above.
func Repair(path string, opts *RepairOptions) (rep *RepairReport, err error) {
	var o RepairOptions
	if opts != nil {
		o = *opts
	}
	rep = &RepairReport{DryRun: o.DryRun, Index: path + ".idx"}
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data, err := mmapfile.Open(path, mmapfile.Options{ReadOnly: true, Reserve: defaultMaxSize})
	if err != nil {
		return rep, fmt.Errorf("ckp: open %s: %w", path, err)
	}
	defer data.Close()
	if !o.DryRun {
		if err := data.TryLock(); err != nil {
			if errors.Is(err, mmapfile.ErrLocked) {
				return rep, fmt.Errorf("%w: %s (stop the writer before repairing)", ErrLocked, path)
			}
			return rep, err
		}
	}
	b := data.Bytes()
	h, err := decodeDataHeader(b)
	if err != nil {
		// The data header is damaged: the old index may still name the file id.
		ib, rerr := os.ReadFile(path + ".idx")
		ih, _, ierr := index.DecodeHeader(ib)
		if rerr != nil || ierr != nil {
			return rep, fmt.Errorf("%w; the index header cannot supply the file id either", err)
		}
		h.FileID = ih.FileID
	}
	seed := trailerSeed(h.FileID)
	var all []found
	magic := binary.LittleEndian.Uint64(trailerMagic[:])
	for off := int64(dataHeaderSize); off+trailerFixed <= int64(len(b)); off += 8 {
		if binary.LittleEndian.Uint64(b[off:]) != magic {
			continue
		}
		t, ok := readTrailer(b[off:], seed)
		if !ok {
			continue
		}
		p := off - pad8(int64(t.Length))
		if p < dataHeaderSize {
			continue
		}
		rep.Trailers++
		length := int64(t.Length)
		if (len(t.Table) > 0 && crc.Combine(t.Table) != t.Hash) || crc.Payload(b[p:p+length]) != t.Hash {
			rep.DamagedPayload++
			continue
		}
		all = append(all, found{name: string(t.Name), ver: t.Version, txn: t.Txn, txnCount: t.TxnCount,
			off: p, length: length, hash: t.Hash, time: t.Time, session: t.Session})
		off += trailerLen(length, len(t.Name)) - 8
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
		for _, v := range vs {
			id, known := ids[v.name]
			if !known {
				id = uint32(len(ids) + 1)
				ids[v.name] = id
				recs = append(recs, index.NameRecords(id, v.name)...)
			}
			last[v.name] = v.ver
			recs = append(recs, index.Record{Kind: index.KindVersion, Ckpt: id, Version: v.ver,
				Offset: uint64(v.off), Length: uint64(v.length), Hash: v.hash, Time: v.time, Txn: v.txn})
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
	f := &File{opts: Options{Perm: perm}}
	ih := index.Header{FileID: h.FileID, Created: time.Now().UnixNano()}
	return rep, f.writeIndexFile(idxPath, ih, recs, true)
}
