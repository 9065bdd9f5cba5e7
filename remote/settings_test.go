package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/mem"
)

// TestFlushWithoutWorkers: with Remote.Workers < 0 nothing uploads in the background,
// and Flush uploads what was saved on the caller's goroutine: it returns (it once
// waited forever for uploads that only it runs) with every version committed, and
// Close does the same for the versions saved after it.
func TestFlushWithoutWorkers(t *testing.T) {
	st := mem.New("noworkers")
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"),
		engine.Options{Remote: &engine.Remote{Store: st, Workers: -1}}, 4096, 100)
	w.saveAll(t, 1)
	w.saveAll(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.f.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := fmt.Sprint(committed(t, st, 0)); got != "map[r0:[1 2] r1:[1 2]]" {
		t.Fatalf("committed after Flush: %s", got)
	}
	w.saveAll(t, 3)
	if err := w.f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := fmt.Sprint(committed(t, st, 0)); got != "map[r0:[1 2 3] r1:[1 2 3]]" {
		t.Fatalf("committed after Close: %s", got)
	}
}

// failOnce, once armed, fails the first Get of each key with a transient error.
type failOnce struct {
	store.Store
	mu    sync.Mutex
	armed bool
	seen  map[string]bool
}

func (s *failOnce) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.mu.Lock()
	first := s.armed && !s.seen[key]
	s.seen[key] = s.armed
	s.mu.Unlock()
	if first {
		return nil, errors.New("503 slow down")
	}
	return s.Store.Get(ctx, key, off, n)
}

// TestBackoffAppliesToCalls: Remote.Backoff is the wait after a transient failure in
// the calls a program makes too (JobVersion here), not only in the background: with a
// Backoff of an hour, a JobVersion whose first request fails is still waiting when its
// context ends (with the default 50 ms it once retried at once and succeeded).
func TestBackoffAppliesToCalls(t *testing.T) {
	st := &failOnce{Store: mem.New("backoff"), seen: map[string]bool{}}
	f, err := engine.Open(filepath.Join(t.TempDir(), "a.ckp"), &engine.Options{
		Remote: &engine.Remote{Store: st, Rank: 0, Ranks: 2, Backoff: time.Hour, Workers: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st.mu.Lock()
	st.armed = true
	st.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = f.JobVersion(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, engine.ErrRemote) {
		t.Fatalf("JobVersion after a transient failure with Backoff 1h: %v, want ErrRemote and the context's deadline", err)
	}
}
