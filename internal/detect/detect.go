// Package detect is the cost model of differential saves: whether a region's changed
// blocks are cheaper to find through the kernel's written-page tracking (the program
// pays a fault per page it writes after a save, the save a scan) or by hashing every
// block, from costs measured where the program runs. It does no I/O but reading the
// process's pinned memory (ReadPins): Policy.Decide is a function of what it is told,
// so a test drives it with any machine's costs. The engine applies it (engine/detect.go).
//
// The estimates are the least of a region's last measurements (a preempted save only
// takes longer). A region is tracked while tracking is expected to cost less: it starts
// at trackMargin of hashing's cost and stops at 1/trackMargin. A new region is hashed
// until its writes have been seen; a region whose saves are full copies anyway (more
// than FullShare of its blocks change) is never tracked. The costs of copying the
// changed blocks, or the whole region, are the same either way and are left out.
package detect

import (
	"fmt"
	"time"

	"github.com/ckp-go/ckp/dirty"
)

// FullShare: a save that changed more than this share of a region's blocks is a full
// version, and a region whose saves change that much is never tracked.
const FullShare = 0.25

// Reason says why a region is not tracked, or why its last save did not trust the
// tracker's report. It is put into words only when asked (Info), so that a save
// allocates nothing.
type Reason struct {
	Kind                    ReasonKind
	Text                    string  // Text; Untracked and Distrust when Pins says nothing
	Pins                    PinSeen // Untracked, Distrust
	Rho, Fault, Track, Hash float64 // Dense, Costly, Cheaper: the policy's figures
	Wait                    int     // Waiting: saves before tracking is tried again
}

// ReasonKind says which Reason it is.
type ReasonKind uint8

// The reasons.
const (
	None      ReasonKind = iota
	Text                 // text says it all: tracking unavailable, a missed write
	New                  // a new region
	Dense                // a dense writer
	Costly               // tracking stopped: it costs more than hashing
	Cheaper              // tracking not started: hashing costs less
	Waiting              // tracking stopped paying off, waiting to try again
	Untracked            // not tracked while memory is pinned
	Distrust             // the last save did not trust the report (pins, a failed scan)
)

// String puts the reason into words.
func (r Reason) String() string {
	switch r.Kind {
	case Text:
		return r.Text
	case New:
		return "new region: hashed until its writes have been seen"
	case Dense:
		return fmt.Sprintf("dense writer: %.0f%% of its pages written between saves, so its saves are full copies; tracking would add a fault per page", 100*r.Rho)
	case Costly:
		return fmt.Sprintf("tracking costs more than hashing: with %.1f%% of its pages written between saves and %.1f µs a fault, %.0f ns a page against %.0f", 100*r.Rho, r.Fault/1000, r.Track, r.Hash)
	case Cheaper:
		return fmt.Sprintf("hashing costs less: with %.1f%% of its pages written between saves and %.1f µs a fault, tracking would cost %.0f ns a page against %.0f", 100*r.Rho, r.Fault/1000, r.Track, r.Hash)
	case Waiting:
		return fmt.Sprintf("tracking stopped paying off: tried again in %d saves at the earliest", r.Wait)
	case Untracked:
		return "not tracked: " + r.why()
	case Distrust:
		return "tracker's report not trusted: " + r.why()
	}
	return ""
}

func (r Reason) why() string {
	if r.Text != "" {
		return r.Text
	}
	return r.Pins.String()
}

// PinSeen is what dirty.ReadPins said: pinned or locked memory, or an error.
type PinSeen struct {
	pins dirty.Pins
	err  error
}

// ReadPins reads the process's pinned and locked memory now.
func ReadPins() PinSeen {
	p, err := dirty.ReadPins()
	return PinSeen{p, err}
}

// Bad reports whether the tracker's report cannot be trusted for what was seen.
func (p PinSeen) Bad() bool { return p.err != nil || !p.pins.None() }

// String says what was pinned, or the error.
func (p PinSeen) String() string {
	if p.err != nil {
		return p.err.Error()
	}
	return p.pins.Why()
}

// Costs are what change detection costs on this machine, in nanoseconds per page
// of the region.
type Costs struct {
	Fault float64 // the first write to a protected page, paid by the program
	Scan  float64 // the tracker's scan (PAGEMAP_SCAN), per page of the region
	Hash  float64 // hashing every block (in one pass, on both cores)
	HashW float64 // hashing the blocks of the pages written, scattered: per page hashed
	Track float64 // write-protecting the region (Track), once per switch to tracking
}

// Defaults stand in until Measured: the first saves of a region measure Hash, and
// Track and Scan are Measured when it is first tracked.
var Defaults = Costs{Fault: 1000, Scan: 40, Hash: 250, HashW: 500, Track: 100}

// Measured is what a region's saves Measured of the costs the policy weighs.
type Measured struct{ Scan, Hash, HashW, Track Samples }

