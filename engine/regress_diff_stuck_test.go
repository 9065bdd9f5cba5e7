package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestDiffRegressDiffStuckFull: with KeepVersions 1 a file of MaxSize 3 MiB holds a 1 MiB
// region saved whole forever (two slots suffice, as TestMaxSizeOneRule shows). With
// Differential, the pinned chain (up to another L bytes) plus the full version that must
// follow it do not fit: once the chain needs its full version, every save fails with
// ErrFull, for good, although a delta would fit and retention cannot make room (the
// pinned slots are freed only by the full version that does not fit).
func TestDiffRegressDiffStuckFull(t *testing.T) {
	for _, diff := range []bool{false, true} {
		t.Run(fmt.Sprintf("differential=%v", diff), func(t *testing.T) {
			f := apiOpen(t, apiPath(t), &Options{Differential: diff, NoTracking: true, KeepVersions: 1, MaxSize: 3 << 20, ChunkSize: 1 << 20})
			region := make([]byte, 1<<20)
			c := apiReg(t, f, "r", region)
			r := rand.New(rand.NewPCG(2, 2))
			fails, firstFail := 0, -1
			for step := 0; step < 300; step++ {
				for k := 0; k < 12; k++ { // 12 of 256 blocks: a delta of 48 KiB
					region[r.IntN(len(region))]++
				}
				err := c.Save()
				if errors.Is(err, ErrFull) {
					fails++
					if firstFail < 0 {
						firstFail = step
					}
					continue
				}
				apiNoErr(t, err, "Save")
			}
			if fails > 0 {
				t.Errorf("%d of 300 saves failed with ErrFull, the first at save %d", fails, firstFail)
			}
		})
	}
}
