package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/dirty"
	"github.com/ckp-go/ckp/internal/detect"
	"github.com/ckp-go/ckp/internal/slot"
)

// Tests of differential saves (Options.Differential): random write patterns against a
// model, both ways of finding changed blocks, the dense-writer rule, the chain rule,
// retention of blocks that kept versions read, damage, repair and reopening.

// diffTracking skips the test when the kernel cannot track written pages here, unless
// CKP_DIRTY_REQUIRE=1 (CI), which makes it a failure.
func diffTracking(t *testing.T) {
	t.Helper()
	if err := dirty.Available(); err != nil {
		if os.Getenv("CKP_DIRTY_REQUIRE") == "1" {
			t.Fatalf("kernel written-page tracking is required (CKP_DIRTY_REQUIRE=1): %v", err)
		}
		t.Skipf("kernel written-page tracking unavailable: %v", err)
	}
}

// diffModes are the two ways of finding changed blocks.
var diffModes = []struct {
	name       string
	noTracking bool
}{{"tracking", false}, {"hashing", true}}

// diffPattern writes into region as the named pattern does.
func diffPattern(t *testing.T, r *rand.Rand, region []byte, pattern string) {
	t.Helper()
	page := 4096
	n := len(region)
	switch pattern {
	case "none":
	case "sparse": // a few bytes anywhere
		for i := 0; i < 1+r.IntN(8); i++ {
			region[r.IntN(n)] ^= byte(1 + r.IntN(255))
		}
	case "dense": // most pages
		for off := 0; off < n; off += page {
			if r.IntN(10) != 0 {
				region[off+r.IntN(min(page, n-off))] ^= 0x5a
			}
		}
	case "perpage": // one byte in every page
		for off := 0; off < n; off += page {
			region[min(off+r.IntN(page), n-1)]++
		}
	case "edges": // bytes on both sides of page boundaries (of the region's offsets)
		for i := 0; i < 6; i++ {
			b := (1 + r.IntN(n/page)) * page
			if b < n {
				region[b-1]++
				region[b]--
			}
		}
	case "ends": // the first and last bytes: the partial pages at both ends
		region[0]++
		region[n-1]++
	case "all":
		for i := range region {
			region[i] = byte(r.Uint32())
		}
	case "read2": // the kernel writes: read(2) from a pipe into a range of the region
		off := r.IntN(n - 1)
		l := 1 + r.IntN(min(3*page, n-off))
		src := make([]byte, l)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { pw.Write(src); pw.Close() }()
		got := 0
		for got < l {
			k, err := pr.Read(region[off+got : off+l])
			if err != nil {
				t.Fatal(err)
			}
			got += k
		}
		pr.Close()
	default:
		t.Fatalf("pattern %q", pattern)
	}
}

var diffPatterns = []string{"none", "sparse", "sparse", "sparse", "dense", "perpage", "edges", "ends", "all", "read2", "read2"}

// diffRegion returns a region of n bytes that starts 100 bytes into a page, so neither
// of its ends is page-aligned.
func diffRegion(n int) []byte {
	return make([]byte, n+4096)[100 : 100+n]
}

func TestDifferentialModel(t *testing.T) {
	for _, m := range diffModes {
		for _, keep := range []int{0, 3} {
			t.Run(fmt.Sprintf("%s/keep%d", m.name, keep), func(t *testing.T) {
				if !m.noTracking {
					diffTracking(t)
				}
				diffModel(t, m.noTracking, keep)
			})
		}
	}
}

