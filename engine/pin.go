package engine

// Pins. The remote tier reads the bytes of versions after their save returned, while
// saves go on: the engine pins each version it hands to the tier, and the slots of the
// versions a delta reads (its chain), until the tier gives the pin back (unpin). A
// pinned slot is never reused: when retention drops its version, or a rewind or an
// import removes it from the index, the slot becomes an orphan — held in use, listed
// nowhere — and is freed when its last pin goes. The engine alone decides when a slot
// is free; the tier only says when it is done (package remote, Host.Unpin).
//
// Everything here runs under f.mu.

type pins struct {
	next   uint64
	byID   map[uint64]*pin
	slots  map[int64]*pinnedSlot // by payload offset: the slots pins hold
	orphan map[int64]orphan      // pinned slots whose versions the index no longer keeps
}

// pin is one pin: a version and the versions its bytes are read from.
type pin struct {
	s     *ckptState
	chain []version // oldest first: the full version, then deltas up to the pinned one
}

type pinnedSlot struct {
	n   int32
	ext extent
}

// orphan is a pinned slot whose version is gone from the kept versions. durable says
// its drop must be durable before the slot is reused: end is the index position after
// the dropping transaction, in index generation gen.
type orphan struct {
	ext     extent
	durable bool
	end     int64
	gen     uint64
}

// pinVersion pins version v of s (and its chain) and returns the pin's id.
func (f *File) pinVersion(s *ckptState, v version) (uint64, error) {
	chain := []version{v}
	if v.delta() {
		var err error
		if chain, err = f.chainLocked(s, &v); err != nil {
			return 0, err
		}
	}
	p := &f.pins
	if p.byID == nil {
		p.byID, p.slots, p.orphan = map[uint64]*pin{}, map[int64]*pinnedSlot{}, map[int64]orphan{}
	}
	for _, c := range chain {
		ps := p.slots[c.off]
		if ps == nil {
			ps = &pinnedSlot{ext: c.slot()}
			p.slots[c.off] = ps
		}
		ps.n++
	}
	p.next++
	p.byID[p.next] = &pin{s: s, chain: chain}
	return p.next, nil
}

// unpinLocked gives a pin back; the orphaned slots it was the last to hold are freed.
func (f *File) unpinLocked(id uint64) {
	p := &f.pins
	pn := p.byID[id]
	if pn == nil {
		return
	}
	delete(p.byID, id)
	freed := false
	for _, c := range pn.chain {
		ps := p.slots[c.off]
		if ps.n--; ps.n > 0 {
			continue
		}
		delete(p.slots, c.off)
		if o, ok := p.orphan[c.off]; ok {
			delete(p.orphan, c.off)
			if o.durable && o.gen == f.log.gen {
				f.alloc.freeLater(o.ext, o.end)
				f.freeDurable()
			} else {
				// Never durable, or the index was rewritten since (a rewritten index is
				// durable and does not list the version).
				f.alloc.free(o.ext)
			}
			freed = true
		}
	}
	if freed {
		f.pf.wake() // the next saves may reuse the space: plan again
	}
}

// pinned reports whether the slot at off is pinned.
func (f *File) pinned(off int64) bool { return f.pins.slots[off] != nil }

// freeDropped gives back the slot of version d of s, which the index no longer keeps
// (retention dropped it in the transaction that ends at index position end): at once,
// once the drop is durable when d itself was durable (a power loss would otherwise find
// it overwritten while the durable index still lists it), or, when it is pinned, when
// its last pin goes.
func (f *File) freeDropped(d *version, end int64) {
	durable := d.pos < f.log.durable
	if f.pinned(d.off) {
		f.pins.orphan[d.off] = orphan{ext: d.slot(), durable: durable, end: end, gen: f.log.gen}
		return
	}
	if durable {
		f.alloc.freeLater(d.slot(), end)
	} else {
		f.alloc.free(d.slot())
	}
}

// orphanRemoved makes the pinned slot of version v, which a rewritten index no longer
// lists, an orphan (the rewritten index is durable: its slot is free once unpinned).
func (f *File) orphanRemoved(v *version) {
	if f.pinned(v.off) {
		f.pins.orphan[v.off] = orphan{ext: v.slot()}
	}
}

// claimOrphans marks the orphaned slots in use again after the free space was rebuilt
// from a rewritten index, which does not list them.
func (f *File) claimOrphans() {
	for off, o := range f.pins.orphan {
		o.durable = false
		f.pins.orphan[off] = o
		f.alloc.claim(o.ext)
	}
}
