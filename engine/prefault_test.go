package engine

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ckp-go/ckp/internal/slot"
	"github.com/ckp-go/ckp/store"
)

// TestPrefaultSpareSlotWithTier: with a remote tier and retention the prefaulter keeps
// one slot of the largest region ready beyond what the rotation needs (an upload holds
// its version's slot, so a save soon needs one more); without a tier, or keeping every
// version (each save takes a new slot anyway), it does not.
func TestPrefaultSpareSlotWithTier(t *testing.T) {
	const size = 24 << 20 // more than the look-ahead the prefaulter keeps anyway
	for _, tc := range []struct {
		tier  bool
		keep  int
		spare bool
	}{{false, 2, false}, {true, 2, true}, {true, 0, false}} {
		tier := tc.tier
		opts := &Options{KeepVersions: tc.keep}
		if tier {
			st, err := store.Dir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			opts.Remote = &Remote{Store: st, Every: 1 << 30} // nothing uploaded: no slot held
		}
		f, err := Open(filepath.Join(t.TempDir(), "p.ckp"), opts)
		if err != nil {
			t.Fatal(err)
		}
		c, err := f.Register("r", make([]byte, size))
		if err != nil {
			t.Fatal(err)
		}
		for range 5 { // the rotation is in place: the next save reuses a slot
			if err := c.Save(); err != nil {
				t.Fatal(err)
			}
		}
		// The rotation's next slot lies at the frontier (retention gave it back there);
		// the spare one after it.
		f.mu.Lock()
		want := f.alloc.end + 2*slot.Footprint(size, 1)
		f.mu.Unlock()
		wait := 10 * time.Second // for what the prefaulter does on its own
		if !tc.spare {
			wait = time.Second // for what it must not do
		}
		deadline := time.Now().Add(wait)
		for f.pf.ready.Load() < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		got := f.pf.ready.Load() >= want
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got != tc.spare {
			t.Fatalf("tier %v, KeepVersions %d: a spare slot pre-faulted beyond the frontier: %v", tier, tc.keep, got)
		}
	}
}
