package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/remote"
	"github.com/ckp-go/ckp/store"
)

// Restoring versions only the store holds (docs/REMOTE.md, "Fetching"): their new
// slots are the checked scratch window; RestoreJob on a new node keeps them by an
// append to the index, as a save's.

// fetched is a version of a restore that comes from the store.
type fetched struct {
	i      int             // its index in the caller's list (fetchRestore: cs[i])
	st     *ckptState      // its checkpoint
	in     remote.Incoming // its description in the store
	v      version         // its slot
	own    bool            // the slot is ours to give back (not published)
	append bool            // kept by an append to the index (publishFetched)
}

// lookupFunc finds version nums[i] of the checkpoint called names[i] in the store, for
// every i: ins[i] and errs[i] as remote.Restorable.Lookup's.
type lookupFunc func(ctx context.Context, names []string, nums []uint64) (ins []remote.Incoming, errs []error)

// fetchRestore restores version nums[i] of each cs[i]: the local copy when it checks
// out (and, with sameBytes, holds the bytes of the store's copy: a local version of
// that number may be of an abandoned life), else the store's, found through lookup
// (every checkpoint's at once) and fetched (fetchAll). With rewind the restored
// versions become each checkpoint's newest (see rewind) before any region is written.
func (f *File) fetchRestore(ctx context.Context, cs []*Checkpoint, nums []uint64,
	lookup lookupFunc, sameBytes bool, localErr error, rewind bool) error {
	t := f.tier
	ctx, cancel := context.WithTimeout(ctx, t.Settings().Timeout())
	defer cancel()
	src := make([]version, len(cs))
	checked := make([]bool, len(cs))
	var fs []fetched
	defer func() { f.giveBack(fs) }()
	type localCopy struct {
		v     version
		err   error // resolving it
		valid bool  // it checks out and fits the region
	}
	locals := make([]localCopy, len(cs))
	var need []int // the checkpoints to look up in the store
	var names []string
	var needNums []uint64
	for i, c := range cs {
		f.mu.Lock()
		lv, lerr := c.st.resolve(int(nums[i]))
		f.mu.Unlock()
		local := lerr == nil && lv.length == int64(len(c.region)) && f.checkReadable(c.st, &lv, len(c.name)) == nil
		locals[i] = localCopy{lv, lerr, local}
		if local && !sameBytes {
			src[i] = lv
			continue
		}
		need = append(need, i)
		names = append(names, c.name)
		needNums = append(needNums, nums[i])
	}
	ins, errs := lookup(ctx, names, needNums)
	for k, i := range need {
		c, lv, lerr, local := cs[i], locals[i].v, locals[i].err, locals[i].valid
		in, err := ins[k], errs[k]
		switch {
		case err == nil && in.Fill == nil:
			err = errf(ErrVersion, "version %d of %q is not in %s", nums[i], c.name, t.Settings().Store())
		case err != nil && (errors.Is(err, ErrCorrupt) || errors.Is(err, store.ErrNotExist)):
			err = &damaged{i, err}
		}
		if local && err == nil && in.Hash == lv.hash {
			src[i] = lv // the local copy holds the bytes the store's does
			continue
		}
		if err != nil {
			if errors.Is(err, ErrVersion) && lerr == nil && lv.length != int64(len(c.region)) {
				return errf(ErrSize, "version %d of %q holds %d bytes, the region has %d", lv.num, c.name, lv.length, len(c.region))
			}
			if errors.Is(err, ErrVersion) && localErr != nil {
				return fmt.Errorf("%w (local copy: %v)", err, localErr)
			}
			return err
		}
		if in.Length != int64(len(c.region)) {
			return errf(ErrSize, "version %d of %q holds %d bytes, the region has %d", in.Num, c.name, in.Length, len(c.region))
		}
		fs = append(fs, fetched{i: i, st: c.st, in: in})
	}
	if err := f.fetchAll(ctx, fs, rewind); err != nil {
		return err
	}
	for _, x := range fs {
		src[x.i], checked[x.i] = x.v, true
	}
	if !rewind {
		return f.restoreVersions(cs, src, checked) // the slots are given back
	}
	// Nothing reaches a region before the local file says where the job restarts.
	if err := f.publishFetched(fs); err != nil {
		return err
	}
	rest := map[*ckptState]version{}
	for _, x := range fs {
		if x.own {
			rest[x.st] = x.v
		}
	}
	if err := f.rewind(cs, nums, rest); err != nil {
		return err
	}
	for k := range fs {
		fs[k].own = false // the index lists them now
	}
	return f.restoreVersions(cs, src, checked)
}

