package engine

import (
	"context"
	"runtime/debug"

	"github.com/ckp-go/ckp/internal/slot"
	"github.com/ckp-go/ckp/remote"
)

// Importing versions from the store (package remote): a restore of versions only the
// store holds (fetchrestore.go), Pull. Each version is fetched into a new slot of the
// data file (remote.Incoming.Fill checks its bytes against its hashes as they arrive),
// then the rest of the slot is written as a save writes it, keeping the version's
// number, hash and time.

// importVersions brings the versions in into the local file, which holds none of their
// checkpoints (Pull's new file), as one transaction appended to the index (Close makes
// it durable).
func (f *File) importVersions(ctx context.Context, in []remote.Incoming) error {
	fs := make([]fetched, len(in))
	f.mu.Lock()
	for i := range in {
		fs[i] = fetched{i: i, st: f.stateFor(in[i].Name), in: in[i]}
	}
	f.mu.Unlock()
	defer f.giveBack(fs)
	if err := f.fetchAll(ctx, fs, true); err != nil {
		return err
	}
	return f.publishFetched(fs)
}

// allocImport allocates the slot of version in, transaction txn, growing the data file
// as a save does: the version it returns is not filled yet (fillImport).
func (f *File) allocImport(in *remote.Incoming, txn uint64) (version, error) {
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
	defer f.mu.Unlock()
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
		return version{}, gerr
	}
	v := version{num: in.Num, off: off, length: n, hash: in.Hash, time: in.Time, txn: txn, size: size}
	if in.Shift > 0 {
		v.blocks, v.lay = true, lay
	}
	return v, nil
}

// fillImport fetches the payload of version in into the slot of v (allocImport), checked
// against its hashes, and writes the rest of the slot.
func (f *File) fillImport(ctx context.Context, v *version, in *remote.Incoming, txnSize uint32) error {
	data := f.data.Bytes()
	// The bytes are written to the file (pwrite), block by block from a buffer they
	// were checked in: the slot's pages are written once, not zeroed and faulted in
	// through the mapping first (which cost as much as the transfer).
	fd := f.data.OSFile()
	write := func(p []byte, off int64) error {
		if _, err := fd.WriteAt(p, v.off+off); err != nil {
			return fileErr("write", f.path, err)
		}
		return nil
	}
	if err := in.Fill(ctx, data[v.off:v.off+v.length], write); err != nil {
		return err
	}
	return f.finishSlot(v, in, txnSize, in.Name)
}

// finishSlot writes the rest of an imported slot after its payload: the padding, the
// block table and the trailer (for a version stored by blocks, the trailer of a full
// version, holding the imported table). Written (pwrite), as the payload is: a store
// through the mapping would fault in the page after the payload, and a fault on a fresh
// page of the file reads ahead (up to read_ahead_kb, 8 MiB on some disks), allocating
// and zeroing pages no restore needs.
func (f *File) finishSlot(v *version, in *remote.Incoming, txnSize uint32, name string) error {
	payload := v.length
	if v.blocks {
		payload = v.lay.Payload
	}
	t0 := pad8(payload) - payload // the trailer's place in tail
	tail := make([]byte, v.footprint(len(name))-payload)
	t := slot.Trailer{Hash: v.hash, Length: uint64(payload), Version: v.num, Txn: v.txn, Time: v.time, TxnCount: txnSize, Session: f.session}
	if v.blocks {
		tr := tail[t0 : t0+slot.Fixed+v.lay.ExtLen(len(name))]
		_, hashes := slot.BlockParts(tr, &v.lay)
		copy(hashes, in.Table)
		slot.WriteBlockTrailer(tr, f.seed, &t, &v.lay, name)
	} else {
		copy(tail[t0+slot.Fixed:], in.Table)
		slot.WriteTrailer(tail[t0:t0+slot.TrailerLen(v.length, len(name))], f.seed, &t, name)
	}
	if _, err := f.data.OSFile().WriteAt(tail, v.off+payload); err != nil {
		return fileErr("write", f.path, err)
	}
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
