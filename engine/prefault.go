package engine

import (
	"errors"
	"runtime/debug"
	"slices"
	"sync/atomic"

	"github.com/ckp-go/ckp/internal/slot"
	"github.com/ckp-go/ckp/mmapfile"
)

// The prefaulter moves page faults off the caller's path. A store into a page of the
// shared mapping that is not yet mapped writable costs a page fault (allocating and
// zeroing a page-cache page, ext4's bookkeeping for a first write, or a write-protect
// fault after write-back): a copy into such pages runs at a fraction of memory speed.
// While the program computes between saves, this goroutine works out where the next
// saves will go (the allocator's plan for every registered region, and with a remote
// tier and retention one slot more for the largest: an upload holds its version's slot
// for a while), makes sure the file is allocated there, and pre-faults those pages with
// MADV_POPULATE_WRITE, which maps them writable without changing their contents. It
// also keeps the index a little ahead.
//
// A large save uses both cores; the prefaulter stops between two 2 MiB pieces as soon as
// one starts and resumes after it.

const (
	pfPiece     = 2 << 20  // populate step; one huge page
	pfLookahead = 16 << 20 // frontier space kept ready beyond the next saves
	pfLowWater  = 8 << 20  // wake when the frontier comes this close to the ready space
	pfIndexAhd  = 256 << 10
	pfBigSave   = 1 << 20 // saves of at least this many bytes re-plan after each save
)

type prefaulter struct {
	f      *File
	wakeCh chan struct{}
	ready  atomic.Int64 // the data file is pre-faulted up to here at the frontier
	idxRdy atomic.Int64 // the index is pre-faulted up to here
	swap   atomic.Bool  // the index file was replaced

	// owned by the loop goroutine
	needs, aligns []int64
	plan, scratch []extent
	last          []extent
	disabled      atomic.Bool
	idx           *mmapfile.File
}

func newPrefaulter(f *File) *prefaulter {
	return &prefaulter{f: f, wakeCh: make(chan struct{}, 1)}
}

func (p *prefaulter) wake() {
	if p == nil {
		return
	}
	select {
	case p.wakeCh <- struct{}{}:
	default:
	}
}

// afterSave decides whether the saves just published call for a new round. The caller
// holds f.mu.
func (p *prefaulter) afterSave(cs []*Checkpoint) {
	if p == nil || p.disabled.Load() {
		return
	}
	f := p.f
	big := false
	for _, c := range cs {
		if len(c.region) >= pfBigSave {
			big = true
			break
		}
	}
	if big || f.alloc.end+pfLowWater > p.ready.Load() || f.log.pos+pfIndexAhd/2 > p.idxRdy.Load() {
		p.wake()
	}
}

func (p *prefaulter) indexSwapped() {
	if p == nil {
		return
	}
	p.swap.Store(true)
	p.idxRdy.Store(0)
}

// activeSaves counts a large save in (1) or out (-1): while one runs, the prefaulter
// and the remote tier's uploads leave it the cores.
func (f *File) activeSaves(d int32) { f.busy.Add(d) }

func (p *prefaulter) loop() {
	defer p.f.bgDone.Done()
	debug.SetPanicOnFault(true)
	for {
		select {
		case <-p.f.stopBg:
			return
		case <-p.wakeCh:
			p.round()
		}
	}
}

// round does one pass of planning and pre-faulting. Any failure (a full disk, a file
// changed underneath) just ends the round: the saves will fault or fail on their own.
func (p *prefaulter) round() {
	defer func() {
		if r := recover(); r != nil {
			_ = faultError(r) // a memory fault: give up this round
		}
	}()
	f := p.f
	f.mu.Lock()
	if f.closed.Load() {
		f.mu.Unlock()
		return
	}
	p.needs, p.aligns = p.needs[:0], p.aligns[:0]
	for _, c := range f.registeredList() {
		n := int64(len(c.region))
		if c.diff != nil {
			if e := c.diff.expect.Load(); e > 0 {
				p.needs = append(p.needs, e)
				p.aligns = append(p.aligns, slot.PayloadAlign(e))
				continue
			}
		}
		p.needs = append(p.needs, slot.Footprint(n, len(c.name)))
		p.aligns = append(p.aligns, slot.PayloadAlign(n))
	}
	if f.tier != nil && f.opts.KeepVersions > 0 && len(p.needs) > 0 {
		// An upload holds its version's slot while the saves go on, so a save soon
		// needs one slot more than the rotation of KeepVersions: have the largest
		// ready too. (Keeping every version, each save takes a new slot anyway.)
		k := slices.Index(p.needs, slices.Max(p.needs))
		p.needs, p.aligns = append(p.needs, p.needs[k]), append(p.aligns, p.aligns[k])
	}
	var end int64
	p.plan, p.scratch, end = f.alloc.plan(p.needs, p.aligns, p.scratch, p.plan[:0])
	front := f.alloc.end
	idxPos := f.log.pos
	if p.swap.Swap(false) || p.idx != f.idx {
		p.idx = f.idx
	}
	idx := p.idx
	f.mu.Unlock()

	// The index: a little ahead of the next record.
	if want := idxPos + pfIndexAhd; p.idxRdy.Load() < want {
		if idx.Grow(want) == nil {
			from := max(p.idxRdy.Load(), idxPos)
			if p.populate(idx, from, want-from) {
				p.idxRdy.Store(want)
			}
		}
	}
	// Holes the next saves will reuse.
	for _, e := range p.plan {
		if e.off >= front || p.seen(e) {
			continue
		}
		if !p.populate(f.data, e.off, e.end-e.off) {
			return
		}
	}
	p.last = append(p.last[:0], p.plan...)
	// The frontier: what the next saves append, plus a margin.
	want := end + pfLookahead
	if end <= front {
		want = front + min(pfLookahead, pfLowWater*2)
	}
	want = min(want, f.opts.MaxSize)
	ready := max(p.ready.Load(), front)
	if want > ready {
		if err := f.data.Grow(want); err != nil {
			return
		}
		for ready < want {
			n := min(int64(pfPiece)-ready%pfPiece, want-ready)
			if !p.populate(f.data, ready, n) {
				break
			}
			ready += n
		}
	}
	p.ready.Store(ready)
}

// seen reports whether e was in the previous round's plan (and so is already faulted).
func (p *prefaulter) seen(e extent) bool {
	for _, l := range p.last {
		if l == e {
			return true
		}
	}
	return false
}

// populate pre-faults [off, off+n) in pieces, stopping (false) when a large save starts.
func (p *prefaulter) populate(m *mmapfile.File, off, n int64) bool {
	for n > 0 {
		if p.f.busy.Load() > 0 {
			return false
		}
		k := min(int64(pfPiece)-off%pfPiece, n)
		if err := m.Populate(off, k); err != nil {
			if errors.Is(err, mmapfile.ErrNoPopulate) {
				p.disabled.Store(true)
			}
			return false
		}
		off += k
		n -= k
	}
	return true
}
