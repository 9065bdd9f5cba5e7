package remote_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/pattern"
	"github.com/ckp-go/ckp/internal/s3test"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/s3"
)

// The remote tier's tests run against real stores: a directory (store.Dir) and a real
// S3 server (versitygw, started by internal/s3test; skipped with a message when it
// cannot be built, unless CKP_S3_REQUIRE=1).

// backend makes fresh, empty stores of one kind.
type backend struct {
	name string
	new  func(t *testing.T) store.Store
}

func dirBackend() backend {
	return backend{"dir", func(t *testing.T) store.Store {
		s, err := store.Dir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}}
}

func s3Backend() backend {
	return backend{"s3", func(t *testing.T) store.Store {
		srv := s3test.Start(t)
		return s3Store(t, srv, srv.Bucket(), "job")
	}}
}

func s3Store(t testing.TB, srv *s3test.Server, bucket, prefix string) store.Store {
	t.Helper()
	s, err := s3.New(s3.Config{Endpoint: srv.Endpoint, Bucket: bucket, Prefix: prefix,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func backends() []backend { return []backend{dirBackend(), s3Backend()} }

// fill fills p with bytes derived from (seed, v).
func fill(p []byte, seed, v int) {
	pattern.Fill(p, seed, v)
}

// remoteWriter opens path with a remote tier on st and registers regions of the given
// sizes named r0, r1, ...
type remoteWriter struct {
	f       *engine.File
	regions [][]byte
	cks     []*engine.Checkpoint
}

func openRemoteWriter(t *testing.T, path string, opts engine.Options, sizes ...int) *remoteWriter {
	t.Helper()
	f, err := engine.Open(path, &opts)
	if err != nil {
		t.Fatalf("Open %s: %v", path, err)
	}
	w := &remoteWriter{f: f}
	for i, n := range sizes {
		w.regions = append(w.regions, make([]byte, n))
		c, err := f.Register(fmt.Sprintf("r%d", i), w.regions[i])
		if err != nil {
			t.Fatal(err)
		}
		w.cks = append(w.cks, c)
	}
	return w
}

// saveAll fills every region with version v's pattern and saves them.
func (w *remoteWriter) saveAll(t *testing.T, v int) {
	t.Helper()
	for i := range w.regions {
		fill(w.regions[i], i, v)
	}
	if err := w.f.SaveAll(); err != nil {
		t.Fatalf("SaveAll %d: %v", v, err)
	}
}

// check restores version v (as RestoreAll's argument) and checks every region holds
// pattern want.
func (w *remoteWriter) check(t *testing.T, v, want int) {
	t.Helper()
	for i := range w.regions {
		clear(w.regions[i])
	}
	if err := w.f.RestoreAll(v); err != nil {
		t.Fatalf("RestoreAll(%d): %v", v, err)
	}
	for i := range w.regions {
		if err := pattern.Check(w.regions[i], i, want); err != nil {
			t.Fatalf("RestoreAll(%d): %v", v, err)
		}
	}
}

func versionsOf(t *testing.T, c *engine.Checkpoint) []int {
	t.Helper()
	var out []int
	for _, v := range c.Versions() {
		out = append(out, v.Version)
	}
	return out
}

// committed returns the versions rank committed per checkpoint name.
func committed(t *testing.T, st store.Store, rank int) map[string][]int {
	t.Helper()
	vs, err := engine.StoreVersions(t.Context(), st, rank)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int{}
	for _, v := range vs {
		out[v.Name] = append(out[v.Name], v.Version)
	}
	return out
}

// TestRemoteNewNode: a program saves through a remote tier and flushes; a program on a
// "new node" (a fresh directory) opens with the same remote and restores the newest
// versions and older committed ones from the store, byte-exact, with the same version
// numbers; its saves continue the numbering.
func TestRemoteNewNode(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			st := b.new(t)
			sizes := []int{4 << 10, 3<<20 + 123, 100}
			a := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"),
				engine.Options{KeepVersions: 2, Remote: &engine.Remote{Store: st, Keep: 3}}, sizes...)
			for v := 1; v <= 6; v++ {
				a.saveAll(t, v)
			}
			if err := a.f.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			for name, vs := range committed(t, st, 0) {
				if fmt.Sprint(vs) != "[4 5 6]" {
					t.Errorf("%s: committed %v, want [4 5 6] (Keep 3)", name, vs)
				}
			}
			if err := a.f.Close(); err != nil {
				t.Fatal(err)
			}

			b := openRemoteWriter(t, filepath.Join(t.TempDir(), "b.ckp"),
				engine.Options{KeepVersions: 2, Remote: &engine.Remote{Store: st, Keep: 3}}, sizes...)
			defer b.f.Close()
			b.check(t, 0, 6) // from the store: the new node keeps nothing
			b.check(t, 5, 5)
			b.check(t, 6, 6)
			b.saveAll(t, 7)
			if got := versionsOf(t, b.cks[0]); fmt.Sprint(got) != "[7]" {
				t.Fatalf("after a save on the new node: %v", got)
			}
			if err := b.f.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			for name, vs := range committed(t, st, 0) {
				if fmt.Sprint(vs) != "[5 6 7]" {
					t.Errorf("%s: committed %v, want [5 6 7]", name, vs)
				}
			}
		})
	}
}

// A version whose bytes equal a committed one's sends no data object again, and its
// manifest is still whole: it names the object and carries the block table, so the
// version reads back from the store.
func TestRemoteIdenticalBytesCommitWhole(t *testing.T) {
	st := dirBackend().new(t)
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"), engine.Options{Remote: &engine.Remote{Store: st}}, 3<<20)
	w.saveAll(t, 1)
	if err := w.f.Flush(context.Background()); err != nil { // version 1 is committed
		t.Fatal(err)
	}
	if err := w.f.SaveAll(); err != nil { // the same bytes again: version 2
		t.Fatal(err)
	}
	if err := w.f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.f.Close()
	for _, v := range []int{1, 2} {
		b, _, err := engine.ReadStoreVersion(context.Background(), st, 0, "r0", v)
		if err != nil {
			t.Fatalf("version %d from the store: %v", v, err)
		}
		if err := pattern.Check(b, 0, 1); err != nil {
			t.Fatalf("version %d from the store: %v", v, err)
		}
	}
	rep, err := engine.VerifyStore(context.Background(), st, 0, nil)
	if err != nil || !rep.OK() || rep.Versions != 2 {
		t.Fatalf("VerifyStore: %+v, %v", rep, err)
	}
}
