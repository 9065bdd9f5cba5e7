package bench

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/ckp-go/ckp/dirty"
	"github.com/ckp-go/ckp/engine"
)

// Differential saves: a loop that writes a share of a large region's pages, then
// saves it, run with full saves (the baseline), with differential saves found by the
// kernel's written-page tracking, and with differential saves found by hashing, in
// the same process.

// DiffMode is how a differential run saves.
type DiffMode string

// The modes of a differential run.
const (
	DiffFull     DiffMode = "full"     // Options.Differential off: every save is whole
	DiffTracking DiffMode = "tracking" // Differential, kernel tracking where the engine's cost model chooses it
	DiffHashing  DiffMode = "hashing"  // Differential with NoTracking: every block hashed
	// DiffNoScrub is DiffTracking without the scrub (ScrubSaves < 0): the baseline of
	// the scrub's cost.
	DiffNoScrub DiffMode = "tracking, no scrub"
)

// DiffConfig describes one differential run.
type DiffConfig struct {
	Dir      string
	Size     int     // bytes of the region
	Fraction float64 // share of its pages written between saves (one 8-byte store each)
	Saves    int     // measured iterations
	Warmup   int     // iterations before measuring (the slot rotation fills, tracking starts)
	Keep     int     // Options.KeepVersions
	Mode     DiffMode
	Restores int // restores of the newest version timed after the loop
}

// DiffResult is what a differential run measured.
type DiffResult struct {
	Config    DiffConfig
	Save      []time.Duration // time inside each measured save
	Write     []time.Duration // time the program spent writing before each save
	Written   int64           // bytes the measured saves added to the data file
	Deltas    int             // measured saves that wrote a delta
	DeltaB    int64           // bytes the deltas among them added
	Restore   []time.Duration // restores of the newest version
	Detection string          // how the region's changes were found at the end, and why
	Tracked   int             // measured saves during which the kernel tracked the region
	FaultCost time.Duration   // a write fault here, as the engine measured it (0: no tracking)
}

// MeanSave is the mean time inside a save.
func (r *DiffResult) MeanSave() time.Duration { return Mean(r.Save) }

// MeanLoop is the mean time of one iteration: writes and save.
func (r *DiffResult) MeanLoop() time.Duration { return Mean(r.Save) + Mean(r.Write) }

// MeanRestore is the mean time of a restore.
func (r *DiffResult) MeanRestore() time.Duration { return Mean(r.Restore) }

// WrittenShare is the bytes a measured save added to the data file, on average, as a
// share of the region.
func (r *DiffResult) WrittenShare() float64 {
	return float64(r.Written) / float64(len(r.Save)) / float64(r.Config.Size)
}

// DeltaShare is WrittenShare over the deltas only (0 when there were none).
func (r *DiffResult) DeltaShare() float64 {
	if r.Deltas == 0 {
		return 0
	}
	return float64(r.DeltaB) / float64(r.Deltas) / float64(r.Config.Size)
}

// Mean is the mean of d, 0 when d is empty.
func Mean(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t / time.Duration(len(d))
}

// Differential runs cfg.
func Differential(cfg DiffConfig) (*DiffResult, error) {
	dir, err := os.MkdirTemp(cfg.Dir, "diff-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	opts := &engine.Options{KeepVersions: cfg.Keep, Differential: cfg.Mode != DiffFull, NoTracking: cfg.Mode == DiffHashing}
	if cfg.Mode == DiffNoScrub {
		opts.ScrubSaves = -1
	}
	f, err := engine.Open(filepath.Join(dir, "diff.ckp"), opts)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	region := make([]byte, cfg.Size)
	fillRegion(region, 0, 1)
	c, err := f.Register("region", region)
	if err != nil {
		return nil, err
	}
	res := &DiffResult{Config: cfg}
	r := rand.New(rand.NewPCG(uint64(cfg.Size), uint64(cfg.Fraction*1e6)))
	pages := cfg.Size / 4096
	k := int(cfg.Fraction * float64(pages))
	if cfg.Fraction > 0 && k == 0 {
		k = 1
	}
	targets := make([]int, k)
	for i := 0; i < cfg.Warmup+cfg.Saves; i++ {
		// The pages this iteration writes: drawn before the clock starts.
		if k == pages {
			for j := range targets {
				targets[j] = j*4096 + r.IntN(4096-8)
			}
		} else {
			for j := range targets {
				targets[j] = r.IntN(pages)*4096 + r.IntN(4096-8)
			}
		}
		tracked := false
		if i >= cfg.Warmup && cfg.Mode != DiffFull {
			fi, err := f.Info()
			if err != nil {
				return nil, err
			}
			tracked = fi.Tracked > 0
		}
		t0 := time.Now()
		for _, off := range targets {
			region[off] ^= byte(i + 1)
			region[off+7] ^= byte(i + 3)
		}
		t1 := time.Now()
		if err := c.Save(); err != nil {
			return nil, err
		}
		t2 := time.Now()
		if i < cfg.Warmup {
			continue
		}
		if tracked {
			res.Tracked++
		}
		res.Write = append(res.Write, t1.Sub(t0))
		res.Save = append(res.Save, t2.Sub(t1))
		vs := c.Versions()
		v := vs[len(vs)-1]
		res.Written += v.Written
		if v.Delta {
			res.Deltas++
			res.DeltaB += v.Written
		}
	}
	for i := 0; i < cfg.Restores; i++ {
		t0 := time.Now()
		if err := c.Restore(0); err != nil {
			return nil, err
		}
		res.Restore = append(res.Restore, time.Since(t0))
	}
	fi, err := f.Info()
	if err != nil {
		return nil, err
	}
	switch {
	case len(fi.Detection) == 0:
		res.Detection = "whole saves"
	case fi.Detection[0].Tracked:
		res.Detection = "kernel tracking"
	default:
		res.Detection = "hashing: " + fi.Detection[0].Why
	}
	if cfg.Mode == DiffTracking || cfg.Mode == DiffNoScrub {
		res.FaultCost, _ = dirty.FaultCost()
	}
	return res, f.Close()
}
