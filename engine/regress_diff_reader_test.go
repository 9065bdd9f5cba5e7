package engine

import (
	"errors"
	"fmt"
	"testing"
)

// TestDiffRegressReaderDroppedDelta: a reader's ReadVersion and Restore of a version the
// writer has since dropped (and whose slots it reused) must say ErrVersion, as they do
// for versions stored whole ("dropped by the writer since this File opened"); for a
// version stored by blocks the trailer check in assembleTable fails first and the
// caller gets ErrCorrupt: a healthy file reported as corrupt.
func TestDiffRegressReaderDroppedDelta(t *testing.T) {
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
