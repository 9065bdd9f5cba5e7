package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestDifferentialNeverStuckAtMaxSize: with KeepVersions 1 a file of MaxSize 3 MiB holds
// a 1 MiB region saved whole forever (two slots suffice, as TestMaxSizeOneRule shows),
// and so it does with Differential: saves never fail with ErrFull for good, although
// the held chain (up to another L bytes) and the full version that must follow it do
// not fit together; a delta is written where the full version does not fit.
func TestDifferentialNeverStuckAtMaxSize(t *testing.T) {
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
