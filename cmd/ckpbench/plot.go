package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/ckp-go/ckp/bench"
)

// sweepSizes are the region sizes of the -plot sweep.
var sweepSizes = []int{4 << 10, 64 << 10, 1 << 20, 8 << 20, 64 << 20}

func goarch() string { return runtime.GOARCH }

// sweep runs each policy and the append baseline over sweepSizes, back to back.
func sweep(o *options, dir string, rep *report, b *bar) error {
	for _, size := range sweepSizes {
		saves := max(4, min(20000, (256<<20)/size))
		cfg := bench.Config{Dir: dir, Size: size, Saves: saves, Warmup: 1}
		for _, p := range o.policies {
			c := cfg
			c.Policy, c.Keep = p.p, o.retain
			c.Warmup = max(c.Warmup, o.retain+1)
			if p.name == "always" {
				c.Saves = max(4, min(300, c.Saves))
			}
			b.Describe(fmt.Sprintf("sweep    %s %s", humanSize(size), p.name))
			warmFor(c)
			res, err := bench.Run(bench.Engine, c)
			if err != nil {
				return fmt.Errorf("sweep: %w", err)
			}
			rep.Sweep = append(rep.Sweep, rowOf("sweep", "engine", p.name, res))
			b.Add(1)
		}
		b.Describe(fmt.Sprintf("sweep    %s append", humanSize(size)))
		warmFor(cfg)
		res, err := bench.Run(bench.Append, cfg)
		if err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
		rep.Sweep = append(rep.Sweep, rowOf("sweep", "append", "", res))
		b.Add(1)
	}
	return nil
}

// writePlot draws throughput against region size, one line per policy and one for the
// append baseline, to a PNG or SVG file.
func writePlot(path string, rep *report) error {
	p := plot.New()
	p.Title.Text = "ckp save throughput by region size"
	p.X.Label.Text = "region size (bytes, log scale)"
	p.Y.Label.Text = "throughput (GB/s)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = sizeTicks{}
	series := map[string]plotter.XYs{}
	var names []string
	for _, r := range rep.Sweep {
		name := r.Variant
		if r.Policy != "" {
			name += " sync=" + r.Policy
		}
		if _, ok := series[name]; !ok {
			names = append(names, name)
		}
		series[name] = append(series[name], plotter.XY{X: float64(r.Size), Y: r.BytesPerSec / 1e9})
	}
	var args []any
	for _, n := range names {
		args = append(args, n, series[n])
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return err
	}
	p.Legend.Top = true
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".png" && ext != ".svg" {
		return fmt.Errorf("-plot %s: use a .png or .svg file name", path)
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

type sizeTicks struct{}

func (sizeTicks) Ticks(min, max float64) []plot.Tick {
	var t []plot.Tick
	for _, s := range sweepSizes {
		if float64(s) >= min && float64(s) <= max {
			t = append(t, plot.Tick{Value: float64(s), Label: humanSize(s)})
		}
	}
	return t
}
