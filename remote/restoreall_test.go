package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/pattern"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/mem"
)

// hookStore runs hook once, before the first Create of a key under prefix; dead makes
// every request fail (a killed process).
type hookStore struct {
	store.Store
	prefix string
	once   sync.Once
	hook   func()
	dead   bool
}

func (s *hookStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	if s.dead {
		return fmt.Errorf("%w: killed", store.ErrDenied)
	}
	if s.hook != nil && strings.HasPrefix(key, s.prefix) {
		s.once.Do(s.hook)
	}
	return s.Store.Create(ctx, key, r, size)
}

func (s *hookStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if s.dead {
		return nil, fmt.Errorf("%w: killed", store.ErrDenied)
	}
	return s.Store.Get(ctx, key, off, n)
}

// TestRestoreAllOfAMovingJob: RestoreAll(JobVersion) is RestoreJob, and when the job's
// restart point moves while it joins (a version that a killed process of this rank had
// recorded completes on the other ranks meanwhile) it restores the new one: it then
// says so with ErrVersion instead of succeeding as if it restored the version asked
// (the job simulation found this, seed 1099). Before, it returned nil.
func TestRestoreAllOfAMovingJob(t *testing.T) {
	base := mem.New("moving")
	open := func(rank int, st store.Store) *remoteWriter {
		return openRemoteWriter(t, filepath.Join(t.TempDir(), "r.ckp"), engine.Options{
			Remote: &engine.Remote{Store: st, Rank: rank, Ranks: 2, Workers: -1}}, 4096)
	}
	old := &hookStore{Store: base}
	r0, r1 := open(0, old), open(1, base)
	for _, w := range []*remoteWriter{r0, r1} {
		if _, err := w.f.RestoreJob(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	flush := func(w *remoteWriter) {
		if err := w.f.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range []*remoteWriter{r0, r1} {
		w.saveAll(t, 1)
		flush(w)
	}
	r0.saveAll(t, 2)
	flush(r0) // rank 0 records version 2, which waits for rank 1
	old.dead = true
	// Rank 0 restarts; while its RestoreAll(1) joins, rank 1 completes version 2.
	st := &hookStore{Store: base, prefix: "job/join/", hook: func() {
		r1.saveAll(t, 2)
		flush(r1)
	}}
	n := open(0, st)
	jv, err := n.f.JobVersion(t.Context())
	if err != nil || jv != 1 {
		t.Fatalf("JobVersion = %d, %v; want 1", jv, err)
	}
	err = n.f.RestoreAll(jv)
	if !errors.Is(err, engine.ErrVersion) || !strings.Contains(err.Error(), "hold version 2") {
		t.Fatalf("RestoreAll(1) while the job moved to 2: %v, want ErrVersion saying version 2 was restored", err)
	}
	if err := pattern.Check(n.regions[0], 0, 2); err != nil {
		t.Fatalf("the regions after RestoreAll: %v", err)
	}
	if v, err := n.f.RestoreJob(t.Context()); err != nil || v != 2 {
		t.Fatalf("RestoreJob after it = %d, %v; want 2", v, err)
	}
	for _, w := range []*remoteWriter{n, r1} {
		if err := w.f.Close(); err != nil && !errors.Is(err, engine.ErrRemote) {
			t.Fatal(err)
		}
	}
}

// TestRestoreJobNumbersFromTheRestartPoint: a rank back on a node whose newest local
// version is the job's restart point, while the store holds newer versions of it (saved
// on another node, in a life that RestoreJob then ends), numbers its next save after
// the restart point, not after what Open saw in the store. (TestRemoteRanks saw "step
// 18 saved as version 21" under load.)
func TestRestoreJobNumbersFromTheRestartPoint(t *testing.T) {
	st := mem.New("numbers")
	nodeA, nodeB := t.TempDir(), t.TempDir()
	open := func(rank int, dir string) *remoteWriter {
		return openRemoteWriter(t, filepath.Join(dir, fmt.Sprintf("r%d.ckp", rank)), engine.Options{
			Remote: &engine.Remote{Store: st, Rank: rank, Ranks: 2, Workers: -1}}, 4096)
	}
	restore := func(w *remoteWriter, want int) {
		t.Helper()
		if v, err := w.f.RestoreJob(t.Context()); err != nil || v != want {
			t.Fatalf("RestoreJob = %d, %v; want %d", v, err, want)
		}
	}
	closeAll := func(ws ...*remoteWriter) {
		t.Helper()
		for _, w := range ws {
			if err := w.f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	r0, r1 := open(0, nodeA), open(1, t.TempDir())
	restore(r0, 0)
	restore(r1, 0)
	for _, w := range []*remoteWriter{r0, r1} {
		w.saveAll(t, 1)
	}
	closeAll(r0, r1) // version 1 is complete; node A's newest is 1
	b := open(0, nodeB)
	restore(b, 1)
	b.saveAll(t, 2)
	b.saveAll(t, 3)
	closeAll(b) // rank 0 committed 2 and 3 in the new life, which nothing completes
	a := open(0, nodeA)
	restore(a, 1) // ends that life: the job restarts at 1
	a.saveAll(t, 2)
	if got := versionsOf(t, a.cks[0]); got[len(got)-1] != 2 {
		t.Fatalf("the save after RestoreJob at 1 is version %d (versions %v), want 2", got[len(got)-1], got)
	}
	closeAll(a)
}
