package remote_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/pattern"
	"github.com/ckp-go/ckp/internal/s3test"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/s3"
)

// Failures of the store, and what the remote tier promises about them.

// checkCommitted checks that rank committed exactly the versions want of every
// checkpoint named r0, r1, ... (n of them), each holding its pattern.
func checkCommitted(t *testing.T, st store.Store, rank, n int, want string) {
	t.Helper()
	got := committed(t, st, rank)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("r%d", i)
		if fmt.Sprint(got[name]) != want {
			t.Fatalf("%s: committed %v, want %s", name, got[name], want)
		}
		for _, v := range got[name] {
			b, _, err := engine.ReadStoreVersion(t.Context(), st, rank, name, v)
			if err != nil {
				t.Fatal(err)
			}
			if err := pattern.Check(b, i, v); err != nil {
				t.Fatalf("committed %s@%d: %v", name, v, err)
			}
		}
	}
}

func seq(from, to int) string {
	var s []int
	for v := from; v <= to; v++ {
		s = append(s, v)
	}
	return fmt.Sprint(s)
}

// TestRemoteServerRestart stops the S3 server in the middle of a run and starts it
// again: no save fails, the uploads resume, and every version ends up committed,
// byte-exact, although the local file keeps only the newest one (the slots of the
// versions waiting for upload are held until they are uploaded).
func TestRemoteServerRestart(t *testing.T) {
	srv := s3test.Start(t)
	st := s3Store(t, srv, srv.NewBucket(t), "run")
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"),
		engine.Options{KeepVersions: 1, Remote: &engine.Remote{Store: st, Keep: 100}}, 1<<20+5, 4096)
	defer w.f.Close()
	for v := 1; v <= 5; v++ {
		w.saveAll(t, v)
	}
	srv.Stop()
	for v := 6; v <= 15; v++ {
		w.saveAll(t, v)
		time.Sleep(20 * time.Millisecond)
	}
	srv.Restart()
	for v := 16; v <= 20; v++ {
		w.saveAll(t, v)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := w.f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, st, 0, 2, seq(1, 20))
	w.check(t, 0, 20)
}

// TestRemoteBackPressure: with the server down, saves return at once until MaxPending
// bytes wait for upload; the next save waits, and returns (successfully) once the
// server is back and uploads have caught up.
func TestRemoteBackPressure(t *testing.T) {
	srv := s3test.Start(t)
	st := s3Store(t, srv, srv.NewBucket(t), "run")
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"),
		engine.Options{KeepVersions: 1, Remote: &engine.Remote{Store: st, Keep: 100, MaxPending: 3 << 20}}, 1<<20)
	defer w.f.Close()
	srv.Stop()
	for v := 1; v <= 3; v++ {
		w.saveAll(t, v) // returns although nothing can be uploaded
	}
	fill(w.regions[0], 0, 4)
	done := make(chan error, 1)
	go func() { done <- w.f.SaveAll() }()
	select {
	case err := <-done:
		t.Fatalf("the save past MaxPending returned (%v) while the server was down", err)
	case <-time.After(500 * time.Millisecond):
	}
	srv.Restart()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the save that waited: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the save that waited did not return after the server came back")
	}
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, st, 0, 1, seq(1, 4))
}