func diffModel(t *testing.T, noTracking bool, keep int) {
	r := rand.New(rand.NewPCG(uint64(keep), 42))
	path := filepath.Join(t.TempDir(), "d.ckp")
	opts := &Options{Differential: true, NoTracking: noTracking, KeepVersions: keep, chainLimit: 7, trackAlways: true}
	f := apiOpen(t, path, opts)
	big := diffRegion(300<<10 + 777)
	small := make([]byte, 1000) // below minDiffBlocks: saved whole, in the same SaveAll
	cb := apiReg(t, f, "big", big)
	apiReg(t, f, "small", small)
	model := map[int][2][]byte{}
	check := func(f *File, cb *Checkpoint, v int) {
		t.Helper()
		want := model[v]
		clear(big)
		if err := cb.Restore(v); err != nil {
			t.Fatalf("restore big@%d: %v", v, err)
		}
		apiSame(t, big, want[0], fmt.Sprintf("big@%d", v))
		b, _, err := f.ReadVersion("big", v)
		apiNoErr(t, err, "ReadVersion")
		apiSame(t, b, want[0], fmt.Sprintf("ReadVersion big@%d", v))
	}
	deltas := 0
	for step := 1; step <= 60; step++ {
		p := diffPatterns[r.IntN(len(diffPatterns))]
		diffPattern(t, r, big, p)
		small[r.IntN(len(small))]++
		apiNoErr(t, f.SaveAll(), fmt.Sprintf("SaveAll %d (%s)", step, p))
		vs := cb.Versions()
		v := vs[len(vs)-1]
		model[v.Version] = [2][]byte{bytes.Clone(big), bytes.Clone(small)}
		if v.Delta {
			deltas++
			if v.Base != v.Version-1 || v.Changed > detect.FullShare {
				t.Fatalf("version %d: delta on %d, %.2f changed", v.Version, v.Base, v.Changed)
			}
		}
		if keep > 0 && len(vs) > keep {
			t.Fatalf("%d versions kept, KeepVersions %d", len(vs), keep)
		}
		switch step % 10 {
		case 3: // restore a random kept version (absolute), then carry on from it
			k := vs[r.IntN(len(vs))].Version
			check(f, cb, k)
			apiNoErr(t, f.RestoreAll(k), "RestoreAll")
		case 6: // relative
			rel := -r.IntN(len(vs))
			apiNoErr(t, cb.Restore(rel), "Restore relative")
			apiSame(t, big, model[vs[len(vs)-1+rel].Version][0], "relative restore")
		case 8: // close and reopen: the next delta's base comes from the file
			apiNoErr(t, f.Close(), "Close")
			f = apiOpen(t, path, opts)
			cb = apiReg(t, f, "big", big)
			apiReg(t, f, "small", small)
		}
	}
	if deltas < 10 {
		t.Errorf("only %d deltas in 60 saves", deltas)
	}
	for _, v := range cb.Versions() {
		check(f, cb, v.Version)
	}
	rep, err := f.Verify(nil)
	if err != nil || !rep.OK() {
		t.Fatalf("Verify: %v %+v", err, rep)
	}
	apiNoErr(t, f.Close(), "Close")
	// A reader sees the same.
	g := apiOpen(t, path, &Options{ReadOnly: true})
	for _, v := range must(g.VersionsOf("big")) {
		b, _, err := g.ReadVersion("big", v.Version)
		apiNoErr(t, err, "reader ReadVersion")
		apiSame(t, b, model[v.Version][0], fmt.Sprintf("reader big@%d", v.Version))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestDifferentialPathsAgree: the same writes give the same versions whether the
// kernel tracks the pages or every block is hashed.
func TestDifferentialPathsAgree(t *testing.T) {
	diffTracking(t)
	var files [2]*File
	var regions [2][]byte
	var cks [2]*Checkpoint
	for i, m := range diffModes {
		files[i] = apiOpen(t, filepath.Join(t.TempDir(), "p.ckp"), &Options{Differential: true, NoTracking: m.noTracking, KeepVersions: 4, trackAlways: true})
		regions[i] = diffRegion(200<<10 + 5)
		cks[i] = apiReg(t, files[i], "r", regions[i])
	}
	for step := 0; step < 40; step++ {
		p := diffPatterns[step%len(diffPatterns)]
		for i := range files {
			r := rand.New(rand.NewPCG(uint64(step), 9)) // the same writes in both
			diffPattern(t, r, regions[i], p)
			apiNoErr(t, cks[i].Save(), "Save")
		}
		a, b := cks[0].Versions(), cks[1].Versions()
		x, y := a[len(a)-1], b[len(b)-1]
		if x.Hash != y.Hash || x.Delta != y.Delta || x.Base != y.Base || x.Changed != y.Changed || x.Written != y.Written {
			t.Fatalf("step %d (%s): tracked %+v, hashed %+v", step, p, x, y)
		}
	}
	fi := must(files[0].Info())
	if fi.Differential != "kernel tracking" || fi.Tracked != 1 {
		t.Errorf("Info() of the tracking File: %q, %d tracked", fi.Differential, fi.Tracked)
	}
	if fi := must(files[1].Info()); fi.Differential != "hashing (Options.NoTracking)" || fi.Hashed != 1 {
		t.Errorf("Info() of the hashing File: %q, %d hashed", fi.Differential, fi.Hashed)
	}
}

// TestDifferentialDetectionRule: a new region is hashed until its writes have been
// seen; a sparse writer is then tracked, also after a restore; a dense one stops being
// tracked after one save, and a sparse writer again is tracked again after a wait. The versions stay
// exact through the switches. The costs are a fast machine's, fixed: measured ones make
// the choices depend on the machine's load (TestDetectPolicy has the choices for any).
func TestDifferentialDetectionRule(t *testing.T) {
	diffTracking(t)
	f := apiOpen(t, apiPath(t), &Options{Differential: true, costs: &detect.Costs{Fault: 1000, Scan: 20, Hash: 200, HashW: 400, Track: 100}})
	region := diffRegion(16 << 20)
	c := apiReg(t, f, "r", region)
	r := rand.New(rand.NewPCG(1, 2))
	state := func() RegionDetection {
		fi := must(f.Info())
		if len(fi.Detection) != 1 || fi.Tracked+fi.Hashed != 1 || fi.Detection[0].Tracked != (fi.Tracked == 1) {
			t.Fatalf("Info: %+v", fi)
		}
		return fi.Detection[0]
	}
	onePage := func() { region[r.IntN(len(region))]++ }
	apiNoErr(t, c.Save(), "first Save")
	if s := state(); s.Tracked || !strings.Contains(s.Why, "new region") {
		t.Fatalf("after the first save: %+v", s)
	}
	onePage()
	apiNoErr(t, c.Save(), "sparse Save")
	if s := state(); !s.Tracked || s.Why != "" {
		t.Fatalf("after a sparse save: %+v", s)
	}
	// A restore overwrites the whole region (the next save takes every page as
	// written): not a dense writer.
	apiNoErr(t, c.Restore(0), "Restore")
	onePage()
	apiNoErr(t, c.Save(), "sparse Save after a restore")
	if s := state(); !s.Tracked || s.Why != "" {
		t.Fatalf("after a restore and a sparse save: %+v", s)
	}
	diffPattern(t, r, region, "perpage")
	apiNoErr(t, c.Save(), "dense Save")
	if s := state(); s.Tracked || !strings.Contains(s.Why, "dense writer") {
		t.Fatalf("after a dense save: %+v", s)
	}
	saves := 0
	for ; saves < 3*detect.MaxWait && !state().Tracked; saves++ {
		onePage()
		apiNoErr(t, c.Save(), "sparse Save")
	}
	if !state().Tracked || saves < detect.DensityWindow {
		t.Fatalf("tracked again after %d sparse saves: %+v", saves, state())
	}
	// Still exact after the switches.
	onePage()
	apiNoErr(t, c.Save(), "Save")
	want := bytes.Clone(region)
	clear(region)
	apiNoErr(t, c.Restore(0), "Restore")
	apiSame(t, region, want, "after the switches")
}

// TestDifferentialChainRule: a full version is written when the chain holds the limit
// of deltas, when the chain's payload would outweigh the region, and when more than
// half the blocks changed.
func TestDifferentialChainRule(t *testing.T) {
	for _, m := range diffModes {
		t.Run(m.name, func(t *testing.T) {
			if !m.noTracking {
				diffTracking(t)
			}
			f := apiOpen(t, apiPath(t), &Options{Differential: true, NoTracking: m.noTracking, chainLimit: 5})
			const nblk = 64
			region := diffRegion(nblk * 4096)
			c := apiReg(t, f, "r", region)
			touch := func(k int) { // change k blocks
				for b := 0; b < k; b++ {
					region[b*4096+7]++
				}
			}
			var kinds []bool
			save := func() {
				apiNoErr(t, c.Save(), "Save")
				vs := c.Versions()
				kinds = append(kinds, vs[len(vs)-1].Delta)
			}
			save() // full: no base
			for i := 0; i < 12; i++ {
				touch(1)
				save()
			}
			// 1 full + 5 deltas, full, 5 deltas, full, 1 delta.
			want := []bool{false, true, true, true, true, true, false, true, true, true, true, true, false}
			if fmt.Sprint(kinds) != fmt.Sprint(want) {
				t.Fatalf("delta or not: %v, want %v", kinds, want)
			}
			kinds = kinds[:0]
			touch(40) // more than a quarter of the blocks: full
			save()
			for i := 0; i < 6; i++ {
				touch(15) // 15 of 64: deltas, until the chain's 60 blocks and 15 more outweigh the region
				save()
			}
			// A region that changed more than a quarter of its blocks is expected to go
			// on doing so: its next save is full, copied and hashed in one pass.
			want = []bool{false, false, true, true, true, true, false}
			if fmt.Sprint(kinds) != fmt.Sprint(want) {
				t.Fatalf("delta or not: %v, want %v", kinds, want)
			}
		})
	}
}

// TestDifferentialRetention: with KeepVersions 1 and hundreds of deltas, the blocks a
// kept delta reads are never reused (every kept version restores, also after a
// compaction and a reopen), and the data file stays bounded.
func TestDifferentialRetention(t *testing.T) {
	path := apiPath(t)
	opts := &Options{Differential: true, NoTracking: true, KeepVersions: 1, chainLimit: 20, ChunkSize: 1 << 20}
	f := apiOpen(t, path, opts)
	const n = 256 << 10
	region := diffRegion(n)
	other := diffRegion(64 << 10) // interleaved saves fill the holes between slots
	c := apiReg(t, f, "r", region)
	o := apiReg(t, f, "o", other)
	r := rand.New(rand.NewPCG(3, 4))
	var last []byte
	for step := 0; step < 300; step++ {
		diffPattern(t, r, region, "sparse")
		apiNoErr(t, c.Save(), "Save")
		last = bytes.Clone(region)
		diffPattern(t, r, other, "sparse")
		apiNoErr(t, o.Save(), "Save other")
		if step%50 == 49 {
			clear(region)
			apiNoErr(t, c.Restore(0), "Restore")
			apiSame(t, region, last, fmt.Sprintf("step %d", step))
		}
	}
	fi := must(f.Info())
	// Two full versions of each region and two chains of deltas at most.
	if bound := int64(2*(n+64<<10)) + 2*20*2*(24<<10) + slot.HeaderSize; fi.DataUsed > bound {
		t.Fatalf("data file uses %d bytes, bound %d", fi.DataUsed, bound)
	}
	// Compact the index: pinned versions must survive it.
	f.syncMu.Lock()
	f.mu.Lock()
	err := f.compact()
	f.mu.Unlock()
	f.syncMu.Unlock()
	apiNoErr(t, err, "compact")
	clear(region)
	apiNoErr(t, c.Restore(0), "Restore after compaction")
	apiSame(t, region, last, "after compaction")
	apiNoErr(t, f.Close(), "Close")
	g := apiOpen(t, path, opts)
	c = apiReg(t, g, "r", region)
	clear(region)
	apiNoErr(t, c.Restore(0), "Restore after reopen")
	apiSame(t, region, last, "after reopen")
	for i := 0; i < 30; i++ {
		diffPattern(t, r, region, "sparse")
		apiNoErr(t, c.Save(), "Save after reopen")
	}
	last = bytes.Clone(region)
	clear(region)
	apiNoErr(t, c.Restore(0), "Restore")
	apiSame(t, region, last, "after saves on the reopened file")
}

// TestDifferentialDamage: a damaged block of an older version makes the versions that
// read it fail with ErrCorrupt, leaving the region untouched, and only those.
func TestDifferentialDamage(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, &Options{Differential: true, NoTracking: true})
	region := diffRegion(64 << 10)
	c := apiReg(t, f, "r", region)
	model := map[int][]byte{}
	save := func() {
		apiNoErr(t, c.Save(), "Save")
		vs := c.Versions()
		model[vs[len(vs)-1].Version] = bytes.Clone(region)
	}
	save()         // v1: full
	region[100]++  // block 0
	save()         // v2: delta {0}
	region[9000]++ // block 2
	save()         // v3: delta {2}
	region[9001]++ // block 2 again
	save()         // v4: delta {2}
	v1 := c.Versions()[0]
	if v1.Delta {
		t.Fatal("v1 is a delta")
	}
	// Damage block 2 of v1: v1 and v2 read it; v3 and v4 read their own block 2.
	apiPatchFile(t, path, v1.Offset+2*4096+10, []byte{0xff, 0xee})
	g := apiOpen(t, path+"", &Options{ReadOnly: true})
	for v, ok := range map[int]bool{1: false, 2: false, 3: true, 4: true} {
		_, _, err := g.ReadVersion("r", v)
		if ok && err != nil {
			t.Errorf("ReadVersion(%d) reads no damaged block, yet: %v", v, err)
		}
		if !ok && !errors.Is(err, ErrCorrupt) {
			t.Errorf("ReadVersion(%d) reads the damaged block: got %v, want ErrCorrupt", v, err)
		}
		sentinel := bytes.Repeat([]byte{0xab}, len(region))
		copy(region, sentinel)
		err = c.Restore(v)
		if ok {
			apiNoErr(t, err, fmt.Sprintf("Restore(%d)", v))
			apiSame(t, region, model[v], fmt.Sprintf("Restore(%d)", v))
		} else {
			apiWantErr(t, err, ErrCorrupt, fmt.Sprintf("Restore(%d)", v))
			apiSame(t, region, sentinel, fmt.Sprintf("failed Restore(%d) left the region", v))
		}
	}
	rep := must(g.Verify(nil))
	var bad []int
	for _, d := range rep.Damaged {
		bad = append(bad, d.Version)
	}
	if fmt.Sprint(bad) != "[1 2]" {
		t.Errorf("Verify reports %v damaged, want [1 2]", bad)
	}
}

// TestDifferentialRepair: the index rebuilt from the data file alone holds every
// version, deltas included, and each restores byte-exact.
func TestDifferentialRepair(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, &Options{Differential: true, NoTracking: true, chainLimit: 4})
	region := diffRegion(400 << 10)
	c := apiReg(t, f, "r", region)
	r := rand.New(rand.NewPCG(5, 6))
	model := map[int][]byte{}
	for i := 0; i < 12; i++ {
		diffPattern(t, r, region, "sparse")
		apiNoErr(t, c.Save(), "Save")
		model[i+1] = bytes.Clone(region)
	}
	apiNoErr(t, f.Close(), "Close")
	if err := os.Remove(path + ".idx"); err != nil {
		t.Fatal(err)
	}
	rep, err := Repair(path, nil)
	apiNoErr(t, err, "Repair")
	if rep.Versions != 12 {
		t.Fatalf("repair found %d versions, want 12: %+v", rep.Versions, rep)
	}
	g := apiOpen(t, path, &Options{ReadOnly: true})
	for v := 1; v <= 12; v++ {
		b, vi, err := g.ReadVersion("r", v)
		apiNoErr(t, err, fmt.Sprintf("ReadVersion(%d)", v))
		apiSame(t, b, model[v], fmt.Sprintf("v%d", v))
		if want := (v-1)%5 != 0; vi.Delta != want {
			t.Errorf("v%d: Delta %v, want %v", v, vi.Delta, want)
		}
	}
}

