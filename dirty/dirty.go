package dirty

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"unsafe"
)

// Errors returned by this package.
var (
	// ErrUnsupported is wrapped by every error that means "the kernel cannot track this
	// memory here": another system, a kernel older than 6.7, userfaultfd refused
	// (seccomp, a missing CONFIG_USERFAULTFD), PAGEMAP_SCAN missing, memory of a kind
	// that cannot be tracked, a range held by another userfaultfd, or the kernel's
	// mapping limit (vm.max_map_count) reached. The caller hashes the region instead.
	ErrUnsupported = errors.New("dirty: written-page tracking is not supported")
	// ErrClosed is returned by Written on a closed Tracker.
	ErrClosed = errors.New("dirty: tracker is closed")
)

// pageSize is the granularity of tracking.
var pageSize = uintptr(os.Getpagesize())

// PageSize returns the granularity of tracking in bytes: the system's page size.
func PageSize() int { return int(pageSize) }

// span is a page-aligned range of addresses [lo, hi).
type span struct{ lo, hi uintptr }

// Tracker reports the pages of one region written since Track or since its previous
// Written call. Its methods are safe for concurrent use: Written, MarkAll and Close of one
// Tracker are serialised, and different Trackers work independently (scans of Trackers
// that share pages are serialised with each other). Writing the region concurrently with
// any method is allowed: that is what it tracks.
type Tracker struct {
	mu      sync.Mutex // serialises Written, MarkAll and Close
	region  []byte     // keeps Go memory reachable (so unregistered) until Close
	addr    uintptr    // first byte of the region
	n       int        // len(region)
	lo, hi  uintptr    // the pages that hold it
	closed  bool       // under mu
	markAll bool       // under mu: the next Written reports every page
	found   []span     // under mu: scratch for Written
	sb      scanBuf    // under mu: scratch for the kernel scan

	// Under reg.mu: written while holding it exclusively; read while holding it shared.
	peers   []*Tracker // other open Trackers sharing at least one page with this one
	pending []span     // pages that peers found written, not yet reported here
}

// reg is the process-wide state. It has to be global: the kernel lets one userfaultfd
// register a range, so every Tracker in the process shares one, and a page shared by two
// regions is registered once.
var reg struct {
	// mu is held shared by the scan of a Tracker with no peers, and exclusively by the
	// scan of a Tracker with peers, by Track and by Close. So a scan never runs while
	// the set of Trackers sharing its pages changes, and the scans of Trackers that share
	// pages never interleave (one's scan re-protects a shared page and hands it to the
	// other before the other looks).
	mu       sync.RWMutex
	trackers map[*Tracker]struct{}
}

// Available reports whether kernel write tracking works in this process: nil, or an error
// wrapping ErrUnsupported that says why not. The first call sets tracking up (a
// userfaultfd, /proc/self/pagemap, and a one-page self-test); later calls return the same
// answer.
func Available() error { return setup() }

// Track starts tracking region: every page that holds a byte of it is write-protected,
// and writes from then on, by the program or by the kernel (read(2) into the region), are
// recorded. The region need not be page-aligned. It must be private anonymous memory (the
// Go heap, anonymous private mmap, C malloc); other memory gives an error wrapping
// ErrUnsupported, as does a system without tracking (see Available). An empty region
// gives a Tracker that reports nothing.
//
// The Tracker keeps region reachable until Close. Memory the garbage collector does not
// manage (mmap, C malloc) must not be unmapped or freed before Close.
func Track(region []byte) (*Tracker, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	t := &Tracker{region: region, n: len(region)}
	if len(region) == 0 {
		return t, nil
	}
	t.addr = uintptr(unsafe.Pointer(unsafe.SliceData(region)))
	t.lo = t.addr &^ (pageSize - 1)
	t.hi = (t.addr + uintptr(len(region)) + pageSize - 1) &^ (pageSize - 1)

	reg.mu.Lock()
	defer reg.mu.Unlock()
	if err := checkTrackable(t.lo, t.hi); err != nil {
		return nil, err
	}
	for o := range reg.trackers {
		if o.lo < t.hi && t.lo < o.hi {
			t.peers = append(t.peers, o)
		}
	}
	// Pages another Tracker covers are registered and armed already; arming them again
	// would drop a write that Tracker has not collected yet. This Tracker takes them as
	// they are: at worst its first report includes a write from before Track.
	free := uncovered(t.lo, t.hi, t.peers)
	for i, s := range free {
		if err := register(s); err != nil {
			for _, u := range free[:i] {
				_ = unregister(u)
			}
			return nil, err
		}
	}
	for _, s := range free {
		if err := protect(s); err != nil {
			for _, u := range free {
				_ = unregister(u)
			}
			return nil, err
		}
	}
	for _, p := range t.peers {
		p.peers = append(p.peers, t)
	}
	if reg.trackers == nil {
		reg.trackers = make(map[*Tracker]struct{})
	}
	reg.trackers[t] = struct{}{}
	return t, nil
}

// Len returns the length of the tracked region in bytes.
func (t *Tracker) Len() int { return t.n }

// Pages returns the number of pages that hold the region: the most Written can count.
func (t *Tracker) Pages() int { return int((t.hi - t.lo) / pageSize) }

