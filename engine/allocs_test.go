package engine

import (
	"path/filepath"
	"testing"
)

// TestSaveAllocatesNothing holds goal 7: in steady state a save allocates nothing on
// the heap, for small regions (inline path) and large ones (both cores), under
// retention and keep-all, with the prefaulter running.
func TestSaveAllocatesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
		keep  int
	}{
		{"4KiB-keep2", []int{4096}, 2},
		{"4KiB-keepall", []int{4096}, 0},
		{"8MiB-keep2", []int{8 << 20}, 2},
		{"saveall-keep3", []int{100, 4096, 5 << 20}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(filepath.Join(t.TempDir(), "a.ckp"), &Options{KeepVersions: tc.keep})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var cs []*Checkpoint
			for i, n := range tc.sizes {
				c, err := f.Register(string(rune('a'+i)), make([]byte, n))
				if err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			save := func() {
				var err error
				if len(cs) == 1 {
					err = cs[0].Save()
				} else {
					err = f.SaveAll()
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 20; i++ {
				save()
			}
			if a := testing.AllocsPerRun(50, save); a != 0 {
				t.Fatalf("%.1f allocations per save", a)
			}
		})
	}
}
