// Command heat solves the 2-D heat equation on a square plate with an explicit finite
// difference scheme, and checkpoints its state with ckp every few steps. Killed at any
// moment (kill -9 included) and started again with the same flags, it resumes from the
// newest checkpoint and finishes with exactly the answer of an uninterrupted run.
//
//	go run ./examples/heat -ckpt /tmp/heat.ckp -n 256 -steps 5000 -every 100
//
// The grid and the step counter are saved together with SaveAll, so a restart never
// sees a grid from one step with the counter of another.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/engine"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// progress is the solver's position: saved with the grid in the same SaveAll.
type progress struct {
	Step  int64
	N     int64
	Alpha float64
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("heat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("ckpt", "heat.ckp", "checkpoint file")
	n := fs.Int("n", 128, "grid points per side")
	steps := fs.Int64("steps", 2000, "time steps to run in all")
	every := fs.Int64("every", 50, "checkpoint every this many steps")
	keep := fs.Int("keep", 3, "checkpoints kept (0 = all)")
	sync := fs.Bool("sync", false, "make every checkpoint durable (SyncAlways) instead of SyncNone")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *n < 3 || *steps < 0 || *every < 1 {
		fmt.Fprintln(stderr, "heat: need -n >= 3, -steps >= 0, -every >= 1")
		return 2
	}
	policy := engine.SyncNone
	if *sync {
		policy = engine.SyncAlways
	}
	f, err := engine.Open(*path, &engine.Options{Sync: policy, KeepVersions: *keep})
	if err != nil {
		fmt.Fprintln(stderr, "heat:", err)
		return 1
	}
	defer f.Close()

	grid := make([]float64, *n**n)
	next := make([]float64, *n**n)
	p := progress{N: int64(*n), Alpha: 0.2}
	if _, err := f.Register("grid", floatBytes(grid)); err != nil {
		fmt.Fprintln(stderr, "heat:", err)
		return 1
	}
	if _, err := engine.RegisterValue(f, "progress", &p); err != nil {
		fmt.Fprintln(stderr, "heat:", err)
		return 1
	}
	c, _ := f.Locate("progress")
	if len(c.Versions()) > 0 {
		if err := f.RestoreAll(0); err != nil {
			fmt.Fprintln(stderr, "heat: restore:", err)
			return 1
		}
		if p.N != int64(*n) {
			fmt.Fprintf(stderr, "heat: checkpoint is for n=%d, not %d\n", p.N, *n)
			return 1
		}
		fmt.Fprintf(stdout, "resumed at step %d\n", p.Step)
	} else {
		initial(grid, *n)
	}
	for p.Step < *steps {
		step(next, grid, *n, p.Alpha)
		copy(grid, next) // grid is the registered region
		p.Step++
		if p.Step%*every == 0 || p.Step == *steps {
			if err := f.SaveAll(); err != nil {
				fmt.Fprintln(stderr, "heat: save:", err)
				return 1
			}
			fmt.Fprintf(stdout, "checkpoint at step %d\n", p.Step)
		}
	}
	fmt.Fprintf(stdout, "done: step %d, checksum %016x, centre %.12g\n", p.Step, xxhash.Sum64(floatBytes(grid)), grid[(*n/2)**n+*n/2])
	if err := f.Close(); err != nil {
		fmt.Fprintln(stderr, "heat:", err)
		return 1
	}
	return 0
}

// initial sets a hot square in the middle of a cold plate with a warm left edge.
func initial(g []float64, n int) {
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			switch {
			case j == 0:
				g[i*n+j] = 50
			case i > n/3 && i < 2*n/3 && j > n/3 && j < 2*n/3:
				g[i*n+j] = 100
			}
		}
	}
}

// step computes one explicit time step: interior points move towards the mean of their
// four neighbours; the edges stay fixed.
func step(dst, src []float64, n int, alpha float64) {
	copy(dst, src)
	for i := 1; i < n-1; i++ {
		for j := 1; j < n-1; j++ {
			k := i*n + j
			dst[k] = src[k] + alpha*(src[k-1]+src[k+1]+src[k-n]+src[k+n]-4*src[k])
		}
	}
}

// floatBytes views a float64 slice as bytes (the region ckp saves).
func floatBytes(f []float64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), len(f)*8)
}