// Costs returns the estimates, with the fault cost given.
func (m *Measured) Costs(fault float64) Costs {
	return Costs{Fault: fault, Scan: m.Scan.Estimate(Defaults.Scan), Hash: m.Hash.Estimate(Defaults.Hash),
		HashW: m.HashW.Estimate(Defaults.HashW), Track: m.Track.Estimate(Defaults.Track)}
}

// Samples are the last measurements of one cost, in nanoseconds per page. The estimate
// is their least: a save slowed by another process, or preempted, only ever takes
// longer, and the policy must not change its mind for one such save.
type Samples struct {
	v [8]float64
	n int
}

// Add records d spent on pages pages.
func (s *Samples) Add(d time.Duration, pages int64) {
	s.v[s.n%len(s.v)] = float64(d.Nanoseconds()) / float64(max(pages, 1))
	s.n++
}

// Estimate returns the least of the Samples, def when there are none.
func (s *Samples) Estimate(def float64) float64 {
	if s.n == 0 {
		return def
	}
	e := s.v[0]
	for _, x := range s.v[1:min(s.n, len(s.v))] {
		e = min(e, x)
	}
	return e
}

// The policy's parameters.
const (
	// FaultScale turns dirty.FaultCost, timed on a few scratch pages whose page tables
	// stay in cache, into what a program's faults cost, scattered over a large region:
	// 0.9-1.15 µs against 0.74 here (1 GiB, 0.1% to 10% of its pages written, quiet).
	FaultScale    = 1.5
	DensityWindow = 4   // saves whose densities the estimate looks at
	trackMargin   = 0.8 // tracking starts when expected to cost this much of hashing or less, stops at 1/trackMargin
	trackHorizon  = 8   // saves over which starting to track must repay Track
	MaxWait       = 64  // saves a region waits, at most, before tracking is tried again
)

// Policy is the cost model's state for one region: the densities of its last
// saves, and how long to wait before trying to track again. It does no I/O: decide is a
// function of what it is told, and a test drives it with any machine's costs.
type Policy struct {
	recent  [DensityWindow]float64 // share of the region written before each of the last saves
	seen    int                    // saves observed
	wait    int                    // saves to wait before tracking may start again
	fails   int                    // tracking stopped soon after it started, so many times in a row
	started int                    // seen+1 when tracking last started; 0: never
}

// Observe records that a share rho of the region's pages was written before a save
// (blocks changed, for a hashed region).
func (p *Policy) Observe(rho float64) {
	p.recent[p.seen%DensityWindow] = min(max(rho, 0), 1)
	p.seen++
	if p.wait > 0 {
		p.wait--
	}
}

// density is the share of pages the next save is expected to find written: the most of
// the last saves (a writer that is sometimes dense pays for tracking when it is).
func (p *Policy) density() float64 {
	var m float64
	for i := 0; i < min(p.seen, DensityWindow); i++ {
		m = max(m, p.recent[i])
	}
	return m
}

// Expected returns what tracking and hashing are expected to cost per save, in
// nanoseconds per page of the region, at density rho with the scrub checking 1/scrub
// of the blocks per save. Copying the changed blocks costs the same either way and is
// left out. Tracking: the program's faults, the scan, the hashing of the pages written
// and of the scrub's window. Hashing: every page.
func Expected(c Costs, rho float64, scrub int) (track, hash float64) {
	track = rho*(c.Fault+c.HashW) + c.Scan
	if scrub > 0 {
		track += c.Hash / float64(scrub) // a run of blocks: hashed as fast as every block
	}
	return track, c.Hash
}

// Decide returns whether the region should be tracked until its next save (tracked:
// whether it is now), and why not.
func (p *Policy) Decide(c Costs, scrub int, tracked bool) (bool, Reason) {
	if p.seen == 0 {
		return false, Reason{Kind: New}
	}
	rho := p.density()
	t, h := Expected(c, rho, scrub)
	figures := Reason{Rho: rho, Fault: c.Fault, Track: t, Hash: h}
	switch {
	case rho > FullShare:
		p.stop(tracked)
		figures.Kind = Dense
		return false, figures
	case tracked && t < h/trackMargin:
		return true, Reason{}
	case tracked:
		p.stop(true)
		figures.Kind = Costly
		return false, figures
	case p.wait > 0:
		return false, Reason{Kind: Waiting, Wait: p.wait}
	case t+c.Track/trackHorizon > trackMargin*h:
		figures.Kind = Cheaper
		return false, figures
	}
	p.started = p.seen + 1
	return true, Reason{}
}

// stop notes that tracking stops (when it ran): the next try waits, twice as long after
// each time tracking did not last.
func (p *Policy) stop(tracked bool) {
	if !tracked {
		return
	}
	if p.started > 0 && p.seen-(p.started-1) < 2*DensityWindow {
		p.fails = min(p.fails+1, 4)
	} else {
		p.fails = 0
	}
	p.wait = min(MaxWait, DensityWindow<<p.fails)
}
