package remote_test

import (
	"maps"
	"path/filepath"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/mem"
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

// TestNewNodeRestoreRequests: a restart on a new node pays for round trips to the
// store, so RestoreAll(0) of four checkpoints reads the job's lineage once for all of
// them, and no life record the process has read (Open read the newest): one probe for
// a newer life, then a manifest and a data object per checkpoint.
func TestNewNodeRestoreRequests(t *testing.T) {
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := mem.NewCounter(dir)
	opts := engine.Options{Remote: &engine.Remote{Store: st}}
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "old.ckp"), opts, 4096, 4096, 4096, 4096)
	for v := 1; v <= 3; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, 4096, 4096, 4096, 4096)
	defer n.f.Close()
	st.SetLabel("restore")
	n.check(t, 0, 3)
	st.SetLabel("")
	c := st.Counts()["restore"]
	if want := map[string]int{"get": 1 + 4 + 4}; !maps.Equal(c.Requests, want) {
		t.Fatalf("RestoreAll(0) of 4 checkpoints on a new node made requests %v, want %v", c.Requests, want)
	}
}
