package engine

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/mmapfile"
)

// Durability. Saves land in the page cache through the shared mapping, so a completed
// save survives the death of the process under every policy. A durable point makes
// saves survive an OS crash or power loss too:
//
//  1. the data of the saves it covers is written to stable storage (msync MS_SYNC of
//     exactly the slots written since the previous durable point, or fdatasync when
//     they are too many);
//  2. a record that claims this (FlagDurable on the save's commit record, or a mark
//     record) is appended to the index;
//  3. the index's new records are written to stable storage.
//
// Step 1 before step 2 means an index record that claims durability never reaches the
// disk before the data it covers. Records written between durable points may reach the
// disk before their data (the kernel writes pages back when it likes): recovery after a
// reboot therefore checks the data of every version above the last durable claim.

// maxRanges is how many separate unsynced ranges are tracked before a durable point
// falls back to syncing the whole data file.
const maxRanges = 64

// takeUnsynced moves the unsynced ranges into the syncer's buffer. Caller holds f.mu and
// f.syncMu.
func (f *File) takeUnsynced() ([]extent, bool) {
	all := len(f.unsynced) > maxRanges
	r := append(f.syncBuf[:0], f.unsynced...)
	f.unsynced = f.unsynced[:0]
	return r, all
}

// putUnsynced gives ranges back after a failed sync. Caller holds f.mu.
func (f *File) putUnsynced(r []extent) {
	f.unsynced = append(f.unsynced, r...)
}

// syncData makes the given data ranges durable.
func (f *File) syncData(ranges []extent, all bool) error {
	var err error
	if all || len(ranges) > maxRanges || f.opts.syncWhole {
		err = f.data.Sync()
	} else {
		for _, r := range ranges {
			if err = f.data.SyncRange(r.off, r.end-r.off); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("ckp: sync %s: %w", f.path, err)
	}
	return nil
}

// syncIndexRange makes the index's records from the last synced one to hi durable.
// Caller holds f.syncMu (so the index is not swapped underneath).
func (f *File) syncIndexRange(lo, hi int64) error {
	if hi <= lo {
		return nil
	}
	var err error
	if f.opts.syncWhole {
		err = f.idx.Sync()
	} else {
		err = f.idx.SyncRange(lo, hi-lo)
	}
	if err != nil {
		return fmt.Errorf("ckp: sync %s: %w", f.idxPath, err)
	}
	return nil
}

// syncIndex makes the index records written so far durable and frees the slots whose
// drop is now durable. Caller holds f.syncMu.
func (f *File) syncIndex() error {
	f.mu.Lock()
	lo, hi := f.log.synced, f.log.pos
	f.mu.Unlock()
	if err := f.syncIndexRange(lo, hi); err != nil {
		return err
	}
	f.mu.Lock()
	f.log.synced = max(f.log.synced, hi)
	f.freeDurable()
	f.mu.Unlock()
	return nil
}

// syncBoth makes the given data ranges and the index's new records durable at the same
// time: the index on the File's index syncer goroutine, the data on the caller's. Caller
// holds f.syncMu.
func (f *File) syncBoth(ranges []extent, all bool) error {
	f.mu.Lock()
	lo, hi := f.log.synced, f.log.pos
	f.mu.Unlock()
	var ierr error
	idxAsync := hi > lo && f.idxSync != nil
	if idxAsync {
		f.idxSync.req <- [2]int64{lo, hi}
	} else {
		ierr = f.syncIndexRange(lo, hi)
	}
	derr := f.syncData(ranges, all)
	if idxAsync {
		ierr = <-f.idxSync.done
	}
	if derr != nil {
		return derr
	}
	if ierr != nil {
		return ierr
	}
	f.mu.Lock()
	f.log.synced = max(f.log.synced, hi)
	f.mu.Unlock()
	return nil
}

// freeDurable frees the slots held back for transactions that are now durable: their
// data is durable and so is the index record that dropped them. Caller holds f.mu.
func (f *File) freeDurable() {
	f.alloc.freePending(min(f.log.durable, (f.log.synced-index.HeaderSize)/index.RecordSize))
}

// indexSyncer syncs index ranges for syncBoth, so a durable point flushes the data and
// the index at the same time.
type indexSyncer struct {
	req  chan [2]int64
	done chan error
}

func (f *File) runIndexSyncer() {
	defer f.bgDone.Done()
	for {
		select {
		case <-f.stopBg:
			return
		case r := <-f.idxSync.req:
			f.idxSync.done <- f.syncIndexRange(r[0], r[1])
		}
	}
}

// Sync makes every version saved so far durable, whatever the policy: when it returns,
// they survive an OS crash or power loss.
func (f *File) Sync() error {
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	if f.ro {
		return nil
	}
	return f.syncAll()
}

// syncAll runs a durable point covering everything published so far.
func (f *File) syncAll() (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	f.mu.Lock()
	idle := !f.dirty && f.log.synced == f.log.pos
	f.mu.Unlock()
	if idle {
		return nil
	}
	fl, err := f.makeDurable(false)
	if err != nil {
		return err
	}
	if fl.before < fl.covered {
		if err := f.appendMarkLocked(fl.covered); err != nil {
			return err
		}
	}
	return f.syncIndex()
}

// flushed describes a flush: the records it covered, and the durable coverage before.
type flushed struct{ covered, before int64 }

// makeDurable makes the data of everything published so far durable, and with withIndex the
// index's records too, at the same time (syncBoth). It records the new coverage and, if
// nothing was published meanwhile, that nothing is dirty. Caller holds f.syncMu.
func (f *File) makeDurable(withIndex bool) (flushed, error) {
	f.mu.Lock()
	ranges, all := f.takeUnsynced()
	fl := flushed{covered: f.log.records, before: f.log.durable}
	snap := f.pubSeq
	f.mu.Unlock()
	var err error
	if withIndex {
		err = f.syncBoth(ranges, all)
	} else {
		err = f.syncData(ranges, all)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.putUnsynced(ranges)
		return fl, err
	}
	f.syncBuf = ranges[:0]
	f.log.durable = max(f.log.durable, fl.covered)
	if f.pubSeq == snap {
		f.dirty = false
	}
	return fl, nil
}

// intervalSyncer is the SyncInterval goroutine.
func (f *File) intervalSyncer(d time.Duration) {
	defer f.bgDone.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-f.stopBg:
			return
		case <-t.C:
			_ = f.syncAll() // a failure is retried at the next tick, by Sync or by Close
		}
	}
}

