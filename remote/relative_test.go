package remote_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/pattern"
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
// store. Open lists the rank's manifests and finds the newest life (its hint, a probe
// for a newer one); with no local version to catch up with, it reads no log. Then
// RestoreAll(0) of four checkpoints reads the job's lineage once for all of them, and
// no life record the process has read: one probe for a newer life, then a manifest
// and a data object per checkpoint.
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
	st.SetLabel("open")
	n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, 4096, 4096, 4096, 4096)
	defer n.f.Close()
	st.SetLabel("restore")
	n.check(t, 0, 3)
	st.SetLabel("")
	c := st.Counts()
	if want := map[string]int{"list": 1, "get": 2}; !maps.Equal(c["open"].Requests, want) {
		t.Errorf("Open on a new node made requests %v, want %v", c["open"].Requests, want)
	}
	if want := map[string]int{"get": 1 + 4 + 4}; !maps.Equal(c["restore"].Requests, want) {
		t.Errorf("RestoreAll(0) of 4 checkpoints on a new node made requests %v, want %v", c["restore"].Requests, want)
	}
}

// TestNewNodeFetchStreams: a new node fetches a version in as many ranged GETs at once
// as the store says serve it best: one, for a store that says one (a directory store
// on a local disk), though the version is four pieces.
func TestNewNodeFetchStreams(t *testing.T) {
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &oneStream{Store: dir}
	opts := engine.Options{Remote: &engine.Remote{Store: st}}
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "old.ckp"), opts, 32<<20, 1<<20)
	w.saveAll(t, 1)
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, 32<<20, 1<<20)
	defer n.f.Close()
	st.mu.Lock()
	st.gets, st.most = 0, 0
	st.mu.Unlock()
	n.check(t, 0, 1)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gets < 5 || st.most != 1 {
		t.Fatalf("%d data GETs, at most %d at once; want at least 5 (4 pieces and a version), one at a time", st.gets, st.most)
	}
}

// oneStream is a store that says it serves one ranged read at a time, and counts how
// many reads of data objects it serves at once.
type oneStream struct {
	store.Store
	mu               sync.Mutex
	open, most, gets int
}

func (s *oneStream) ReadStreams() int { return 1 }

func (s *oneStream) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if !strings.HasPrefix(key, "d/") {
		return s.Store.Get(ctx, key, off, n)
	}
	s.mu.Lock()
	s.open++
	s.gets++
	s.most = max(s.most, s.open)
	s.mu.Unlock()
	rc, err := s.Store.Get(ctx, key, off, n)
	if err != nil {
		s.done()
		return nil, err
	}
	return &countedBody{rc, s}, nil
}

func (s *oneStream) done() {
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
}

type countedBody struct {
	io.ReadCloser
	s *oneStream
}

func (b *countedBody) Close() error {
	err := b.ReadCloser.Close()
	b.s.done()
	return err
}

// TestNewNodeLookupsAtOnce: RestoreAll and RestoreJob on a new node read the manifests
// of their checkpoints at once, not one round trip after another: the store holds each
// manifest GET until a second one is in flight (for at most 10 s, which fails).
func TestNewNodeLookupsAtOnce(t *testing.T) {
	for _, job := range []bool{false, true} {
		t.Run(fmt.Sprintf("job=%v", job), func(t *testing.T) {
			dir, err := store.Dir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			st := &pairedGets{Store: dir, arrived: make(chan struct{}, 16)}
			opts := engine.Options{Remote: &engine.Remote{Store: st}}
			w := openRemoteWriter(t, filepath.Join(t.TempDir(), "old.ckp"), opts, 4096, 4096, 4096, 4096)
			w.saveAll(t, 1)
			w.saveAll(t, 2)
			if err := w.f.Close(); err != nil {
				t.Fatal(err)
			}
			n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, 4096, 4096, 4096, 4096)
			defer n.f.Close()
			st.on.Store(true)
			if job {
				if v, err := n.f.RestoreJob(t.Context()); err != nil || v != 2 {
					t.Fatalf("RestoreJob: %d, %v; want 2", v, err)
				}
			} else if err := n.f.RestoreAll(0); err != nil {
				t.Fatalf("RestoreAll(0): %v", err)
			}
			st.on.Store(false)
			if alone := st.alone.Load(); alone > 0 {
				t.Fatalf("%d manifest GETs waited 10 s for another in flight: the lookups ran one after another", alone)
			}
			for i, r := range n.regions {
				if err := pattern.Check(r, i, 2); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestNewNodeProbeBesideManifests: RestoreAll on a new node reads the manifests of the
// versions it restores beside its probe for a newer life, not after it (each waits for
// a round trip): the store answers the probe only once a manifest GET has begun (or
// after 10 s, which fails). The request count is that of TestNewNodeRestoreRequests.
func TestNewNodeProbeBesideManifests(t *testing.T) {
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &probeAfterManifest{Store: dir, manifestRead: make(chan struct{})}
	cnt := mem.NewCounter(st)
	opts := engine.Options{Remote: &engine.Remote{Store: cnt}}
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "old.ckp"), opts, 4096, 4096)
	w.saveAll(t, 1)
	w.saveAll(t, 2)
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, 4096, 4096)
	defer n.f.Close()
	st.armed.Store(true)
	cnt.SetLabel("restore")
	n.check(t, 0, 2)
	cnt.SetLabel("")
	if st.gaveUp.Load() {
		t.Fatal("RestoreAll read the manifests only after its probe for a newer life")
	}
	if want := map[string]int{"get": 1 + 2 + 2}; !maps.Equal(cnt.Counts()["restore"].Requests, want) {
		t.Errorf("RestoreAll(0) of 2 checkpoints on a new node made requests %v, want %v", cnt.Counts()["restore"].Requests, want)
	}
}

// TestNewNodeAheadFails: a manifest read ahead that fails is read again by the lookup
// that wants it (whose error, if it fails again, is the restore's). The store answers
// the first manifest GET of the restore as if the object did not exist.
func TestNewNodeAheadFails(t *testing.T) {
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &firstManifestMissing{Store: dir}
	opts := engine.Options{Remote: &engine.Remote{Store: st}}
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "old.ckp"), opts, 4096)
	for v := 1; v <= 3; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, 4096)
	defer n.f.Close()
	st.armed.Store(true)
	n.check(t, 0, 3)
	if st.missed.Load() != 1 {
		t.Fatalf("%d manifest GETs answered as missing, want 1", st.missed.Load())
	}
}

