package remote_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
)

// TestNewNodeSkipsDamagedNewest: when the newest version committed in the store is
// damaged, Open on a new node succeeds, and RestoreAll(0) restores the newest one that
// checks out and says which it skipped (Recovered().StoreSkipped), instead of
// failing: the rank can start.
func TestNewNodeSkipsDamagedNewest(t *testing.T) {
	root := t.TempDir()
	st, err := store.Dir(root)
	if err != nil {
		t.Fatal(err)
	}
	opts := engine.Options{Remote: &engine.Remote{Store: st}}
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "old.ckp"), opts, 4096, 100)
	for v := 1; v <= 3; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	// Damage the data of version 3 of r0 in the store.
	sv, err := engine.StoreVersions(context.Background(), st, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range sv {
		if v.Name == "r0" && v.Version == 3 {
			p := filepath.Join(root, filepath.FromSlash(v.Objects[0]))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[10] ^= 0xff
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, 4096, 100)
	defer n.f.Close()
	n.check(t, 0, 2)
	sk := n.f.Recovered().StoreSkipped
	if len(sk) != 1 || sk[0].Version != 3 {
		t.Fatalf("StoreSkipped = %+v, want version 3", sk)
	}
	n.check(t, 0, 2)
}