// startWriteback starts writing back the slots of a save and the index's new records
// (SyncAsync). Failures are ignored: nothing is promised.
func (f *File) startWriteback(cs []*Checkpoint) {
	lo, hi, idx := f.writebackData(cs)
	_ = idx.StartWriteback(lo, hi-lo)
}

// writebackData starts the write-back of the newest slots of cs and returns the range
// of unsynced index records. A fault reading the index unwinds through the unlock.
func (f *File) writebackData(cs []*Checkpoint) (lo, hi int64, idx *mmapfile.File) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		if last, ok := c.st.newest(); ok {
			_ = f.data.StartWriteback(last.off, last.size)
		}
	}
	return f.log.synced, f.log.pos, f.idx
}

// appendMarkLocked is appendMark for a caller that does not hold f.mu.
func (f *File) appendMarkLocked(covered int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appendMark(covered)
}

// appendMark appends a durable mark saying the data of the first covered records is
// durable. A mark holds no data: when everything before it is durable, so is it.
// Caller holds f.mu.
func (f *File) appendMark(covered int64) error {
	r := index.Record{Kind: index.KindMark, Flags: index.FlagCommit | index.FlagDurable,
		Version: uint64(covered), Txn: f.nextTxn - 1, Time: time.Now().UnixNano()}
	before := f.log.records
	if err := f.appendRecords([]index.Record{r}); err != nil {
		return err
	}
	if f.log.durable == before {
		f.log.durable = f.log.records
	}
	return nil
}