// firstManifestMissing is a store that, once armed, answers its first GET of a
// manifest with ErrNotExist.
type firstManifestMissing struct {
	store.Store
	armed  atomic.Bool
	missed atomic.Int32
}

func (s *firstManifestMissing) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if s.armed.Load() && strings.HasPrefix(key, "m/") && s.missed.CompareAndSwap(0, 1) {
		return nil, fmt.Errorf("%w: %s", store.ErrNotExist, key)
	}
	return s.Store.Get(ctx, key, off, n)
}

// probeAfterManifest is a store that, once armed, answers a GET of a life record only
// after a GET of a manifest has begun (or after 10 s, which it reports).
type probeAfterManifest struct {
	store.Store
	armed, gaveUp atomic.Bool
	once          sync.Once
	manifestRead  chan struct{}
}

func (s *probeAfterManifest) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if s.armed.Load() {
		switch {
		case strings.HasPrefix(key, "m/"):
			s.once.Do(func() { close(s.manifestRead) })
		case strings.HasPrefix(key, "job/life/"):
			select {
			case <-s.manifestRead:
			case <-time.After(10 * time.Second):
				s.gaveUp.Store(true)
			}
		}
	}
	return s.Store.Get(ctx, key, off, n)
}

// pairedGets holds each GET of a manifest, while on, until another one has arrived.
type pairedGets struct {
	store.Store
	on      atomic.Bool
	arrived chan struct{}
	alone   atomic.Int32
}

func (p *pairedGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if p.on.Load() && strings.HasPrefix(key, "m/") {
		select {
		case p.arrived <- struct{}{}:
		default:
		}
		deadline := time.After(10 * time.Second)
		for len(p.arrived) < 2 {
			select {
			case <-deadline:
				p.alone.Add(1)
				return p.Store.Get(ctx, key, off, n)
			case <-time.After(time.Millisecond):
			}
		}
	}
	return p.Store.Get(ctx, key, off, n)
}

// TestOpenReadsAtOnce: a new node's Open reads the rank's versions and the job's newest
// life at once, not one after the other (each waits for a round trip). The store holds
// the listing back until the life is read: read in turn, Open would wait for it
// forever (here, until the test gives up).
func TestOpenReadsAtOnce(t *testing.T) {
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &listAfterLife{Store: dir, lifeRead: make(chan struct{})}
	opts := engine.Options{Remote: &engine.Remote{Store: st}}
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "old.ckp"), opts, 4096)
	w.saveAll(t, 1)
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	st.armed.Store(true)
	n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, 4096)
	defer n.f.Close()
	if st.gaveUp.Load() {
		t.Fatal("Open listed the rank's versions only after reading the job's newest life")
	}
	n.check(t, 0, 1)
}

// listAfterLife is a store that, once armed, answers a listing of manifests only after
// a life record or the life hint was read (or after 10 s, which it reports).
type listAfterLife struct {
	store.Store
	armed, gaveUp atomic.Bool
	once          sync.Once
	lifeRead      chan struct{}
}

func (s *listAfterLife) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if s.armed.Load() && strings.HasPrefix(key, "job/life/") {
		s.once.Do(func() { close(s.lifeRead) })
	}
	return s.Store.Get(ctx, key, off, n)
}

func (s *listAfterLife) List(ctx context.Context, prefix string) ([]store.Object, error) {
	if s.armed.Load() && strings.HasPrefix(prefix, "m/") {
		select {
		case <-s.lifeRead:
		case <-time.After(10 * time.Second):
			s.gaveUp.Store(true)
		}
	}
	return s.Store.List(ctx, prefix)
}
