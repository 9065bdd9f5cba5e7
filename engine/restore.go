package engine

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/ckp-go/ckp/crc"
)

// restore copies version v of each checkpoint in cs into its region. The caller holds
// f.begin and every c.mu. Nothing is written to any region until every version has
// been located, sized and verified.
func (f *File) restore(cs []*Checkpoint, v int) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	vs := make([]version, len(cs))
	if err := f.resolveAll(cs, v, vs); err != nil {
		return err
	}
	data := f.data.Bytes()
	for i, c := range cs {
		end := vs[i].off + vs[i].footprint(len(c.name))
		if end > int64(len(data)) || end < vs[i].off {
			return errf(ErrCorrupt, "version %d of %q lies beyond the end of the data file", vs[i].num, c.name)
		}
	}
	if f.ro {
		return f.restoreCopied(cs, vs)
	}
	// Versions stored by blocks: their block maps, from their chains' trailers.
	plans := make([]*blockPlan, len(cs))
	for i, c := range cs {
		if vs[i].blocks {
			p, err := f.planBlocks(c.st, &vs[i], len(c.name))
			if err != nil {
				return fmt.Errorf("%w (%q)", err, c.name)
			}
			plans[i] = p
		}
	}
	// Verify in the mapping (both cores for large versions), then copy out.
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	b := &f.batchBuf
	b.reset(jobVerify)
	hashes := make([]uint64, len(cs))
	for i, c := range cs {
		ver := &vs[i]
		if p := plans[i]; p != nil {
			b.addRuns(p.runs, data, nil, p.tb, p.shift)
			continue
		}
		src := data[ver.off : ver.off+ver.length]
		j := job{src: src}
		if ts := crc.TableSize(ver.length); ts > 0 {
			t0 := ver.off + pad8(ver.length) + trailerFixed
			j.table = data[t0 : t0+int64(ts)]
			if crc.Combine(j.table) != ver.hash {
				return errf(ErrCorrupt, "version %d of %q: block table does not match its hash", ver.num, c.name)
			}
		} else {
			hashes[i] = ver.hash
			j.hash = &hashes[i]
		}
		b.add(j)
	}
	f.pool.run(b)
	if err := b.err(); err != nil {
		return err
	}
	if b.bad.Load() {
		// Say which one.
		for i, c := range cs {
			if p := plans[i]; p != nil {
				if p.check(data) != nil {
					return errf(ErrCorrupt, "version %d of %q: a block does not match its hash", vs[i].num, c.name)
				}
				continue
			}
			if crc.Payload(data[vs[i].off:vs[i].off+vs[i].length]) != vs[i].hash {
				return errf(ErrCorrupt, "version %d of %q: hash mismatch", vs[i].num, c.name)
			}
		}
		return errf(ErrCorrupt, "hash mismatch")
	}
	releaseTracking(cs)
	b.reset(jobCopy)
	for i, c := range cs {
		if p := plans[i]; p != nil {
			b.addRuns(p.runs, data, c.region, p.tb, p.shift)
			continue
		}
		b.add(job{src: data[vs[i].off : vs[i].off+vs[i].length], dst: c.region})
	}
	f.pool.run(b)
	return b.err()
}

// restoreCopied is the read-only path: a writer may reuse a slot while we read it, so the
// bytes are copied out first, verified in the copy, and only then copied into the
// regions.
func (f *File) restoreCopied(cs []*Checkpoint, vs []version) error {
	bufs := make([][]byte, len(cs))
	for i, c := range cs {
		buf, err := f.copyOut(c.st, &vs[i], len(c.name))
		if errors.Is(err, errMismatch) {
			return f.mismatch(c.name, vs[i].num)
		}
		if err != nil {
			return err
		}
		bufs[i] = buf
	}
	releaseTracking(cs)
	for i, c := range cs {
		copy(c.region, bufs[i])
	}
	return nil
}

// releaseTracking lifts the kernel's write protection from the tracked regions of cs,
// which a restore is about to overwrite: one call per region instead of a fault per page
// (a microsecond each: 0.25 s for 1 GiB). The next save hashes the whole region, as it
// would after the faults. A failure leaves the protection, and the faults, in place.
func releaseTracking(cs []*Checkpoint) {
	for _, c := range cs {
		if d := c.diff; d != nil && d.trk != nil {
			_ = d.trk.Release()
		}
	}
}

// mismatch is the error for a version whose bytes do not match its hash. On a
// read-only File the writer may have dropped the version (retention) and reused its
// slot since this File opened: then the version is gone, not damaged, and the error is
// ErrVersion. The index is read afresh to tell.
func (f *File) mismatch(name string, num uint64) error {
	if f.ro {
		if g, err := Open(f.path, &Options{ReadOnly: true, MaxSize: f.opts.MaxSize, Workers: 1}); err == nil {
			vs, _ := g.VersionsOf(name)
			g.Close()
			kept := false
			for _, v := range vs {
				kept = kept || uint64(v.Version) == num
			}
			if !kept {
				return errf(ErrVersion, "version %d of %q was dropped by the writer since this File opened", num, name)
			}
		}
	}
	return errf(ErrCorrupt, "version %d of %q: hash mismatch", num, name)
}

// resolveAll resolves version v of every checkpoint in cs into vs and checks its size.
// It reads the index mapping under f.mu: the caller turns faults into errors, and the
// deferred unlock leaves the File usable after one.
func (f *File) resolveAll(cs []*Checkpoint, v int, vs []version) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range cs {
		p, err := c.st.resolve(v)
		if err != nil {
			return err
		}
		if p.length != int64(len(c.region)) {
			return errf(ErrSize, "version %d of %q holds %d bytes, the region has %d", p.num, c.name, p.length, len(c.region))
		}
		vs[i] = p
	}
	return nil
}
