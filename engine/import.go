package engine

import (
	"context"
	"runtime/debug"

	"github.com/ckp-go/ckp/internal/slot"
	"github.com/ckp-go/ckp/remote"
)

// Importing versions from the store (package remote): a restart on another node, a
// restore of a version only the store holds, Pull. Each version is fetched straight
// into a new slot of the data file (remote.Incoming.Fill checks its bytes against its
// hashes), then the rest of the slot is written as a save writes it, and the slots are
// published by rewriting the index (rewriteIndex), keeping the version numbers.

// importVersions brings the versions in into the local file as one transaction.
func (f *File) importVersions(ctx context.Context, in []remote.Incoming) (err error) {
	f.mu.Lock()
	txn := f.nextTxn
	f.nextTxn++
	f.mu.Unlock()
	plan := indexPlan{add: map[*ckptState]version{}}
	defer func() {
		if err != nil { // give the slots back
			f.mu.Lock()
			for _, x := range plan.add {
				f.alloc.free(x.slot())
			}
			f.mu.Unlock()
		}
	}()
	for i := range in {
		x, err := f.importSlot(ctx, &in[i], txn, uint32(len(in)))
		if err != nil {
			return errf(err, "version %d of %q", in[i].Num, in[i].Name)
		}
		f.mu.Lock()
		plan.add[f.stateFor(in[i].Name)] = x
		f.mu.Unlock()
	}
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rewriteIndex(plan)
}

// importSlot allocates a slot in the data file for version in, fetches its payload into
// it and writes the rest of the slot (block table, padding, name, trailer) as a save
// does, with the version's number, hash and time, transaction txn of txnSize versions.
// Nothing is published: the caller publishes the slot (rewriteIndex) or gives it back
// (f.alloc.free).
func (f *File) importSlot(ctx context.Context, in *remote.Incoming, txn uint64, txnSize uint32) (v version, err error) {
	n := in.Length
	// A version stored by blocks comes in as a full version stored by blocks: its
	// hash and table are the store's, and later deltas may build on it.
	var lay slot.Layout
	need := slot.Footprint(n, len(in.Name))
	if in.Shift > 0 {
		lay = slot.Layout{RegionLen: n, Shift: in.Shift, K: blockCount(n, in.Shift), Payload: n}
		need = lay.Footprint(len(in.Name))
	}
	f.mu.Lock()
	off, size := f.alloc.alloc(need, slot.PayloadAlign(n))
	if n >= slot.HugeAlign && !f.opts.NoHugePages && !f.huge && f.data.SetHugePages(true) == nil {
		f.huge = true // 2 MiB folios: one fault per 2 MiB of the import (hugeFolios may undo it)
	}
	var gerr error
	if off+size > f.opts.MaxSize {
		gerr = errf(ErrFull, "import of %d bytes needs the data file to reach %d bytes, MaxSize is %d", n, off+size, f.opts.MaxSize)
	} else if off+size > f.data.Size() {
		if err := f.data.Grow(off + size); err != nil {
			gerr = fileErr("grow", f.path, err)
		}
	}
	if gerr != nil {
		f.alloc.free(extent{off, off + size})
		f.mu.Unlock()
		return version{}, gerr
	}
	f.mu.Unlock()
	defer func() {
		if err != nil {
			f.mu.Lock()
			f.alloc.free(extent{off, off + size})
			f.mu.Unlock()
		}
	}()
	data := f.data.Bytes()
	// Each piece's pages are faulted in before the GET writes them, on as many
	// goroutines as GETs run, so the GET does not fault page by page.
	populate := func(o, k int64) { _ = f.data.Populate(off+o, k) }
	if err := in.Fill(ctx, data[off:off+n], populate); err != nil {
		return version{}, err
	}
	v = version{num: in.Num, off: off, length: n, hash: in.Hash, time: in.Time, txn: txn, size: size}
	if in.Shift > 0 {
		v.blocks, v.lay = true, lay
	}
	return v, f.finishSlot(&v, in, txnSize, in.Name)
}

// finishSlot writes the rest of an imported slot after its payload, in place: the
// padding, the block table and the trailer (for a version stored by blocks, the trailer
// of a full version, holding the imported table).
func (f *File) finishSlot(v *version, in *remote.Incoming, txnSize uint32, name string) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data := f.data.Bytes()
	payload := v.length
	if v.blocks {
		payload = v.lay.Payload
	}
	t0 := v.off + pad8(payload)
	clear(data[v.off+payload : t0])
	t := slot.Trailer{Hash: v.hash, Length: uint64(payload), Version: v.num, Txn: v.txn, Time: v.time, TxnCount: txnSize, Session: f.session}
	if v.blocks {
		tr := data[t0 : t0+slot.Fixed+v.lay.ExtLen(len(name))]
		_, hashes := slot.BlockParts(tr, &v.lay)
		copy(hashes, in.Table)
		slot.WriteBlockTrailer(tr, f.seed, &t, &v.lay, name)
		return nil
	}
	copy(data[t0+slot.Fixed:], in.Table)
	slot.WriteTrailer(data[t0:t0+slot.TrailerLen(v.length, len(name))], f.seed, &t, name)
	return nil
}

// stateFor returns the state of a checkpoint name, creating it (unregistered, not yet
// named in the index). Caller holds f.mu.
func (f *File) stateFor(name string) *ckptState {
	s := f.ckpts[name]
	if s == nil {
		s = &ckptState{f: f, id: f.nextID, name: name, next: 1}
		f.nextID++
		f.ckpts[name] = s
		f.byID[s.id] = s
	}
	return s
}

// trailerTxnSize reads the transaction size of a version from its trailer (0 if the
// trailer cannot be read). Caller holds f.mu.
func (f *File) trailerTxnSize(v *version, nameLen int) (n uint32) {
	defer func() {
		if recover() != nil {
			n = 0
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data := f.data.Bytes()
	end := v.off + v.footprint(nameLen)
	if end > int64(len(data)) {
		return 0
	}
	payload := v.length
	if v.blocks {
		payload = v.lay.Payload
	}
	t, ok := slot.ReadTrailer(data[v.off+pad8(payload):end], f.seed)
	if !ok {
		return 0
	}
	return t.TxnCount
}
