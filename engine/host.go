package engine

import (
	"context"
	"encoding/binary"
	"runtime/debug"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/slot"
	"github.com/ckp-go/ckp/remote"
)

// fileHost is the File's side of the line to the remote tier (remote.Host): what the
// tier may know of the local file and do with it. Slots stay the engine's: the tier
// reads pinned versions and gives the pins back.
type fileHost struct{ f *File }

func (f *File) host() remote.Host { return fileHost{f} }

// Versions describes every kept version, by checkpoint in id order, oldest first.
func (h fileHost) Versions() []remote.Sealed {
	f := h.f
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []remote.Sealed
	for _, s := range sortedStates(f.byID) {
		for i := 0; i < s.n(); i++ {
			v := s.at(i)
			out = append(out, sealedOf(s, &v, f.trailerTxnSize(&v, len(s.name))))
		}
	}
	return out
}

// Pin pins a kept version.
func (h fileHost) Pin(name string, num uint64) (remote.Sealed, error) {
	f := h.f
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.ckpts[name]
	if s == nil {
		return remote.Sealed{}, errf(ErrVersion, "no checkpoint %q", name)
	}
	v, err := s.resolve(int(num))
	if err != nil {
		return remote.Sealed{}, err
	}
	id, err := f.pinVersion(s, v)
	if err != nil {
		return remote.Sealed{}, err
	}
	sv := sealedOf(s, &v, f.trailerTxnSize(&v, len(s.name)))
	sv.Pin = id
	return sv, nil
}

// Unpin gives a pin back.
func (h fileHost) Unpin(id uint64) {
	f := h.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unpinLocked(id)
}

// Blocks returns the block hashes of a pinned version and where its blocks are: from
// its chain's trailers for a version stored by blocks, from its block table (1 MiB
// blocks) for one stored whole.
func (h fileHost) Blocks(id uint64) (table []uint64, src []int64, err error) {
	f := h.f
	f.mu.Lock()
	p := f.pins.byID[id]
	f.mu.Unlock()
	if p == nil {
		return nil, nil, errf(ErrInvalid, "pin %d is not held", id)
	}
	h.f.hostMu.RLock()
	defer h.f.hostMu.RUnlock()
	if f.unmapped {
		return nil, nil, errf(ErrClosed, "%s", f.path)
	}
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	v := &p.chain[len(p.chain)-1]
	if v.blocks {
		return f.assembleTable(p.chain, len(p.s.name), true)
	}
	nb := crc.Blocks(v.length)
	table, src = make([]uint64, nb), make([]int64, nb)
	for b := range src {
		src[b] = v.off + int64(b)<<crc.BlockShift
	}
	ts := int64(crc.TableSize(v.length))
	if ts == 0 {
		table[0] = v.hash
		return table, src, nil
	}
	data := f.data.Bytes()
	t0 := v.off + pad8(v.length) + slot.Fixed
	if t0+ts > int64(len(data)) {
		return nil, nil, errf(ErrCorrupt, "version %d of %q lies beyond the end of the data file", v.num, p.s.name)
	}
	tb := data[t0 : t0+ts]
	if crc.Combine(tb) != v.hash {
		return nil, nil, errf(ErrCorrupt, "version %d of %q: block table does not match its hash", v.num, p.s.name)
	}
	for b := range table {
		table[b] = binary.LittleEndian.Uint64(tb[8*b:])
	}
	return table, src, nil
}

// ReadAt copies bytes of the data file.
func (h fileHost) ReadAt(p []byte, off int64) (n int, err error) {
	f := h.f
	f.hostMu.RLock()
	defer f.hostMu.RUnlock()
	if f.unmapped {
		return 0, errf(ErrClosed, "%s", f.path)
	}
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data := f.data.Bytes()
	if off < 0 || off+int64(len(p)) > int64(len(data)) {
		return 0, errf(ErrCorrupt, "bytes %d..%d lie beyond the end of the data file %s", off, off+int64(len(p)), f.path)
	}
	return copy(p, data[off:]), nil
}

// Import adds fetched versions as one transaction, keeping their numbers.
func (h fileHost) Import(ctx context.Context, in []remote.Incoming) error {
	return h.f.importVersions(ctx, in)
}

// Busy reports whether a large save is running.
func (h fileHost) Busy() bool { return h.f.busy.Load() > 0 }

// Session is the writer session's id.
func (h fileHost) Session() uint64 { return h.f.session }
