package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/ckp-go/ckp/bench"
)

// How long a run takes, said as it starts. Each section's time with the default
// settings and two rounds was measured on the machine the project runs on (2 cores of
// a shared VM); a quick copy+hash of 32 MiB in memory, against the same on that
// machine, scales them to this one.

// sectionSeconds is each section's wall time on the reference machine, default
// settings, two rounds.
var sectionSeconds = map[string]float64{
	"save": 7.0, "compute": 4.3, "small": 3.5, "parallel": 3.0, "restore": 1.6, "keep": 4.0,
	"reopen": 2.2, "regions": 0.2, "alloc": 0.8, "remote": 5.5, "differential": 100,
}

// referenceCopyHash is the time of copyHashProbe on the reference machine.
const referenceCopyHash = 3 * time.Millisecond

// copyHashProbe times a copy+hash of 32 MiB of memory already touched (best of three).
func copyHashProbe() time.Duration {
	src := make([]byte, 32<<20)
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

// estimate returns how long the chosen sections should take here.
func estimate(o *options) time.Duration {
	scale := float64(copyHashProbe()) / float64(referenceCopyHash)
	scale = min(max(scale, 0.5), 4) // memory speed only scales so much of the run
	var s float64
	for name := range o.run {
		sec := sectionSeconds[name]
		switch name {
		case "save", "compute", "small", "parallel", "restore", "keep", "remote", "differential":
			sec *= float64(o.rounds) / 2
		}
		if name == "save" || name == "small" {
			sec *= max(1, float64(len(o.policies))/2)
		}
		s += sec
	}
	if o.plot != "" {
		s += 20
	}
	return time.Duration(s * scale * float64(time.Second))
}

// sayEstimate prints the sections and the estimate.
func sayEstimate(w io.Writer, o *options) {
	var names []string
	for _, s := range allSections {
		if o.run[s] {
			names = append(names, s)
		}
	}
	fmt.Fprintf(w, "ckpbench: %s; about %v on this machine\n", strings.Join(names, ", "), estimate(o).Round(time.Second))
}
