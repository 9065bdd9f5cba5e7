package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ckp-go/ckp/engine"
)

// Restore saves one version of each region, then restores it cfg.Saves times (after
// cfg.Warmup unmeasured restores); each restore checks the hash before copying. The
// version is in the page cache, as it is when a job restarts on the same node.
func Restore(cfg Config) (*Result, error) {
	dir, err := os.MkdirTemp(cfg.Dir, "run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	f, err := engine.Open(filepath.Join(dir, "bench.ckp"), &engine.Options{Workers: cfg.Workers})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	regions := make([][]byte, cfg.regions())
	for i := range regions {
		regions[i] = make([]byte, cfg.Size)
		fillRegion(regions[i], i, 1)
		if _, err := f.Register(regionName(i), regions[i]); err != nil {
			return nil, err
		}
	}
	if err := f.SaveAll(); err != nil {
		return nil, err
	}
	res := &Result{Variant: "restore", Config: cfg}
	start := time.Now()
	for i := 0; i < cfg.Warmup+cfg.Saves; i++ {
		t0 := time.Now()
		if err := f.RestoreAll(0); err != nil {
			return nil, err
		}
		if i >= cfg.Warmup {
			res.Lat = append(res.Lat, time.Since(t0))
		}
	}
	res.Wall = time.Since(start)
	return res, f.Close()
}

// ReopenResult compares opening a file with many versions with reading its index once.
type ReopenResult struct {
	Versions   int
	IndexBytes int64
	Open       time.Duration // engine.Open for writing (recovery included), median of the runs
	OpenRead   time.Duration // engine.Open read-only, median of the runs
	ReadIndex  time.Duration // os.ReadFile of the index, median of the runs
}

// Ratio is Open / ReadIndex.
func (r ReopenResult) Ratio() float64 { return r.Open.Seconds() / r.ReadIndex.Seconds() }

// Reopen writes a file with the given number of versions of one small region, closes
// it, then times runs reopenings against runs plain reads of its index file,
// interleaved.
func Reopen(dirRoot string, versions, runs int) (ReopenResult, error) {
	res := ReopenResult{Versions: versions}
	dir, err := os.MkdirTemp(dirRoot, "run-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "many.ckp")
	f, err := engine.Open(path, &engine.Options{NoPrefault: true})
	if err != nil {
		return res, err
	}
	var x [8]byte
	c, err := f.Register("step", x[:])
	if err != nil {
		return res, err
	}
	for i := 0; i < versions; i++ {
		x[0] = byte(i)
		if err := c.Save(); err != nil {
			f.Close()
			return res, err
		}
	}
	if err := f.Close(); err != nil {
		return res, err
	}
	var opens, ropens, reads []time.Duration
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		b, err := os.ReadFile(path + ".idx")
		if err != nil {
			return res, err
		}
		reads = append(reads, time.Since(t0))
		res.IndexBytes = int64(len(b))
		for _, ro := range []bool{false, true} {
			t0 = time.Now()
			g, err := engine.Open(path, &engine.Options{ReadOnly: ro, NoPrefault: true})
			if err != nil {
				return res, err
			}
			if ro {
				ropens = append(ropens, time.Since(t0))
			} else {
				opens = append(opens, time.Since(t0))
			}
			n := len(must(g.VersionsOf("step")))
			g.Close()
			if n != versions {
				return res, fmt.Errorf("reopen found %d versions, wrote %d", n, versions)
			}
		}
	}
	res.Open = median(opens)
	res.OpenRead = median(ropens)
	res.ReadIndex = median(reads)
	return res, nil
}

func must[T any](v T, _ error) T { return v }

func median(d []time.Duration) time.Duration {
	r := &Result{Lat: d}
	return r.Percentile(50)
}
