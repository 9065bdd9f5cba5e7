package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDurablePoint compares the two ways a SyncAlways save can make its data and
// index durable: msync(MS_SYNC) of exactly the ranges written (what the engine does),
// and fdatasync of both files. The pre-faulter keeps dirty pages ahead of the frontier,
// which fdatasync also writes back.
//
//	go test ./engine -run '^$' -bench DurablePoint -benchtime 50x -count 5
func BenchmarkDurablePoint(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20, 64 << 20} {
		for _, whole := range []bool{false, true} {
			method := "msync-range"
			if whole {
				method = "fdatasync"
			}
			b.Run(fmt.Sprintf("size=%s/method=%s", benchSize(size), method), func(b *testing.B) {
				o := &Options{Sync: SyncAlways, KeepVersions: 2, syncWhole: whole, NoHugePages: os.Getenv("CKP_NOHUGE") != ""}
				f, err := Open(filepath.Join(b.TempDir(), "d.ckp"), o)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				c, _ := f.Register("r", make([]byte, size))
				for i := 0; i < 3; i++ {
					if err := c.Save(); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(size))
				for b.Loop() {
					if err := c.Save(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func benchSize(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// BenchmarkOpenManyRegions opens, for writing, a file of six SaveAlls of 10,000 small
// regions: recovery checks each SaveAll in linear time.
func BenchmarkOpenManyRegions(b *testing.B) {
	path := filepath.Join(b.TempDir(), "m.ckp")
	f, err := Open(path, &Options{NoPrefault: true})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 10000; i++ {
		if _, err := f.Register(fmt.Sprintf("field-%06d", i), make([]byte, 64)); err != nil {
			b.Fatal(err)
		}
	}
	for s := 0; s < 6; s++ {
		if err := f.SaveAll(); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g, err := Open(path, &Options{NoPrefault: true})
		if err != nil {
			b.Fatal(err)
		}
		g.Close()
	}
}