// proxyIgnoringConditional is a reverse proxy in front of srv that makes it look like a
// server that accepts If-None-Match and ignores it (a 412 becomes a 200).
func proxyIgnoringConditional(t *testing.T, srv *s3test.Server) string {
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Header.Get("If-None-Match") != "" && resp.StatusCode == http.StatusPreconditionFailed {
			resp.Body.Close()
			resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
			resp.Body = http.NoBody
			resp.ContentLength = 0
			resp.Header = http.Header{"Etag": {`"d41d8cd98f00b204e9800998ecf8427e"`}}
		}
		return nil
	}
	ts := httptest.NewServer(rp)
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// TestRemoteStoreErrors: wrong keys, a missing bucket and an unreachable endpoint
// make Open fail with ErrRemote wrapping the store's error; a server that ignores
// conditional creates makes the uploads fail with ErrRemote wrapping
// store.ErrUnsupported, returned by the next Flush or Save. The local file loses
// nothing in any case.
func TestRemoteStoreErrors(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	path := filepath.Join(t.TempDir(), "a.ckp")
	w := openRemoteWriter(t, path, engine.Options{}, 4096, 2<<20)
	for v := 1; v <= 3; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	localIntact := func(t *testing.T, newest int) {
		t.Helper()
		w := openRemoteWriter(t, path, engine.Options{}, 4096, 2<<20)
		defer w.f.Close()
		if got := versionsOf(t, w.cks[0]); fmt.Sprint(got) != seq(1, newest) {
			t.Fatalf("local versions %v, want %s", got, seq(1, newest))
		}
		for v := 1; v <= newest; v++ {
			w.check(t, v, v)
		}
	}
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	for _, tc := range []struct {
		name  string
		cfg   s3.Config
		cause error // nil: a transient error
	}{
		{"wrong keys", s3.Config{Endpoint: srv.Endpoint, Bucket: bucket, AccessKey: srv.AccessKey, SecretKey: "wrong", Insecure: true}, store.ErrDenied},
		{"missing bucket", s3.Config{Endpoint: srv.Endpoint, Bucket: "no-such-bucket", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true}, store.ErrNoBucket},
		{"unreachable", s3.Config{Endpoint: closed, Bucket: bucket, AccessKey: "a", SecretKey: "b", Insecure: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := s3.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = engine.Open(path, &engine.Options{Remote: &engine.Remote{Store: st, Timeout: time.Second}})
			if !errors.Is(err, engine.ErrRemote) {
				t.Fatalf("Open = %v, want ErrRemote", err)
			}
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Fatalf("Open = %v, want it to wrap %v", err, tc.cause)
			}
			if tc.cause == nil && store.IsPermanent(err) {
				t.Fatalf("Open = %v, want a transient cause", err)
			}
			t.Logf("Open: %v", err)
			localIntact(t, 3)
		})
	}
	t.Run("ignores conditional creates", func(t *testing.T) {
		st, err := s3.New(s3.Config{Endpoint: proxyIgnoringConditional(t, srv), Bucket: bucket, Prefix: "ign",
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		// Opening uploads versions 1..3, which the local file holds and the store not.
		w := openRemoteWriter(t, path, engine.Options{Remote: &engine.Remote{Store: st, Timeout: 5 * time.Second}}, 4096, 2<<20)
		err = w.f.Flush(t.Context())
		if !errors.Is(err, engine.ErrRemote) || !errors.Is(err, store.ErrUnsupported) || !strings.Contains(err.Error(), "more failure(s)") {
			t.Fatalf("Flush = %v, want ErrRemote wrapping store.ErrUnsupported, counting the other failures", err)
		}
		t.Logf("Flush: %v", err)
		if err := w.f.Flush(t.Context()); err != nil {
			t.Fatalf("a second Flush = %v: the failure is reported once", err)
		}
		// A failure not reported yet is returned by the next save, which is not made.
		deadline := time.Now().Add(30 * time.Second)
		for saved := 0; ; {
			v := len(versionsOf(t, w.cks[0])) + 1
			fill(w.regions[0], 0, v)
			fill(w.regions[1], 1, v)
			err := w.f.SaveAll()
			if err == nil {
				saved++
			} else if saved > 0 {
				if !errors.Is(err, engine.ErrRemote) || !errors.Is(err, store.ErrUnsupported) {
					t.Fatalf("SaveAll = %v, want ErrRemote wrapping store.ErrUnsupported", err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no save reported the failed upload")
			}
			time.Sleep(10 * time.Millisecond)
		}
		n := len(versionsOf(t, w.cks[0]))
		if got := versionsOf(t, w.cks[0]); got[len(got)-1] != n {
			t.Fatalf("versions %v", got)
		}
		if err := w.f.Close(); err != nil && !errors.Is(err, engine.ErrRemote) {
			t.Fatal(err)
		}
		localIntact(t, n)
	})
}

// TestRemoteCloseStoreDown: Close with the store down gives up after Remote.Timeout
// with ErrRemote; the local file has everything, and the next Open uploads what is
// missing.
func TestRemoteCloseStoreDown(t *testing.T) {
	srv := s3test.Start(t)
	st := s3Store(t, srv, srv.NewBucket(t), "run")
	path := filepath.Join(t.TempDir(), "a.ckp")
	opts := engine.Options{KeepVersions: 3, Remote: &engine.Remote{Store: st, Timeout: time.Second}}
	w := openRemoteWriter(t, path, opts, 64<<10)
	for v := 1; v <= 3; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	w.saveAll(t, 4)
	if err := w.f.Close(); !errors.Is(err, engine.ErrRemote) {
		t.Fatalf("Close with the store down = %v, want ErrRemote", err)
	}
	srv.Restart()
	w = openRemoteWriter(t, path, opts, 64<<10)
	w.check(t, 0, 4)
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, st, 0, 1, seq(2, 4))
}

// TestRemoteDamagedLocal: a restore whose local copy is damaged takes the store's.
func TestRemoteDamagedLocal(t *testing.T) {
	st := dirBackend().new(t)
	path := filepath.Join(t.TempDir(), "a.ckp")
	w := openRemoteWriter(t, path, engine.Options{Remote: &engine.Remote{Store: st}}, 3<<20, 4096)
	defer w.f.Close()
	for v := 1; v <= 3; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, c := range w.cks {
		if err := damage(path, c.Versions()[2].Offset+int64(i)*100); err != nil {
			t.Fatal(err)
		}
	}
	r, err := engine.Open(path, &engine.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadVersion("r0", 3); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("the local copy reads back as %v, want ErrCorrupt", err)
	}
	r.Close()
	w.check(t, 0, 3)
	clear(w.regions[1])
	if err := w.cks[1].Restore(3); err != nil {
		t.Fatal(err)
	}
	if err := pattern.Check(w.regions[1], 1, 3); err != nil {
		t.Fatal(err)
	}
	w.check(t, 2, 2)
}

// TestRemoteEvery: only every n-th version is uploaded.
func TestRemoteEvery(t *testing.T) {
	st := dirBackend().new(t)
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"), engine.Options{Remote: &engine.Remote{Store: st, Every: 3}}, 4096, 100)
	for v := 1; v <= 10; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, st, 0, 2, "[3 6 9]")
}

// TestRemoteRetentionKeepsJobVersion: rank 0 runs ahead of rank 1 with Keep 1; the
// store keeps rank 0's copy of the version rank 1 reached (the job version) and every
// version after it, and deletes the rest, data objects included.
func TestRemoteRetentionKeepsJobVersion(t *testing.T) {
	st := dirBackend().new(t)
	dir := t.TempDir()
	r1 := openRemoteWriter(t, filepath.Join(dir, "r1.ckp"), engine.Options{Remote: &engine.Remote{Store: st, Keep: 1, Rank: 1, Ranks: 2}}, 4096, 100)
	defer r1.f.Close()
	r0 := openRemoteWriter(t, filepath.Join(dir, "r0.ckp"), engine.Options{Remote: &engine.Remote{Store: st, Keep: 1, Rank: 0, Ranks: 2}}, 4096, 100)
	defer r0.f.Close()
	for _, w := range []*remoteWriter{r0, r1} { // both start the job
		if _, err := w.f.RestoreJob(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for v := 1; v <= 2; v++ {
		r1.saveAll(t, v)
	}
	if err := r1.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 6; v++ {
		r0.saveAll(t, v)
	}
	if err := r0.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, st, 0, 2, seq(2, 6))
	checkCommitted(t, st, 1, 2, "[1 2]") // there was no job version when it flushed
	if jv, err := r0.f.JobVersion(t.Context()); err != nil || jv != 2 {
		t.Fatalf("JobVersion = %d, %v; want 2", jv, err)
	}
	for v := 3; v <= 5; v++ {
		r1.saveAll(t, v)
	}
	if err := r1.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r0.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, st, 0, 2, "[5 6]")
	objs, err := st.List(t.Context(), "d/0/")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 4 {
		t.Fatalf("rank 0 keeps %d data objects, want 4 (2 versions of 2 checkpoints): %v", len(objs), objs)
	}
}

// TestRemoteRewind: in a job of several ranks, RestoreAll of an older version rewinds:
// newer versions go (locally and from this rank's store) and the next save takes the
// number after the one restored.
func TestRemoteRewind(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			st := b.new(t)
			dir := t.TempDir()
			opts := func(rank int) engine.Options {
				return engine.Options{KeepVersions: 4, Remote: &engine.Remote{Store: st, Keep: 10, Rank: rank, Ranks: 2}}
			}
			r1 := openRemoteWriter(t, filepath.Join(dir, "r1.ckp"), opts(1), 4096, 3<<20)
			r0 := openRemoteWriter(t, filepath.Join(dir, "r0.ckp"), opts(0), 4096, 3<<20)
			for _, w := range []*remoteWriter{r0, r1} { // both start the job
				if _, err := w.f.RestoreJob(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			for v := 1; v <= 3; v++ {
				r1.saveAll(t, v)
			}
			if err := r1.f.Close(); err != nil {
				t.Fatal(err)
			}
			for v := 1; v <= 5; v++ {
				r0.saveAll(t, v)
			}
			if err := r0.f.Close(); err != nil {
				t.Fatal(err)
			}
			// Rank 0 restarts on the same node, rank 1 on a new one.
			r0 = openRemoteWriter(t, filepath.Join(dir, "r0.ckp"), opts(0), 4096, 3<<20)
			r1 = openRemoteWriter(t, filepath.Join(t.TempDir(), "r1.ckp"), opts(1), 4096, 3<<20)
			for _, w := range []*remoteWriter{r0, r1} {
				jv, err := w.f.RestoreJob(t.Context())
				if err != nil || jv != 3 {
					t.Fatalf("RestoreJob = %d, %v; want 3", jv, err)
				}
				for i := range w.regions {
					if err := pattern.Check(w.regions[i], i, 3); err != nil {
						t.Fatal(err)
					}
				}
				if got := versionsOf(t, w.cks[1]); got[len(got)-1] != 3 {
					t.Fatalf("after the rewind: versions %v", got)
				}
				w.saveAll(t, 104) // the pattern of a new life
				if got := versionsOf(t, w.cks[1]); got[len(got)-1] != 4 {
					t.Fatalf("the save after the rewind is version %d, want 4", got[len(got)-1])
				}
				if err := w.f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			for rank := 0; rank < 2; rank++ {
				got := committed(t, st, rank)
				if fmt.Sprint(got["r1"]) != "[1 2 3 4]" {
					t.Fatalf("rank %d: committed %v, want [1 2 3 4]", rank, got["r1"])
				}
				b, _, err := engine.ReadStoreVersion(t.Context(), st, rank, "r1", 4)
				if err != nil {
					t.Fatal(err)
				}
				if err := pattern.Check(b, 1, 104); err != nil {
					t.Fatalf("rank %d version 4 is not the new life's: %v", rank, err)
				}
			}
		})
	}
}

// TestRemoteStartOver: RestoreJob without a job version drops this rank's versions,
// locally and in the store, and the next save is version 1.
func TestRemoteStartOver(t *testing.T) {
	st := dirBackend().new(t)
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "r0.ckp"), engine.Options{Remote: &engine.Remote{Store: st, Rank: 0, Ranks: 2}}, 4096)
	defer w.f.Close()
	for v := 1; v <= 3; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.f.JobVersion(t.Context()); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("JobVersion with a rank that committed nothing = %v, want ErrNotFound", err)
	}
	if v, err := w.f.RestoreJob(t.Context()); err != nil || v != 0 {
		t.Fatalf("RestoreJob = %d, %v; want 0 (start over)", v, err)
	}
	if got := versionsOf(t, w.cks[0]); len(got) != 0 {
		t.Fatalf("versions after starting over: %v", got)
	}
	w.saveAll(t, 1)
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, st, 0, 1, "[1]")
}

