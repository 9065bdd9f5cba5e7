package main

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/ctest"
)

// BenchmarkSave compares the save throughput of the C interface with the Go API's, in
// one run, on the same sizes, options (keep=2, sync=none) and file system: one op is
// one Checkpoint.Save in this process and one ckpSave in testdata/savebench.c (linked
// against libckp.so), taken in alternating rounds of about 20 ms each, so that both
// see the same machine. It reports the median time of a save through each (go-ns/save,
// c-ns/save), the throughput that makes (go-MB/s, c-MB/s), and x-go, the median over
// rounds of the C interface's throughput over the Go API's. The goals: x-go at least 0.95 at 64 MiB and at least 0.8 at 4 KiB, where
// the cost of each call crossing from C into Go shows.
//
//	go test ./capi -run '^$' -bench Save -benchtime 2s
func BenchmarkSave(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 20} {
		name := fmt.Sprintf("size=%dKiB", size>>10)
		if size >= 1<<20 {
			name = fmt.Sprintf("size=%dMiB", size>>20)
		}
		b.Run(name, func(b *testing.B) { benchmarkSave(b, size) })
	}
}

func benchmarkSave(b *testing.B, size int) {
	// The Go side.
	f, err := engine.Open(filepath.Join(b.TempDir(), "go.ckp"), &engine.Options{KeepVersions: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	region := make([]byte, size)
	for i := range region {
		region[i] = byte(i*131 + i>>12)
	}
	c, err := f.Register("r", region)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := c.Save(); err != nil {
			b.Fatal(err)
		}
	}

	// The C side, in its own process.
	cmd := exec.Command(savebench(b), filepath.Join(b.TempDir(), "c.ckp"), strconv.Itoa(size))
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		fmt.Fprintln(in, "q")
		if err := cmd.Wait(); err != nil {
			b.Error(err)
		}
	}()
	out := bufio.NewScanner(outPipe)
	read := func() string {
		if !out.Scan() {
			cmd.Process.Kill()
			b.Fatalf("savebench stopped: %v", out.Err())
		}
		return out.Text()
	}
	if s := read(); s != "ready" {
		b.Fatalf("savebench said %q", s)
	}

	perRound := max(1, (64<<20)/size)
	var goNs, cNs, ratio []float64
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(perRound, b.N-done)
		done += n
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if err := c.Save(); err != nil {
				b.Fatal(err)
			}
		}
		g := float64(time.Since(t0).Nanoseconds()) / float64(n)
		fmt.Fprintf(in, "%d\n", n)
		s := read()
		ns, err := strconv.ParseInt(strings.TrimPrefix(s, "ok "), 10, 64)
		if err != nil {
			b.Fatalf("savebench said %q", s)
		}
		cc := float64(ns) / float64(n)
		if n*2 >= perRound || len(goNs) == 0 { // a short last round says little
			goNs, cNs, ratio = append(goNs, g), append(cNs, cc), append(ratio, g/cc)
		}
	}
	b.StopTimer()
	b.ReportMetric(median(goNs), "go-ns/save")
	b.ReportMetric(median(cNs), "c-ns/save")
	b.ReportMetric(float64(size)/median(goNs)*1e3, "go-MB/s")
	b.ReportMetric(float64(size)/median(cNs)*1e3, "c-MB/s")
	b.ReportMetric(median(ratio), "x-go")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

var savebenchExe string

// savebench compiles testdata/savebench.c once.
func savebench(b *testing.B) string {
	b.Helper()
	if savebenchExe == "" {
		ctest.Require(b, "cc")
		lib := ctest.Build(b)
		exe := filepath.Join(lib.Dir, "savebench")
		ctest.Run(b, ".", "cc", append([]string{"-O2", "-o", exe, filepath.Join("testdata", "savebench.c")}, lib.Shared()...)...)
		savebenchExe = exe
	}
	return savebenchExe
}
