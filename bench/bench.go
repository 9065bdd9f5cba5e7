// Package bench holds the workloads and baselines that `go test -bench` and ckpbench
// share: a save loop run on the engine and on what a user would otherwise write
// (copy+hash into RAM, a hand-written pwrite append with or without fdatasync, the
// temp-file+fsync+rename idiom, bbolt), a restore, and a reopen. Every result records
// each save's latency so that callers report throughput, p50 and p99, and compare
// variants as ratios measured in the same process.
package bench

import (
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/ckp-go/ckp/engine"
)

// Config describes one save loop.
type Config struct {
	Dir     string            // where files go (a fresh subdirectory per run, removed after)
	Size    int               // bytes per region
	Regions int               // regions per save; >1 saves them with SaveAll (0 means 1)
	Saves   int               // measured saves
	Warmup  int               // saves run before measuring
	Policy  engine.SyncPolicy // engine variants only
	Keep    int               // engine: Options.KeepVersions
	Workers int               // engine: Options.Workers (0 = GOMAXPROCS)
	// Compute is the work between saves, in multiples of the saved bytes: the loop
	// reads and writes that many bytes of a working set and changes the regions, as a
	// simulation would. 0 runs the saves back to back.
	Compute float64
	// Remote, when not nil, gives each engine run a remote tier (a fresh store).
	Remote func() (*engine.Remote, error)
}

func (c Config) regions() int { return max(1, c.Regions) }

// Bytes returns the bytes one save writes.
func (c Config) Bytes() int64 { return int64(c.Size) * int64(c.regions()) }

// Result is what one run measured.
type Result struct {
	Variant string          // engine, ram, append, append+fdatasync, rename, bbolt, ...
	Config  Config          //
	Lat     []time.Duration // time inside each measured save
	Wall    time.Duration   // the whole measured loop, compute included
}

// InSave is the total time spent inside saves.
func (r *Result) InSave() time.Duration {
	var t time.Duration
	for _, d := range r.Lat {
		t += d
	}
	return t
}

// Throughput is bytes saved per second of time inside saves.
func (r *Result) Throughput() float64 {
	t := r.InSave().Seconds()
	if t == 0 {
		return math.Inf(1)
	}
	return float64(r.Config.Bytes()) * float64(len(r.Lat)) / t
}

// Rate is saves per second of time inside saves.
func (r *Result) Rate() float64 {
	t := r.InSave().Seconds()
	if t == 0 {
		return math.Inf(1)
	}
	return float64(len(r.Lat)) / t
}

// Percentile returns the p-th percentile (0..100) of the save latencies.
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	s := slices.Clone(r.Lat)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Mean returns the mean save latency.
func (r *Result) Mean() time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	return r.InSave() / time.Duration(len(r.Lat))
}

// Saver is one variant under test, opened on a directory and a set of regions.
type Saver interface {
	// Save saves every region once.
	Save() error
	Close() error
}

// Variant is a way of saving: the engine or a baseline.
type Variant struct {
	Name string
	Open func(cfg Config, dir string, regions [][]byte) (Saver, error)
}

// Regions allocates and fills the regions of cfg.
func Regions(cfg Config) [][]byte {
	regions := make([][]byte, cfg.regions())
	for i := range regions {
		regions[i] = make([]byte, cfg.Size)
		fillRegion(regions[i], i, 0)
	}
	return regions
}

// Run runs cfg on variant v in a fresh directory under cfg.Dir and times each save.
func Run(v Variant, cfg Config) (*Result, error) {
	variant := v.Name
	dir, err := os.MkdirTemp(cfg.Dir, "run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	regions := Regions(cfg)
	var work *compute
	if cfg.Compute > 0 {
		work = newCompute(cfg.Compute, cfg.Bytes())
	}
	s, err := v.Open(cfg, dir, regions)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", variant, err)
	}
	defer s.Close()
	for i := 0; i < cfg.Warmup; i++ {
		if work != nil {
			work.step(regions, i)
		}
		if err := s.Save(); err != nil {
			return nil, fmt.Errorf("%s: warm-up save: %w", variant, err)
		}
	}
	res := &Result{Variant: variant, Config: cfg, Lat: make([]time.Duration, 0, cfg.Saves)}
	start := time.Now()
	for i := 0; i < cfg.Saves; i++ {
		if work != nil {
			work.step(regions, cfg.Warmup+i)
		}
		t0 := time.Now()
		if err := s.Save(); err != nil {
			return nil, fmt.Errorf("%s: save %d: %w", variant, i, err)
		}
		res.Lat = append(res.Lat, time.Since(t0))
	}
	res.Wall = time.Since(start)
	if err := s.Close(); err != nil {
		return nil, fmt.Errorf("%s: close: %w", variant, err)
	}
	return res, nil
}

// fillRegion writes a cheap, changing pattern.
func fillRegion(b []byte, r, step int) {
	x := byte(r*31 + step*7)
	for i := 0; i < len(b); i += 4096 {
		b[i] = x
		x++
	}
}

// compute simulates a program's work between saves: it streams over a working set
// (reading and writing it) and rewrites the regions from it.
type compute struct {
	a, b []byte
}

func newCompute(factor float64, saved int64) *compute {
	// copy(a, b) reads and writes len(a); rewriting the regions writes them once more.
	n := int64(math.Max(0, (factor-1)/2) * float64(saved))
	c := &compute{a: make([]byte, n), b: make([]byte, n)}
	for i := range c.b {
		c.b[i] = byte(i)
	}
	return c
}

func (c *compute) step(regions [][]byte, i int) {
	if i%2 == 0 {
		copy(c.a, c.b)
	} else {
		copy(c.b, c.a)
	}
	src := c.a
	if len(src) == 0 {
		for r := range regions {
			fillRegion(regions[r], r, i)
		}
		return
	}
	for r := range regions {
		for off := 0; off < len(regions[r]); off += len(src) {
			copy(regions[r][off:], src)
		}
		regions[r][0] = byte(i)
	}
}