// TestRemoteOptions: bad Remote settings are ErrInvalid.
func TestRemoteOptions(t *testing.T) {
	st := dirBackend().new(t)
	for _, r := range []engine.Remote{
		{},
		{Store: st, Every: -1},
		{Store: st, MaxPending: -1},
		{Store: st, Keep: -1},
		{Store: st, Rank: 1},
		{Store: st, Rank: 2, Ranks: 2},
		{Store: st, Rank: -1, Ranks: 2},
		{Store: st, Timeout: -1},
	} {
		_, err := engine.Open(filepath.Join(t.TempDir(), "a.ckp"), &engine.Options{Remote: &r})
		if !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("%+v: Open = %v, want ErrInvalid", r, err)
		}
	}
	_, err := engine.Open(filepath.Join(t.TempDir(), "a.ckp"), &engine.Options{ReadOnly: true, Remote: &engine.Remote{Store: st}})
	if !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("ReadOnly with Remote: %v, want ErrInvalid", err)
	}
	f, err := engine.Open(filepath.Join(t.TempDir(), "a.ckp"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.JobVersion(t.Context()); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("JobVersion without a remote tier: %v, want ErrInvalid", err)
	}
	if err := f.Flush(t.Context()); err != nil {
		t.Errorf("Flush without a remote tier: %v", err)
	}
}

