package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckp-go/ckp/bench"
)

// How long a run takes, and keeping the default run within its budget.
//
// Each step of a run (one round of one job, the reopen, the regions, the allocation
// measurement, ...) has a weight: its section's wall time on the machine the project
// runs on (2 cores of a shared VM), default settings, two rounds, shared among the
// section's steps. Before the first step, two probes scale the weights to this
// machine: a copy+hash of memory already touched (memory speed) and a write to fresh
// page-cache pages of a new file (what every save into new space pays, and what some
// VMs make slow). As the steps finish, the time they took on this machine against
// their weight replaces the probes: the estimate of what is left is the remaining
// weight at the speed measured so far. Before each job, a run that would end past its
// budget (-budget, 30 s for the default run) skips its last rounds, and if that is not
// enough, makes the job's run shorter (fewer measured saves, at least 2): the results
// get noisier, the run no longer than promised.

// sectionSeconds is each section's wall time on the reference machine, default
// settings, two rounds.
var sectionSeconds = map[string]float64{
	"save": 7.0, "compute": 4.3, "small": 3.5, "parallel": 3.0, "restore": 1.6, "keep": 4.0,
	"reopen": 2.2, "regions": 0.2, "alloc": 0.8, "remote": 5.5, "job": 5.0, "differential": 100,
	"plot": 20,
}

// referenceCopyHash and referenceFresh are the probes' times on the reference machine.
const (
	referenceCopyHash = 3 * time.Millisecond
	referenceFresh    = 15 * time.Millisecond
)

// probeSize is how many bytes each probe copies or writes.
const probeSize = 32 << 20

// copyHashProbe times a copy+hash of 32 MiB of memory already touched (best of three).
func copyHashProbe() time.Duration {
	src := make([]byte, probeSize)
	dst := make([]byte, len(src))
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src)
	best := time.Duration(math.MaxInt64)
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		bench.CopyHash(dst, src)
		best = min(best, time.Since(t0))
	}
	return best
}

// freshProbe times writing 32 MiB into fresh page-cache pages of a new file in dir
// through a shared mapping, as a save into new space does (the better of two files).
// It returns 0 if it cannot (the estimate then goes by memory speed alone).
func freshProbe(dir string) time.Duration {
	best := time.Duration(0)
	for i := 0; i < 2; i++ {
		f, err := os.CreateTemp(dir, "probe-")
		if err != nil {
			return 0
		}
		d, err := writeFresh(f)
		f.Close()
		os.Remove(f.Name())
		if err != nil {
			return 0
		}
		if best == 0 || d < best {
			best = d
		}
	}
	return best
}

func writeFresh(f *os.File) (time.Duration, error) {
	if err := f.Truncate(probeSize); err != nil {
		return 0, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, probeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(m)
	t0 := time.Now()
	for i := 0; i < len(m); i += 4096 {
		m[i] = 1
	}
	return time.Since(t0), nil
}

// machineScale is how much slower than the reference machine this one is, from the
// probes: the mean of the memory and the fresh-page ratios (each section does some of
// both), each kept within 0.5x..8x.
func machineScale(copyHash, fresh time.Duration) float64 {
	clamp := func(x float64) float64 { return min(max(x, 0.5), 8) }
	mem := clamp(float64(copyHash) / float64(referenceCopyHash))
	if fresh <= 0 {
		return mem
	}
	return (mem + clamp(float64(fresh)/float64(referenceFresh))) / 2
}

// sectionWeight is a section's reference seconds under the options: the sections of
// jobs run o.rounds rounds (the reference ran two), the save and small sections once
// per sync policy (the reference ran two).
func sectionWeight(o *options, name string) float64 {
	sec := sectionSeconds[name]
	switch name {
	case "save", "compute", "small", "parallel", "restore", "keep", "remote", "differential":
		sec *= float64(o.rounds) / 2
	}
	if name == "save" || name == "small" {
		sec *= max(1, float64(len(o.policies))/2)
	}
	return sec
}

// pacer keeps the estimate of a run as its steps finish.
type pacer struct {
	start  time.Time
	scale  float64            // seconds here per reference second, from the probes
	weight map[string]float64 // reference seconds of one step, by section
	total  float64            // reference seconds of every step planned
	done   float64            // reference seconds of the steps finished
	budget time.Duration      // 0: none
}

// newPacer plans a run of the given steps per section (a section's weight is
// shared among its steps) at the speed the probes measured.
func newPacer(o *options, steps map[string]int, scale float64) *pacer {
	p := &pacer{start: time.Now(), scale: scale, weight: map[string]float64{}, budget: o.budget}
	for name, n := range steps {
		if n == 0 {
			continue
		}
		w := sectionWeight(o, name)
		p.weight[name] = w / float64(n)
		p.total += w
	}
	return p
}

// step records that a step of section finished, at scale of its planned size.
func (p *pacer) step(section string, scale float64) { p.done += p.weight[section] * scale }

// drop takes a planned step of section, at scale of its planned size, out of the
// plan (a round skipped).
func (p *pacer) drop(section string, scale float64) { p.total -= p.weight[section] * scale }

// shrink takes steps steps' worth of section's planned work out of the plan (shorter
// runs): steps may be a fraction.
func (p *pacer) shrink(section string, steps float64) { p.total -= p.weight[section] * steps }

// fit is the share of the work left that fits in the budget at the speed measured
// so far: 1 when it all does (or there is no budget), at least 0.1.
func (p *pacer) fit() float64 {
	left := p.left()
	if p.budget <= 0 || left <= 0 {
		return 1
	}
	room := p.budget - time.Since(p.start)
	return min(1, max(0.1, float64(room)/float64(left)))
}

// rate is the seconds here per reference second: measured once a tenth of the
// planned work is done, the probes' guess before, a mix in between.
func (p *pacer) rate() float64 {
	if p.done <= 0 {
		return p.scale
	}
	measured := time.Since(p.start).Seconds() / p.done
	trust := min(1, p.done/(0.1*p.total))
	return trust*measured + (1-trust)*p.scale
}

// left is the estimate of the time still to run.
func (p *pacer) left() time.Duration {
	return time.Duration(max(0, p.total-p.done) * p.rate() * float64(time.Second))
}

// overBudget reports whether the run would end past its budget at the speed
// measured so far, were it to do extra more reference seconds than planned.
func (p *pacer) overBudget(extra float64) bool {
	if p.budget <= 0 {
		return false
	}
	end := time.Since(p.start) + p.left() + time.Duration(extra*p.rate()*float64(time.Second))
	return end > p.budget
}

// say prints the sections and the estimate as the run starts.
func (p *pacer) say(w io.Writer, o *options) {
	var names []string
	for _, s := range allSections {
		if o.run[s] {
			names = append(names, s)
		}
	}
	budget := ""
	if p.budget > 0 {
		budget = fmt.Sprintf(" for %d rounds (within %v: a round that would end the run past it is skipped, -budget)", o.rounds, p.budget)
	}
	fmt.Fprintf(w, "ckpbench: %s; about %v on this machine%s\n", strings.Join(names, ", "), p.left().Round(time.Second), budget)
}

// sayProgress prints how far the run is and what it expects, after a round.
func (p *pacer) sayProgress(w io.Writer, what string) {
	fmt.Fprintf(w, "ckpbench: %s after %v; about %v left\n", what, time.Since(p.start).Round(100*time.Millisecond), p.left().Round(time.Second))
}