// Written calls fn for each range of the region written since Track or the previous
// Written, in increasing order, as offsets [start, end) into the region: page boundaries
// inside it, clipped to 0 and Len at its ends. It returns the number of pages reported
// (compare with Pages to spot a dense writer). The pages are protected again by the same
// kernel call that finds them, so a write racing with Written is reported by this call or
// by the next one, never lost; a write that completed before Written was called is
// reported by this call.
//
// fn runs after the scan, while the Tracker is locked: it must not call this Tracker's
// methods. fn may be nil to only count (the report is consumed all the same). If fn
// panics, the next Written reports the whole region.
//
// If the kernel scan fails part way (the memory was unmapped and mapped again, say),
// Written reports every page from the point of failure to the end of the region, arranges
// for the next call to report the whole region, and returns the error; the report is
// still a superset of the writes. It returns ErrClosed after Close.
func (t *Tracker) Written(fn func(start, end int)) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, ErrClosed
	}
	if t.lo == t.hi {
		return 0, nil
	}
	err := t.collect()
	pages := 0
	for _, s := range t.found {
		pages += int((s.hi - s.lo) / pageSize)
	}
	if fn != nil {
		done := false
		defer func() {
			if !done {
				t.markAll = true
			}
		}()
		for _, s := range t.found {
			start, end := 0, t.n
			if s.lo > t.addr {
				start = int(s.lo - t.addr)
			}
			if s.hi < t.addr+uintptr(t.n) {
				end = int(s.hi - t.addr)
			}
			fn(start, end)
		}
		done = true
	}
	return pages, err
}

// collect fills t.found with the written pages, in order and merged. Called with t.mu.
func (t *Tracker) collect() error {
	reg.mu.RLock()
	if len(t.peers) > 0 {
		reg.mu.RUnlock()
		reg.mu.Lock()
		defer reg.mu.Unlock()
	} else {
		defer reg.mu.RUnlock()
	}
	found, err := scanWritten(t.lo, t.hi, t.found[:0], &t.sb)
	// Hand what the kernel found (and re-armed) on shared pages to the peers, which can
	// no longer see it. Only the kernel's findings: handing on pending pages too would
	// bounce them between peers for ever.
	for _, p := range t.peers {
		p.pending = appendClipped(p.pending, found, p.lo, p.hi)
	}
	if len(t.pending) > 0 {
		found = mergeSpans(append(found, t.pending...))
		t.pending = t.pending[:0]
	}
	if t.markAll || err != nil {
		found = append(found[:0], span{t.lo, t.hi})
		t.markAll = err != nil
	}
	t.found = found
	if err != nil {
		return fmt.Errorf("dirty: scan of [%#x, %#x): %w", t.lo, t.hi, err)
	}
	return nil
}

// MarkAll makes the next Written report the whole region, for a caller that could not use
// the last report (its save failed, say). The kernel's record is collected (and re-armed)
// by that call as usual.
func (t *Tracker) MarkAll() {
	t.mu.Lock()
	t.markAll = true
	t.mu.Unlock()
}

// Release is for a caller about to overwrite the whole region (a restore): it removes the
// protection of every page in one kernel call, so the writes that follow take no fault
// (about a microsecond a page otherwise), and makes the next Written report the whole
// region, which protects it again. Pages shared with other Trackers are released too;
// their Trackers see them as written. On error the region stays tracked as before (some
// pages may have been released; the next Written reports them all the same).
func (t *Tracker) Release() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.lo == t.hi {
		return nil
	}
	t.markAll = true
	return unprotect(span{t.lo, t.hi})
}

// Close stops tracking: the pages no other open Tracker covers are unregistered, which
// removes their protection; pages shared with another Tracker stay tracked for it. Close
// is idempotent. An error means some pages could not be unregistered (they stay
// registered, which is harmless: writes to them never block).
func (t *Tracker) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.region = nil
	t.found, t.sb = nil, scanBuf{}
	if t.lo == t.hi {
		return nil
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	delete(reg.trackers, t)
	for _, p := range t.peers {
		p.peers = slices.DeleteFunc(p.peers, func(q *Tracker) bool { return q == t })
	}
	var errs []error
	for _, s := range uncovered(t.lo, t.hi, t.peers) {
		if err := unregister(s); err != nil {
			errs = append(errs, err)
		}
	}
	t.peers, t.pending = nil, nil
	return errors.Join(errs...)
}

// uncovered returns the parts of [lo, hi) that no Tracker in others covers, in order.
func uncovered(lo, hi uintptr, others []*Tracker) []span {
	cov := make([]span, 0, len(others))
	for _, o := range others {
		cov = append(cov, span{max(lo, o.lo), min(hi, o.hi)})
	}
	cov = mergeSpans(cov)
	var out []span
	at := lo
	for _, c := range cov {
		if c.lo > at {
			out = append(out, span{at, c.lo})
		}
		at = max(at, c.hi)
	}
	if at < hi {
		out = append(out, span{at, hi})
	}
	return out
}

// appendSpan appends s to sorted spans, merging it with the last one if they touch.
func appendSpan(spans []span, s span) []span {
	if s.lo >= s.hi {
		return spans
	}
	if n := len(spans); n > 0 && s.lo <= spans[n-1].hi {
		spans[n-1].hi = max(spans[n-1].hi, s.hi)
		return spans
	}
	return append(spans, s)
}

// mergeSpans sorts spans and merges those that overlap or touch, in place.
func mergeSpans(spans []span) []span {
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	out := spans[:0]
	for _, s := range spans {
		out = appendSpan(out, s)
	}
	return out
}

// appendClipped appends to dst the parts of sorted spans src inside [lo, hi).
func appendClipped(dst, src []span, lo, hi uintptr) []span {
	i, _ := slices.BinarySearchFunc(src, lo, func(s span, lo uintptr) int {
		if s.hi <= lo {
			return -1
		}
		return 1
	})
	for ; i < len(src) && src[i].lo < hi; i++ {
		dst = append(dst, span{max(lo, src[i].lo), min(hi, src[i].hi)})
	}
	return dst
}
