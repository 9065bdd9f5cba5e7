package engine

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestDeltaChainAfterCompaction: a delta resolved before a compaction (as a restore
// resolves its version, then reads its chain) still finds its chain after it. A
// compaction moves every version's index record; the chain was found by the record's
// place ("version 3 of "b" is not held").
func TestDeltaChainAfterCompaction(t *testing.T) {
	f, err := Open(filepath.Join(t.TempDir(), "c.ckp"), &Options{KeepVersions: 2, Differential: true, NoTracking: true, NoPrefault: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	small := make([]byte, 64)
	big := make([]byte, 32*4096)
	a, err := f.Register("a", small)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Register("b", big)
	if err != nil {
		t.Fatal(err)
	}
	for v := range 3 { // b's newest is a delta
		big[v*4096] = byte(v + 1)
		if err := b.Save(); err != nil {
			t.Fatal(err)
		}
	}
	want := bytes.Clone(big)
	for i := range 5 { // records of a ahead of b's in the log, which compaction drops
		small[0] = byte(i)
		if err := a.Save(); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	v, err := b.st.resolve(0)
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if !v.delta() {
		t.Fatal("b's newest version is not a delta")
	}
	before := v.pos
	f.syncMu.Lock()
	f.mu.Lock()
	err = f.compact()
	after, _ := b.st.resolve(0)
	f.mu.Unlock()
	f.syncMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if after.pos == before {
		t.Fatalf("compaction left b's newest record at %d: the test proves nothing", before)
	}
	if _, err := f.chainOf(b.st, &v); err != nil {
		t.Fatalf("the chain of the version resolved before the compaction: %v", err)
	}
	clear(big)
	if err := b.Restore(0); err != nil || !bytes.Equal(big, want) {
		t.Fatalf("Restore(0) after the compaction: %v (bytes equal: %v)", err, bytes.Equal(big, want))
	}
}