// TestDifferentialRegister: Unregister and Register again (the same or another
// region), and regions saved whole in a File opened without Differential, all give
// exact versions.
func TestDifferentialRegister(t *testing.T) {
	path := apiPath(t)
	region := diffRegion(128 << 10)
	f := apiOpen(t, path, &Options{Differential: true})
	c := apiReg(t, f, "r", region)
	r := rand.New(rand.NewPCG(7, 8))
	model := map[int][]byte{}
	save := func(c *Checkpoint) {
		t.Helper()
		apiNoErr(t, c.Save(), "Save")
		vs := c.Versions()
		model[vs[len(vs)-1].Version] = bytes.Clone(region)
	}
	save(c)
	diffPattern(t, r, region, "sparse")
	save(c)
	apiNoErr(t, c.Unregister(), "Unregister")
	diffPattern(t, r, region, "sparse") // written while unregistered: not tracked
	c = apiReg(t, f, "r", region)
	save(c)
	other := diffRegion(128 << 10)
	copy(other, region)
	apiNoErr(t, c.Unregister(), "Unregister")
	c = apiReg(t, f, "r", other) // another region with the same bytes
	other[5000]++
	region = other
	save(c)
	apiNoErr(t, f.Close(), "Close")
	g := apiOpen(t, path, nil) // whole saves on top of deltas
	c = apiReg(t, g, "r", region)
	diffPattern(t, r, region, "sparse")
	save(c)
	apiNoErr(t, g.Close(), "Close")
	h := apiOpen(t, path, &Options{Differential: true}) // and deltas again
	c = apiReg(t, h, "r", region)
	diffPattern(t, r, region, "sparse")
	save(c)
	diffPattern(t, r, region, "sparse")
	save(c)
	for _, v := range c.Versions() {
		clear(region)
		apiNoErr(t, c.Restore(v.Version), "Restore")
		apiSame(t, region, model[v.Version], fmt.Sprintf("v%d", v.Version))
	}
}
