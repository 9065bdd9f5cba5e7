package remote_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
)

// heldCreates holds every Create of a key that held matches until release is closed:
// a store that has become slow.
type heldCreates struct {
	store.Store
	held    func(key string) bool // nil: hold nothing
	release chan struct{}
}

// dataObject matches the keys of data objects.
func dataObject(key string) bool { return strings.HasPrefix(key, "d/") }

func (s *heldCreates) Create(ctx context.Context, key string, body io.Reader, size int64) error {
	if s.held != nil && s.held(key) {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Create(ctx, key, body, size)
}

// TestAdmitCountsDeltas: a differential save counts against MaxPending the blocks it
// stores, not the whole region, so small deltas of a region larger than MaxPending do
// not wait for the store (REMOTE.md: a save waits only when the pending bytes would
// exceed MaxPending).
func TestAdmitCountsDeltas(t *testing.T) {
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &heldCreates{Store: dir}
	const size = 8 << 20
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"), engine.Options{Differential: true, NoTracking: true,
		Remote: &engine.Remote{Store: st, MaxPending: size / 2, Timeout: 300 * time.Millisecond}}, size)
	defer w.f.Close()
	w.saveAll(t, 1) // a full version
	if err := w.f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.held, st.release = dataObject, make(chan struct{})
	for v := 2; v <= 6; v++ {
		w.regions[0][v*4096] ^= 0xff // one block changed: a delta of 4 KiB
		if err := w.f.SaveAll(); err != nil {
			t.Fatalf("save %d, a delta of one block, with %d bytes pending at most: %v", v, (v-2)*4096, err)
		}
	}
	close(st.release)
	if err := w.f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _, err := engine.ReadStoreVersion(context.Background(), st, 0, "r0", 6)
	if err != nil || string(b) != string(w.regions[0]) {
		t.Fatalf("version 6 in the store: %v", err)
	}
}
