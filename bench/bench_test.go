package bench

import (
	"fmt"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/engine"
)

// Benchmarks over the same variants as ckpbench. Sub-benchmark names are
// size=S/regions=R/variant=V[/sync=P][/keep=K] so benchstat can compare runs, e.g.
//
//	go test ./bench -run '^$' -bench 'Save/size=64MiB' -benchtime 20x -count 5

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func benchVariant(b *testing.B, v Variant, cfg Config) {
	cfg.Dir = b.TempDir()
	regions := Regions(cfg)
	s, err := v.Open(cfg, cfg.Dir, regions)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Save(); err != nil { // warm up
		b.Fatal(err)
	}
	b.SetBytes(cfg.Bytes())
	b.ResetTimer()
	for b.Loop() {
		if err := s.Save(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSave(b *testing.B) {
	policies := []struct {
		name string
		p    engine.SyncPolicy
	}{{"none", engine.SyncNone}, {"always", engine.SyncAlways}}
	for _, sh := range []struct{ size, regions int }{{4 << 10, 1}, {1 << 20, 1}, {64 << 20, 1}, {4 << 20, 16}} {
		prefix := fmt.Sprintf("size=%s/regions=%d", sizeName(sh.size), sh.regions)
		cfg := Config{Size: sh.size, Regions: sh.regions}
		for _, p := range policies {
			c := cfg
			c.Policy = p.p
			b.Run(prefix+"/variant=engine/sync="+p.name, func(b *testing.B) { benchVariant(b, Engine, c) })
		}
		c := cfg
		c.Keep = 2
		b.Run(prefix+"/variant=engine/sync=none/keep=2", func(b *testing.B) { benchVariant(b, Engine, c) })
		c = cfg
		c.Workers = 1
		b.Run(prefix+"/variant=engine-1worker/sync=none", func(b *testing.B) { benchVariant(b, Engine, c) })
		for _, v := range []Variant{RAM, Append, AppendSync, Rename, BoltNoSync, Bolt} {
			b.Run(prefix+"/variant="+v.Name, func(b *testing.B) { benchVariant(b, v, cfg) })
		}
	}
}

func BenchmarkRestore(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 20} {
		b.Run("size="+sizeName(size), func(b *testing.B) {
			cfg := Config{Dir: b.TempDir(), Size: size, Saves: b.N}
			b.SetBytes(int64(size))
			res, err := Restore(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(res.Mean().Nanoseconds()), "ns/restore")
		})
	}
}

// TestVariants runs every variant briefly: each must save without error.
func TestVariants(t *testing.T) {
	for _, v := range []Variant{Engine, RAM, Append, AppendSync, Rename, BoltNoSync, Bolt} {
		for _, cfg := range []Config{{Size: 4096, Saves: 5}, {Size: 3 << 20, Regions: 2, Saves: 3, Compute: 3}} {
			cfg.Dir = t.TempDir()
			res, err := Run(v, cfg)
			if err != nil {
				t.Fatalf("%s: %v", v.Name, err)
			}
			if len(res.Lat) != cfg.Saves || res.Throughput() <= 0 || res.Percentile(99) < res.Percentile(50) {
				t.Fatalf("%s: result %+v", v.Name, res)
			}
		}
	}
	r, err := Restore(Config{Dir: t.TempDir(), Size: 5 << 20, Saves: 2})
	if err != nil || len(r.Lat) != 2 {
		t.Fatalf("restore: %v", err)
	}
	ro, err := Reopen(t.TempDir(), 1000, 2)
	if err != nil || ro.Versions != 1000 || ro.Open <= 0 || ro.ReadIndex <= 0 {
		t.Fatalf("reopen: %+v %v", ro, err)
	}
}

// BenchmarkRestoreFloor shows what bounds a restore of 64 MiB that is already in memory
// (a cached version's pages are mapped; the destination is touched, so no page faults
// are measured), in one process: "copy" is one thread copying it (what np.load's read
// does in the kernel), "hash2" and "copy2" each pass alone on two threads in 2 MiB
// pieces, and "hash2+copy2" both passes one after the other, as a restore must (every
// byte checked before the first reaches the region). Compare "hash2+copy2" with "copy"
// and with BenchmarkRestore/size=64MiB:
//
//	go test ./bench -run '^$' -bench 'RestoreFloor|Restore/size=64MiB' -count 5
func BenchmarkRestoreFloor(b *testing.B) {
	const n, piece = 64 << 20, 2 << 20
	src, dst := make([]byte, n), make([]byte, n)
	for i := range src {
		src[i] = byte(i * 7)
	}
	copy(dst, src)
	twice := func(fn func(p []byte, i int)) {
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Go(func() {
				for i := w * piece; i < n; i += 2 * piece {
					fn(src[i:i+piece], i)
				}
			})
		}
		wg.Wait()
	}
	hash2 := func() { twice(func(p []byte, _ int) { xxhash.Sum64(p) }) }
	copy2 := func() { twice(func(p []byte, i int) { copy(dst[i:], p) }) }
	for _, c := range []struct {
		name string
		fn   func()
	}{
		{"copy", func() { copy(dst, src) }},
		{"hash2", hash2},
		{"copy2", copy2},
		{"hash2+copy2", func() { hash2(); copy2() }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(n)
			for b.Loop() {
				c.fn()
			}
		})
	}
}
