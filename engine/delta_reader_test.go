package engine

import (
	"errors"
	"fmt"
	"testing"
)

// TestReaderOfDroppedDeltaGetsErrVersion: a reader's ReadVersion and Restore of a
// version stored by blocks that the writer has since dropped (and whose slots it
// reused) say ErrVersion, as they do for versions stored whole ("dropped by the writer
// since this File opened"): a healthy file is never reported as corrupt.
func TestReaderOfDroppedDeltaGetsErrVersion(t *testing.T) {
	for _, diff := range []bool{false, true} {
		t.Run(fmt.Sprintf("differential=%v", diff), func(t *testing.T) {
			path := apiPath(t)
			opts := &Options{Differential: diff, NoTracking: true, KeepVersions: 1, NoPrefault: true}
			f := apiOpen(t, path, opts)
			region := diffRegion(64 << 10)
			c := apiReg(t, f, "r", region)
			step := 0
			save := func() {
				step++
				region[(step*4096+step)%len(region)]++
				apiNoErr(t, c.Save(), "Save")
			}
			for i := 0; i < 3; i++ {
				save()
			}
			g := apiOpen(t, path, &Options{ReadOnly: true})
			for i := 0; i < 100; i++ { // the writer moves on and reuses the old slots
				save()
			}
			_, _, err := g.ReadVersion("r", 0)
			t.Logf("reader ReadVersion(0): %v", err)
			if !errors.Is(err, ErrVersion) {
				t.Errorf("ReadVersion of a version the writer dropped: %v, want ErrVersion", err)
			}
			rc := apiReg(t, g, "r", make([]byte, len(region)))
			err = rc.Restore(0)
			t.Logf("reader Restore(0): %v", err)
			if !errors.Is(err, ErrVersion) {
				t.Errorf("Restore of a version the writer dropped: %v, want ErrVersion", err)
			}
		})
	}
}
