package engine

import (
	"math"
	"time"

	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/mmapfile"
)

// Compaction keeps the index bounded under retention: once the log holds more than
// twice the records that describe what is kept (plus compactSlack), it is rewritten
// with only those records into a new file that replaces the old one atomically
// (write to path.idx.tmp, sync, rename, sync the directory). The data is synced first,
// so the compaction is itself a durable point. Readers that opened the old index keep reading
// it; they see the versions they opened with.

// compactSlack is how many records beyond twice the live ones the log may hold (16 MiB
// of index): compaction rewrites the index, so it must be rare enough that its cost per
// save stays a few nanoseconds.
const compactSlack = 1 << 18

func (f *File) needCompact() bool {
	return f.log.records > 2*f.live+compactSlack
}

// maybeCompact compacts if needed; the caller holds no lock.
func (f *File) maybeCompact() {
	f.mu.Lock()
	need := f.needCompact()
	f.mu.Unlock()
	if need {
		f.syncMu.Lock()
		f.maybeCompactLocked()
		f.syncMu.Unlock()
	}
}

// maybeCompactLocked compacts if needed; the caller holds f.syncMu. A failure leaves the
// old index in place (it is still correct) and is retried at a later save.
func (f *File) maybeCompactLocked() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() || !f.needCompact() {
		f.compactDue.Store(false)
		return
	}
	if f.compact() == nil {
		f.compactDue.Store(false)
	}
}

// compact rewrites the index. It is a durable point under every policy: the data is
// synced, the new index ends with a durable mark and is synced with its directory
// before it counts. (Under SyncNone too: an index replaced without a sync could reach
// the disk as garbage after a power loss and take with it what File.Sync had made
// durable. Compaction is rare: once per 256K records.) Caller holds f.syncMu and f.mu.
func (f *File) compact() error {
	ranges, all := f.takeUnsynced()
	if err := f.syncData(ranges, all); err != nil {
		f.putUnsynced(ranges)
		return err
	}
	f.syncBuf = ranges[:0]
	recs := make([]index.Record, 0, max(f.live, 0)+2)
	recs = append(recs, f.sessionRecord(f.openedAt())) // the writer's own session, as it opened the file
	states := sortedStates(f.byID)
	newRecs := make([][]int64, len(states)) // each kept version's place in the new log
	for si, st := range states {
		if !st.named {
			continue
		}
		recs = append(recs, index.NameRecords(st.id, st.name)...)
		if st.n() == 0 {
			recs = append(recs, index.Record{Kind: index.KindDrop, Ckpt: st.id, Version: st.next, Flags: index.FlagCommit})
			continue
		}
		// Every version in use, pinned ones too (kept deltas read them); a DROP
		// record after them says which are no longer kept.
		newRecs[si] = make([]int64, 0, st.held())
		for i := 0; i < st.held(); i++ {
			v := st.heldAt(i)
			newRecs[si] = append(newRecs[si], int64(len(recs)))
			recs = append(recs, versionRecords(st, v)...)
		}
		if pinned := st.vis - st.head; pinned > 0 {
			recs = append(recs, index.Record{Kind: index.KindDrop, Ckpt: st.id, Version: st.at(0).num, Flags: index.FlagCommit})
		}
	}
	// The data was synced above: a mark says all of it is durable.
	recs = append(recs, index.Record{Kind: index.KindMark, Flags: index.FlagCommit | index.FlagDurable,
		Version: uint64(len(recs)), Txn: f.nextTxn - 1, Time: time.Now().UnixNano()})
	h, old, crc, err := f.replaceIndex(recs)
	if err != nil {
		return err
	}
	for si, st := range states {
		if st.named {
			st.recs, st.vis, st.head = newRecs[si], st.vis-st.head, 0
		}
	}
	n := int64(len(recs))
	pos := index.HeaderSize + n*index.RecordSize
	f.log = logState{pos: pos, crc: crc, synced: pos, durable: n, gen: h.Generation, records: n}
	f.dirty = false
	// Every drop is durable now: the new index no longer lists what was dropped.
	f.alloc.freePending(math.MaxInt64)
	f.pf.indexSwapped()
	old.Close()
	return nil
}

// replaceIndex writes recs as the next generation of the index (a new file, synced,
// renamed over the old one) and maps it in place of the old mapping, which it returns
// for the caller to close once its state matches the new index; crc is the chain's CRC
// after the last record. If the new index is in place but cannot be mapped, nothing
// more can be logged safely (appends would go to the unlinked old file): the File is
// marked closed.
func (f *File) replaceIndex(recs []index.Record) (h index.Header, old *mmapfile.File, crc uint32, err error) {
	h = index.Header{FileID: f.fileID, Generation: f.log.gen + 1, Created: time.Now().UnixNano()}
	if err := index.WriteFile(f.idxPath, h, recs, f.opts.Perm, true); err != nil {
		return h, nil, 0, err
	}
	nidx, err := mmapfile.Open(f.idxPath, f.indexOptions())
	if err != nil {
		f.closed.Store(true)
		return h, nil, 0, err
	}
	b := nidx.Bytes()
	_, prev, err := index.DecodeHeader(b)
	if err != nil {
		nidx.Close()
		f.closed.Store(true)
		return h, nil, 0, err
	}
	res, _ := index.Scan(b[index.HeaderSize:], prev, nil)
	old = f.idx
	f.idx = nidx
	return h, old, res.CRC, nil
}
