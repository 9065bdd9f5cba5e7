package engine

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// TestDifferentialPathsAgreeAfterOneDenseSave: FORMAT.md promises that kernel tracking
// and hashing "give the same versions for the same writes", also when one dense save
// comes between sparse ones (the save after it is full on both paths, by the busy
// rule), not only after two dense saves in a row as in TestDifferentialPathsAgree.
func TestDifferentialPathsAgreeAfterOneDenseSave(t *testing.T) {
	diffTracking(t)
	var files [2]*File
	var regions [2][]byte
	var cks [2]*Checkpoint
	for i, m := range diffModes {
		files[i] = apiOpen(t, filepath.Join(t.TempDir(), "p.ckp"), &Options{Differential: true, NoTracking: m.noTracking})
		regions[i] = diffRegion(200<<10 + 5)
		cks[i] = apiReg(t, files[i], "r", regions[i])
	}
	for step, p := range []string{"sparse", "sparse", "all", "sparse", "sparse"} {
		var delta [2]bool
		for i := range files {
			r := rand.New(rand.NewPCG(uint64(step), 9))
			diffPattern(t, r, regions[i], p)
			apiNoErr(t, cks[i].Save(), "Save")
			vs := cks[i].Versions()
			delta[i] = vs[len(vs)-1].Delta
		}
		if delta[0] != delta[1] {
			t.Errorf("step %d (%s): tracked delta=%v, hashed delta=%v", step, p, delta[0], delta[1])
		}
	}
}
