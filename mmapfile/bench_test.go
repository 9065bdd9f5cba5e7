package mmapfile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkSaveAcrossReserve measures what moving to a larger mapping costs a save: a
// "save" grows the file by 64 MiB and copies 64 MiB into the new space, as the engine's
// appending saves do. In each iteration, on a fresh file whose first reserve is 256 MiB:
//
//	within  the save that ends exactly at the first reserve, and the one after the move
//	across  the save that outgrows the first reserve (Grow maps a new range)
//	rewrite the first overwrite, through the newest mapping, of the space the first
//	        save wrote through the old one, against the overwrite of the space the
//	        third save wrote through the newest (the old pages are in the page cache but
//	        not yet mapped in the new range: a minor fault each)
//
// ns/op is the crossing save; across/within and rewrite/rewrite-new are the ratios of
// their times in the same run.
func BenchmarkSaveAcrossReserve(b *testing.B) {
	const (
		reserve = 256 << 20
		save    = 64 << 20
	)
	src := make([]byte, save)
	for i := range src {
		src[i] = byte(i*7 + i>>12)
	}
	for _, huge := range []bool{true, false} {
		b.Run(fmt.Sprintf("size=64MiB/huge=%v", huge), func(b *testing.B) {
			b.SetBytes(save)
			dir := b.TempDir()
			var within, across, rewriteOld, rewriteNew time.Duration
			// timed grows the file to end (if needed) and copies src into [end-save, end).
			timed := func(m *File, end int64) time.Duration {
				t0 := time.Now()
				if err := m.Grow(end); err != nil {
					b.Fatal(err)
				}
				copy(m.Bytes()[end-save:end], src)
				return time.Since(t0)
			}
			b.ResetTimer()
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				path := filepath.Join(dir, fmt.Sprint(i))
				m, err := Open(path, Options{Create: true, FirstReserve: reserve, HugePages: huge})
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Grow(reserve - save); err != nil {
					b.Fatal(err)
				}
				first := m.Reserved()
				within += timed(m, reserve) / 2
				b.StartTimer()
				across += timed(m, reserve+save)
				b.StopTimer()
				if m.Reserved() == first {
					b.Fatal("the save did not cross into a new mapping")
				}
				within += timed(m, reserve+2*save) / 2
				rewriteOld += timed(m, reserve)
				rewriteNew += timed(m, reserve+2*save)
				m.Close()
				os.Remove(path)
			}
			b.ReportMetric(float64(across)/float64(within), "across/within")
			b.ReportMetric(float64(rewriteOld)/float64(rewriteNew), "rewrite/rewrite-new")
		})
	}
}
