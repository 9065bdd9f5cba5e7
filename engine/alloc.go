package engine

import "sort"

// extent is a byte range [off, end) of the data file.
type extent struct{ off, end int64 }

// slotUnit is the granularity of slots: every slot starts and ends on a 64-byte boundary.
const slotUnit = 64

// tailAbsorb: when a slot is cut from a hole, a remainder smaller than this stays with
// the slot (as slack) instead of becoming a hole too small to use.
const tailAbsorb = 4096

// allocator hands out slots of the data file. Free space is the holes below the
// frontier plus everything at or above the frontier. A slot freed by a save under a
// durable sync policy is held back (pending) until that save is durable, so that a
// power loss can never leave the index pointing at a slot that was overwritten.
//
// It is not safe for concurrent use: the File's mutex guards it.
type allocator struct {
	base    int64    // first byte slots may use (after the data header)
	end     int64    // frontier
	holes   []extent // sorted by offset, coalesced, all below end
	pending []pendingFree
	held    int64 // bytes in pending
}

type pendingFree struct {
	ext extent
	pos int64 // index position (in records) of the transaction that freed it
}

// reset builds the free space from the slots in use, in any order.
func (a *allocator) reset(base int64, used []extent) {
	a.base, a.end = base, base
	a.holes = a.holes[:0]
	a.pending = a.pending[:0]
	a.held = 0
	if !sort.SliceIsSorted(used, func(i, j int) bool { return used[i].off < used[j].off }) {
		sort.Slice(used, func(i, j int) bool { return used[i].off < used[j].off })
	}
	cur := base
	for _, e := range used {
		if e.off > cur {
			a.holes = append(a.holes, extent{cur, e.off})
		}
		cur = max(cur, e.end)
	}
	a.end = cur
}

// resetStream builds the free space from the slots in use, given in increasing offset
// order by next (false when done).
func (a *allocator) resetStream(base int64, next func() (extent, bool)) {
	a.base, a.end = base, base
	a.holes = a.holes[:0]
	a.pending = a.pending[:0]
	a.held = 0
	cur := base
	for e, ok := next(); ok; e, ok = next() {
		if e.off > cur {
			a.holes = append(a.holes, extent{cur, e.off})
		}
		cur = max(cur, e.end)
	}
	a.end = cur
}

// claim marks e as in use, as the allocation that placed it did. It reports false when
// part of e was in use already (an inconsistent index); the space is in use either way.
func (a *allocator) claim(e extent) bool {
	if e.off >= a.end {
		if e.off > a.end {
			a.holes = append(a.holes, extent{a.end, e.off})
		}
		a.end = e.end
		return true
	}
	// Reused space: carve e out of the holes it covers.
	free := int64(0)
	h := a.holes
	i := sort.Search(len(h), func(i int) bool { return h[i].end > e.off })
	for i < len(h) && h[i].off < e.end {
		o := h[i]
		lo, hi := max(o.off, e.off), min(o.end, e.end)
		free += hi - lo
		var parts [2]extent
		k := 0
		if o.off < lo {
			parts[k] = extent{o.off, lo}
			k++
		}
		if hi < o.end {
			parts[k] = extent{hi, o.end}
			k++
		}
		h = splice(h, i, parts[:k])
		i += k
	}
	a.holes = h
	ok := free == min(e.end, a.end)-e.off
	if e.end > a.end {
		a.end = e.end
	}
	return ok
}

// alloc returns a slot of at least need bytes whose start is aligned to align, and the
// slot's true size (need plus absorbed slack). It prefers the smallest hole that fits
// and otherwise takes space at the frontier.
func (a *allocator) alloc(need, align int64) (off, size int64) {
	return allocIn(&a.holes, &a.end, need, align)
}

// allocIn is alloc over explicit state, so plan can run it on copies.
func allocIn(holes *[]extent, end *int64, need, align int64) (off, size int64) {
	need = alignUp(need, slotUnit)
	best := -1
	var bestLen int64
	for i, h := range *holes {
		p := alignUp(h.off, align)
		if p+need > h.end {
			continue
		}
		if l := h.end - h.off; best < 0 || l < bestLen {
			best, bestLen = i, l
			if l == need && p == h.off {
				break // exact fit
			}
		}
	}
	if best >= 0 {
		h := (*holes)[best]
		p := alignUp(h.off, align)
		size = need
		if rest := h.end - (p + need); rest < tailAbsorb {
			size += rest
		}
		// Replace h by what is left before and after the slot.
		var parts [2]extent
		k := 0
		if p > h.off {
			parts[k] = extent{h.off, p}
			k++
		}
		if p+size < h.end {
			parts[k] = extent{p + size, h.end}
			k++
		}
		*holes = splice(*holes, best, parts[:k])
		return p, size
	}
	p := alignUp(*end, align)
	if p > *end {
		*holes = append(*holes, extent{*end, p})
	}
	*end = p + need
	return p, need
}

// splice replaces s[i] by repl (0 to 2 extents) in place.
func splice(s []extent, i int, repl []extent) []extent {
	switch len(repl) {
	case 0:
		return append(s[:i], s[i+1:]...)
	case 1:
		s[i] = repl[0]
		return s
	default:
		s = append(s, extent{})
		copy(s[i+2:], s[i+1:])
		s[i], s[i+1] = repl[0], repl[1]
		return s
	}
}

// free returns a slot to the free space, coalescing with its neighbours and pulling the
// frontier back when the freed space reaches it.
func (a *allocator) free(e extent) {
	if e.end <= e.off {
		return
	}
	h := a.holes
	i := sort.Search(len(h), func(i int) bool { return h[i].off >= e.off })
	// Merge with the previous and next holes where they touch.
	if i > 0 && h[i-1].end >= e.off {
		i--
		e.off = h[i].off
		e.end = max(e.end, h[i].end)
		h = append(h[:i], h[i+1:]...)
	}
	for i < len(h) && h[i].off <= e.end {
		e.end = max(e.end, h[i].end)
		h = append(h[:i], h[i+1:]...)
	}
	if e.end >= a.end {
		a.end = min(a.end, e.off)
		a.holes = h
		return
	}
	h = append(h, extent{})
	copy(h[i+1:], h[i:])
	h[i] = e
	a.holes = h
}

// freeLater frees e once the transaction at index position pos is durable.
func (a *allocator) freeLater(e extent, pos int64) {
	a.pending = append(a.pending, pendingFree{e, pos})
	a.held += e.end - e.off
}

// freePending frees every pending slot whose transaction is at or below durable.
func (a *allocator) freePending(durable int64) {
	k := 0
	for _, p := range a.pending {
		if p.pos <= durable {
			a.free(p.ext)
			a.held -= p.ext.end - p.ext.off
		} else {
			a.pending[k] = p
			k++
		}
	}
	a.pending = a.pending[:k]
}

// plan returns where a sequence of saves of the given footprints would go, without
// allocating: the extents (appended to out) and how far the frontier would move.
// scratch is reused for the copy of the holes.
func (a *allocator) plan(needs []int64, aligns []int64, scratch []extent, out []extent) ([]extent, []extent, int64) {
	scratch = append(scratch[:0], a.holes...)
	end := a.end
	for i, n := range needs {
		off, size := allocIn(&scratch, &end, n, aligns[i])
		out = append(out, extent{off, off + size})
	}
	return out, scratch, end
}