// TestRemoteDamagedNotUploaded: a version whose local bytes no longer match their
// hash is not uploaded (each block is checked before it is sent): the upload fails
// with ErrRemote wrapping ErrCorrupt, and the store never shows the version. The data
// object goes to S3 unsigned (store.WithVerifiedContent): the check is the tier's.
func TestRemoteDamagedNotUploaded(t *testing.T) {
	srv := s3test.Start(t)
	st := s3Store(t, srv, srv.NewBucket(t), "run")
	path := filepath.Join(t.TempDir(), "a.ckp")
	w := openRemoteWriter(t, path, engine.Options{Remote: &engine.Remote{Store: st}}, 3<<20, 4096)
	defer w.f.Close()
	w.saveAll(t, 1)
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	w.saveAll(t, 2)
	v := w.cks[0].Versions()[1]
	d, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte("damage"), v.Offset+2<<20+17); err != nil {
		t.Fatal(err)
	}
	d.Close()
	srv.Restart()
	err = w.f.Flush(t.Context())
	if !errors.Is(err, engine.ErrRemote) || !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("Flush = %v, want ErrRemote wrapping ErrCorrupt", err)
	}
	t.Logf("Flush: %v", err)
	got := committed(t, st, 0)
	if fmt.Sprint(got["r0"]) != "[1]" || fmt.Sprint(got["r1"]) != "[1 2]" {
		t.Fatalf("committed %v, want r0 [1], r1 [1 2]", got)
	}
	objs, err := st.List(t.Context(), fmt.Sprintf("d/0/%016x", v.Hash))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Fatalf("the damaged version's data object exists: %v", objs)
	}
}