// fetchAll allocates a slot for each of fs and fills it from the store, several
// versions at a time (as the remote tier, if any, says). With keep, the versions of
// checkpoints the index never named (a new node) are to stay by an append
// (publishFetched) and share one transaction; the others get a transaction each (a
// rewind lists them in the index it rewrites; a plain restore gives them back). A
// version that does not check out in the store fails as damaged.
func (f *File) fetchAll(ctx context.Context, fs []fetched, keep bool) error {
	if len(fs) == 0 {
		return nil
	}
	f.mu.Lock()
	appends, txn := uint32(0), f.nextTxn
	f.nextTxn++
	for k := range fs {
		x := &fs[k]
		x.v.txn = txn
		if x.append = keep && !x.st.named; x.append {
			appends++
		} else {
			x.v.txn = f.nextTxn
			f.nextTxn++
		}
	}
	f.mu.Unlock()
	fail := func(x *fetched, err error) error {
		err = fmt.Errorf("fetch version %d of %q: %w", x.in.Num, x.in.Name, err)
		if f.tier != nil { // else Pull, which says where from
			err = fmt.Errorf("%w: %s: %w", ErrRemote, f.tier.Settings().Store(), err)
		}
		if errors.Is(err, ErrCorrupt) || errors.Is(err, store.ErrNotExist) {
			return &damaged{x.i, err}
		}
		return err
	}
	for k := range fs {
		x := &fs[k]
		v, err := f.allocImport(&x.in, x.v.txn)
		if err != nil {
			return fail(x, err)
		}
		x.v, x.own = v, true
	}
	return f.tier.Fetch(ctx, len(fs), func(ctx context.Context, k int) error {
		x, size := &fs[k], uint32(1)
		if x.append {
			size = appends
		}
		if err := f.fillImport(ctx, &x.v, &x.in, size); err != nil {
			return fail(x, err)
		}
		return nil
	})
}

// publishFetched publishes the fetched versions marked append as one transaction
// appended to the index, as a save publishes its versions: they become the newest
// versions of their checkpoints. When that fails, their slots stay the caller's to give
// back. Under SyncAsync their write-back starts at once; otherwise the policy's next
// durable point covers them. The caller's File is open (f.begin, or Pull's own).
func (f *File) publishFetched(fs []fetched) error {
	f.mu.Lock()
	recs := f.recBuf[:0]
	plans := make([]slotPlan, len(fs))
	var touched []*Checkpoint // the registered ones
	for k := range fs {
		if x := &fs[k]; x.append && x.own {
			plans[k] = slotPlan{off: x.v.off, size: x.v.size, ver: x.v.num, hash: x.v.hash, blocks: x.v.blocks, lay: x.v.lay}
			recs = f.versionRecords(recs, x.st, &plans[k], x.v.length, x.v.time, x.v.txn)
			if x.st.reg != nil {
				touched = append(touched, x.st.reg)
			}
		}
	}
	if len(recs) == 0 {
		f.mu.Unlock()
		return nil
	}
	recs[len(recs)-1].Flags |= index.FlagCommit
	start := f.log.records
	err := f.appendRecords(recs)
	f.recBuf = recs[:0]
	if err != nil {
		f.mu.Unlock()
		return err
	}
	end := f.log.records
	for k := range fs {
		if x := &fs[k]; x.append && x.own {
			f.applyVersion(x.st, &plans[k], start, end)
			x.own = false // the index's now
		}
	}
	f.pubSeq++
	f.dirty = true
	f.pf.afterSave(touched)
	if f.needCompact() {
		f.compactDue.Store(true)
	}
	f.mu.Unlock()
	if f.opts.Sync.kind == syncAsync {
		f.startWriteback(touched)
	}
	return nil
}

// giveBack frees the slots of fs that are still the caller's.
func (f *File) giveBack(fs []fetched) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range fs {
		if x.own {
			f.alloc.free(x.v.slot())
		}
	}
}
