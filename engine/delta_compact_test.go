package engine

import (
	"fmt"
	"testing"

	"github.com/ckp-go/ckp/index"
)

// trueLive counts the index records that describe what is in use (kept and pinned
// versions with their BLOCKS records, and names): what f.live is meant to be.
func trueLive(f *File) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, s := range f.byID {
		if s.named {
			n += int64(index.NameRecordCount(len(s.name)))
		}
		for i := 0; i < s.held(); i++ {
			n += recordsOf(s.heldAt(i).blocks)
		}
	}
	return n
}

// TestCompactionAfterReopenOfDifferentialFile: after a reopen of a differential file,
// the count of live index records (kept versions, and the held versions their deltas
// read) stays right as saves drop versions, so the compaction that comes due works
// (a wrong, negative count would size its record list below zero and kill the
// process).
func TestCompactionAfterReopenOfDifferentialFile(t *testing.T) {
	path := apiPath(t)
	opts := &Options{Differential: true, NoTracking: true, KeepVersions: 1, NoPrefault: true}
	f := apiOpen(t, path, opts)
	region := diffRegion(64 << 10) // 16 blocks: chains of up to 15 one-block deltas
	c := apiReg(t, f, "r", region)
	step := 0
	save := func(c *Checkpoint) {
		step++
		region[(step*4096+step)%len(region)]++
		if err := c.Save(); err != nil {
			t.Fatalf("save %d: %v", step, err)
		}
	}
	for i := 0; i < 14; i++ {
		save(c)
	}
	apiNoErr(t, f.Close(), "Close")
	g := apiOpen(t, path, opts)
	c = apiReg(t, g, "r", region)
	t.Logf("after reopen: f.live %d, records in use %d", g.live, trueLive(g))
	minLive := g.live
	for i := 0; i < 40; i++ {
		save(c)
		minLive = min(minLive, g.live)
	}
	t.Logf("after 40 saves: f.live %d (min %d), records in use %d", g.live, minLive, trueLive(g))
	if g.live != trueLive(g) {
		t.Errorf("f.live %d, records in use %d", g.live, trueLive(g))
	}
	if testing.Short() {
		return
	}
	// Let the index grow until compaction is due (2 records per save).
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("a Save panicked out of the API (the process would die) after %d saves, f.live %d: %v", step, g.live, r)
		}
	}()
	gen := g.log.gen
	var before int64
	for g.log.gen == gen && step < 400000 {
		before = g.live
		save(c)
	}
	t.Logf("compacted (generation %d) at save %d; f.live before that save %d, after %d; in use %d", g.log.gen, step, before, g.live, trueLive(g))
	fmt.Print()
}
