package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ckp-go/ckp/engine"
)

// RegionsResult measures a program with thousands of regions (one per field, per
// rank's block, per layer): registering them, and reopening a file of SaveAlls of all
// of them, each against a baseline of the same size measured in the same run.
type RegionsResult struct {
	Regions  int
	SaveAlls int
	// Register is the time to register every region on a fresh File; RegisterBase the
	// time to put as many names and regions into a map and a sorted list (what any
	// registry of named regions costs).
	Register, RegisterBase time.Duration
	// Open is engine.Open for writing of the file of SaveAlls; ReadIndex reading its
	// index file once.
	Open, ReadIndex time.Duration
	IndexBytes      int64
}

// RegisterRatio is Register / RegisterBase.
func (r RegionsResult) RegisterRatio() float64 {
	return r.Register.Seconds() / r.RegisterBase.Seconds()
}

// OpenRatio is Open / ReadIndex.
func (r RegionsResult) OpenRatio() float64 { return r.Open.Seconds() / r.ReadIndex.Seconds() }

// ManyRegions registers n small regions, makes saveAlls SaveAlls of them, and times
// runs of each measurement against its baseline, interleaved; medians are reported.
func ManyRegions(dirRoot string, n, saveAlls, runs int) (RegionsResult, error) {
	res := RegionsResult{Regions: n, SaveAlls: saveAlls}
	dir, err := os.MkdirTemp(dirRoot, "regions-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	names := make([]string, n)
	regions := make([][]byte, n)
	for i := range names {
		names[i] = fmt.Sprintf("field-%06d", i)
		regions[i] = make([]byte, 64)
	}
	var regs, bases, opens, reads []time.Duration
	path := filepath.Join(dir, "many.ckp")
	for run := 0; run < runs; run++ {
		p := filepath.Join(dir, fmt.Sprintf("reg%d.ckp", run))
		f, err := engine.Open(p, &engine.Options{NoPrefault: true})
		if err != nil {
			return res, err
		}
		t0 := time.Now()
		for i, name := range names {
			if _, err := f.Register(name, regions[i]); err != nil {
				f.Close()
				return res, err
			}
		}
		regs = append(regs, time.Since(t0))
		if run == 0 {
			for s := 0; s < saveAlls; s++ {
				for i := range regions {
					regions[i][0] = byte(s)
				}
				if err := f.SaveAll(); err != nil {
					f.Close()
					return res, err
				}
			}
			if err := f.Close(); err != nil {
				return res, err
			}
			if err := os.Rename(p, path); err != nil {
				return res, err
			}
			if err := os.Rename(p+".idx", path+".idx"); err != nil {
				return res, err
			}
		} else if err := f.Close(); err != nil {
			return res, err
		}
		t0 = time.Now()
		m := make(map[string][]byte)
		var l []string
		for i, name := range names {
			m[name] = regions[i]
			l = append(l, name)
		}
		slices.Sort(l)
		bases = append(bases, time.Since(t0))
		if len(m) != n || len(l) != n {
			return res, fmt.Errorf("baseline lost entries")
		}

		t0 = time.Now()
		b, err := os.ReadFile(path + ".idx")
		if err != nil {
			return res, err
		}
		reads = append(reads, time.Since(t0))
		res.IndexBytes = int64(len(b))
		t0 = time.Now()
		g, err := engine.Open(path, &engine.Options{NoPrefault: true})
		if err != nil {
			return res, err
		}
		opens = append(opens, time.Since(t0))
		got := len(g.Checkpoints())
		if err := g.Close(); err != nil {
			return res, err
		}
		if got != n {
			return res, fmt.Errorf("reopen found %d checkpoints, saved %d", got, n)
		}
	}
	res.Register, res.RegisterBase = median(regs), median(bases)
	res.Open, res.ReadIndex = median(opens), median(reads)
	return res, nil
}
