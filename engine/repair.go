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
	Duplicates     int      // intact copies of a version found twice (the newest kept)
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
			off: p, length: length, hash: t.Hash, time: t.Time})
		off += trailerLen(length, len(t.Name)) - 8
	}
	rep.Scanned = int64(len(b))

	// Keep one copy of each (name, version): the newest transaction's.
	sort.Slice(all, func(i, j int) bool {
		if all[i].name != all[j].name {
			return all[i].name < all[j].name
		}
		if all[i].ver != all[j].ver {
			return all[i].ver < all[j].ver
		}
		return all[i].txn > all[j].txn
	})
	uniq := all[:0]
	for i, v := range all {
		if i > 0 && v.name == all[i-1].name && v.ver == all[i-1].ver {
			rep.Duplicates++
			continue
		}
		uniq = append(uniq, v)
	}
	// Whole transactions only, in transaction order.
	byTxn := map[uint64][]found{}
	for _, v := range uniq {
		byTxn[v.txn] = append(byTxn[v.txn], v)
	}
	txns := make([]uint64, 0, len(byTxn))
	for t, vs := range byTxn {
		if uint32(len(vs)) != vs[0].txnCount {
			rep.Incomplete += len(vs)
			continue
		}
		txns = append(txns, t)
	}
	sort.Slice(txns, func(i, j int) bool { return txns[i] < txns[j] })

	ids := map[string]uint32{}
	last := map[string]uint64{}
	var recs []index.Record
	for _, t := range txns {
		vs := byTxn[t]
		sort.Slice(vs, func(i, j int) bool { return vs[i].name < vs[j].name })
		ok := true
		for _, v := range vs {
			if v.ver <= last[v.name] {
				ok = false
			}
		}
		if !ok {
			rep.Incomplete += len(vs)
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
