//go:build linux && (amd64 || arm64 || riscv64 || loong64 || s390x)

package dirty

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
)

// The benchmarks use anonymous private mmap (the same kernel path as the Go heap) so that
// each size is mapped and returned exactly; 4 KiB pages unless a name says thp. Each
// iteration of the large ones costs far more untimed than timed (writing the pattern):
// run them with -benchtime=5x, e.g.
//
//	go test -run '^$' -bench . -benchtime 5x ./dirty/

var benchSizes = []struct {
	name string
	n    int
}{
	{"256MiB", 256 << 20},
	{"1GiB", 1 << 30},
}

// benchMem maps n bytes, populated (every page written once), 2 MiB aligned; thp asks for
// huge pages.
func benchMem(b *testing.B, n int, thp bool) []byte {
	b.Helper()
	const huge = 2 << 20
	m, err := unix.Mmap(-1, 0, n+huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Munmap(m) })
	off := int(-addrOf(m) & (huge - 1))
	region := m[off : off+n]
	advice := unix.MADV_NOHUGEPAGE
	if thp {
		advice = unix.MADV_HUGEPAGE
	}
	if err := unix.Madvise(region, advice); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += int(pageSize) {
		region[i] = 1
	}
	return region
}

// BenchmarkWritten times one Written call (scan and re-protect) after a fraction of the
// region's pages, chosen at random, was written. MB/s is region bytes scanned per second.
func BenchmarkWritten(b *testing.B) {
	requireTracking(b)
	for _, sz := range benchSizes {
		for _, frac := range []float64{0.001, 0.01, 0.1, 1} {
			b.Run(fmt.Sprintf("size=%s/written=%g%%", sz.name, frac*100), func(b *testing.B) {
				region := benchMem(b, sz.n, false)
				tr, err := Track(region)
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Close()
				pages := sz.n / int(pageSize)
				r := rand.New(rand.NewPCG(1, 1))
				pick := r.Perm(pages)[:int(float64(pages)*frac)]
				b.SetBytes(int64(sz.n))
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					for _, p := range pick {
						region[p*int(pageSize)]++
					}
					b.StartTimer()
					n, err := tr.Written(nil)
					if err != nil || n != len(pick) {
						b.Fatalf("Written = %d, %v; wrote %d pages", n, err, len(pick))
					}
				}
				b.ReportMetric(float64(len(pick)), "pages/op")
			})
		}
	}
}

// BenchmarkFirstWrite times the first write to each page of 64 MiB: protected (the
// minor fault that clears the protection), populated and unprotected, and fresh memory
// (the fault that allocates and zeroes the page), per page.
func BenchmarkFirstWrite(b *testing.B) {
	requireTracking(b)
	const n = 64 << 20
	pages := n / int(pageSize)
	touch := func(b *testing.B, region []byte) {
		for i := 0; i < n; i += int(pageSize) {
			region[i]++
		}
	}
	perPage := func(b *testing.B, d time.Duration) {
		b.ReportMetric(float64(d.Nanoseconds())/float64(b.N*pages), "ns/page")
	}
	for _, thp := range []bool{false, true} {
		name := "protected"
		if thp {
			name = "protected-thp"
		}
		b.Run(name, func(b *testing.B) {
			region := benchMem(b, n, thp)
			tr, err := Track(region)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			var d time.Duration
			for range b.N {
				start := time.Now()
				touch(b, region)
				d += time.Since(start)
				if _, err := tr.Written(nil); err != nil {
					b.Fatal(err)
				}
			}
			perPage(b, d)
		})
	}
	b.Run("unprotected", func(b *testing.B) {
		region := benchMem(b, n, false)
		var d time.Duration
		for range b.N {
			start := time.Now()
			touch(b, region)
			d += time.Since(start)
		}
		perPage(b, d)
	})
	b.Run("fresh", func(b *testing.B) {
		var d time.Duration
		for range b.N {
			m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				b.Fatal(err)
			}
			unix.Madvise(m, unix.MADV_NOHUGEPAGE)
			start := time.Now()
			touch(b, m)
			d += time.Since(start)
			unix.Munmap(m)
		}
		perPage(b, d)
	})
}

// BenchmarkTrack times Track (register and protect every page) of 1 GiB: populated 4 KiB
// pages, populated huge pages, and never touched memory (protection markers installed).
func BenchmarkTrack(b *testing.B) {
	requireTracking(b)
	const n = 1 << 30
	for _, kind := range []string{"populated", "thp", "untouched"} {
		b.Run("size=1GiB/"+kind, func(b *testing.B) {
			var region []byte
			if kind == "untouched" {
				m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
				if err != nil {
					b.Fatal(err)
				}
				defer unix.Munmap(m)
				region = m
			} else {
				region = benchMem(b, n, kind == "thp")
			}
			b.SetBytes(n)
			b.ResetTimer()
			for range b.N {
				tr, err := Track(region)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := tr.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkXXHash hashes the whole region, the cost tracking saves: the baseline for the
// ratios.
func BenchmarkXXHash(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run("size="+sz.name, func(b *testing.B) {
			region := benchMem(b, sz.n, false)
			b.SetBytes(int64(sz.n))
			b.ResetTimer()
			for range b.N {
				xxhash.Sum64(region)
			}
		})
	}
}
