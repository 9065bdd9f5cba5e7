package remote_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
)

// stallingStore stalls every Get of a data object, while stall is set, until the
// request's context ends: a store that has stopped answering.
type stallingStore struct {
	store.Store
	stall atomic.Bool
}

func (s *stallingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if s.stall.Load() && strings.HasPrefix(key, "d/") {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.Store.Get(ctx, key, off, n)
}

// TestRestoreJobHonoursContext: RestoreJob(ctx) on a new node gives up fetching when
// ctx ends (not after the tier's own Timeout), and the local file loses nothing.
func TestRestoreJobHonoursContext(t *testing.T) {
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &stallingStore{Store: dir}
	opts := func(rank int) engine.Options {
		return engine.Options{Remote: &engine.Remote{Store: st, Rank: rank, Ranks: 2, Timeout: time.Minute}}
	}
	// Rank 0 commits versions 1 and 2, rank 1 only 1: the job version is 1.
	w0 := openRemoteWriter(t, filepath.Join(t.TempDir(), "r0.ckp"), opts(0), 64<<10)
	w1 := openRemoteWriter(t, filepath.Join(t.TempDir(), "r1.ckp"), opts(1), 64<<10)
	for _, w := range []*remoteWriter{w0, w1} {
		if _, err := w.f.RestoreJob(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	w0.saveAll(t, 1)
	w0.saveAll(t, 2)
	if err := w0.f.Close(); err != nil {
		t.Fatal(err)
	}
	w1.saveAll(t, 1)
	if err := w1.f.Close(); err != nil {
		t.Fatal(err)
	}
	// Rank 0 on a new node: the job version 1 must come from the store, which now
	// stalls.
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts(0), 64<<10)
	defer w.f.Close()
	st.stall.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = w.f.RestoreJob(ctx)
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("RestoreJob took %v with a context of 300 ms", took)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RestoreJob with a stalled store: %v, want the context's deadline", err)
	}
	st.stall.Store(false)
	if got := versionsOf(t, w.cks[0]); len(got) != 0 {
		t.Fatalf("the local file keeps %v after the failed RestoreJob, want none", got)
	}
}
