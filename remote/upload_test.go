package remote_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
)

// TestUploadsPassAWaitingCommit: a version whose manifest must wait for the one before
// it (REMOTE.md, the commit of a version, step 3) holds no upload worker while it waits:
// with the first version's commit stalled, the data of every later version is sent.
func TestUploadsPassAWaitingCommit(t *testing.T) {
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Version 1's manifest, committed in life 1 (a job of one rank joins at its first upload).
	held := fmt.Sprintf("m/0/%020d/r0/%020d", 1, 1)
	st := &heldCreates{Store: dir, held: func(key string) bool { return key == held }, release: make(chan struct{})}
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"), engine.Options{Remote: &engine.Remote{Store: st}}, 64<<10)
	defer w.f.Close()
	const n = 8 // twice the upload workers
	for v := 1; v <= n; v++ {
		w.saveAll(t, v)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		objs, err := dir.List(t.Context(), "d/0/")
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d data objects sent while version 1 waits to commit", len(objs), n)
		}
	}
	if got := committed(t, dir, 0); len(got) != 0 {
		t.Fatalf("committed %v while version 1's manifest is held: the order is broken", got)
	}
	close(st.release)
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, dir, 0, 1, seq(1, n))
}