// TestRemoteBackPressureTimeout: a save that waits for room under MaxPending longer
// than Remote.Timeout returns ErrRemote and is not made.
func TestRemoteBackPressureTimeout(t *testing.T) {
	srv := s3test.Start(t)
	st := s3Store(t, srv, srv.NewBucket(t), "run")
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"),
		engine.Options{Remote: &engine.Remote{Store: st, MaxPending: 1 << 20, Timeout: 300 * time.Millisecond}}, 1<<20)
	srv.Stop()
	w.saveAll(t, 1)
	fill(w.regions[0], 0, 2)
	if err := w.f.SaveAll(); !errors.Is(err, engine.ErrRemote) {
		t.Fatalf("SaveAll past MaxPending with the store down = %v, want ErrRemote", err)
	}
	if got := versionsOf(t, w.cks[0]); fmt.Sprint(got) != "[1]" {
		t.Fatalf("versions after the failed save: %v, want [1]", got)
	}
	srv.Restart()
	// The uploader retries with backoff: once it has caught up, saves go on. (Saving at
	// once would race the retry against the 300 ms Timeout.)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.f.Flush(ctx); err != nil {
		t.Fatalf("Flush after the store came back: %v", err)
	}
	w.saveAll(t, 2)
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, st, 0, 1, "[1 2]")
}
