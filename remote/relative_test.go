package remote_test

import (
	"path/filepath"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
)

// TestRelativeVersionsOnANewNode: with a remote tier, relative versions count the
// versions kept locally and those committed in the store together: on a new node,
// which holds none, RestoreAll(-2) restores the third newest committed version.
func TestRelativeVersionsOnANewNode(t *testing.T) {
	st, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts := engine.Options{KeepVersions: 2, Remote: &engine.Remote{Store: st, Keep: 3}}
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "old.ckp"), opts, 4096, 100)
	for v := 1; v <= 30; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, 4096, 100)
	defer n.f.Close()
	n.check(t, -2, 28)
	n.check(t, -1, 29)
	n.check(t, 0, 30)
	if err := n.f.RestoreAll(-3); err == nil {
		t.Fatal("RestoreAll(-3) with versions 28..30 in the store succeeded")
	}
}
