package remote_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/pattern"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/mem"
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

// damage overwrites bytes of the file at path at off.
func damage(path string, off int64) error {
	d, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	_, err = d.WriteAt([]byte("garbage"), off)
	return err
}

// piecewiseDamage is a store that reads the body of the first data object in pieces of
// 64 KiB, as S3's streaming body does, and after the first piece overwrites bytes of
// the local data file that the next pieces will send.
type piecewiseDamage struct {
	store.Store
	path string
	off  chan int64 // where the version's payload starts in the data file
	done bool
}

func (s *piecewiseDamage) Create(ctx context.Context, key string, body io.Reader, size int64) error {
	if !strings.HasPrefix(key, "d/") || s.done {
		return s.Store.Create(ctx, key, body, size)
	}
	s.done = true
	var b bytes.Buffer
	piece := make([]byte, 64<<10)
	for first := true; ; first = false {
		n, err := io.ReadFull(body, piece)
		b.Write(piece[:n])
		if err != nil {
			break
		}
		if first {
			if err := damage(s.path, <-s.off+200<<10); err != nil {
				return err
			}
		}
	}
	return s.Store.Create(ctx, key, &b, int64(b.Len()))
}

// TestUploadSendsTheBytesItChecked: a body read in pieces sends the bytes of the
// segment it checked, not bytes read again from the data file, which may have changed
// since (REMOTE.md: an object whose bytes do not match the version never exists). The
// data file is damaged after the first piece of a segment is read; the object holds
// the version as saved.
func TestUploadSendsTheBytesItChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.ckp")
	st := &piecewiseDamage{Store: mem.New("pieces"), path: path, off: make(chan int64, 1)}
	w := openRemoteWriter(t, path, engine.Options{Remote: &engine.Remote{Store: st}}, 2<<20)
	defer w.f.Close()
	w.saveAll(t, 1)
	st.off <- w.cks[0].Versions()[0].Offset
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, _, err := engine.ReadStoreVersion(t.Context(), st, 0, "r0", 1)
	if err != nil {
		t.Fatalf("the store's version 1: %v", err)
	}
	if err := pattern.Check(b, 0, 1); err != nil {
		t.Fatalf("the store's version 1: %v", err)
	}
}

// retryAfterDamage is a store whose first create of a data object reads the whole body,
// then overwrites bytes of the local data file and fails as a dropped connection does;
// the tier's retry sends the object again.
type retryAfterDamage struct {
	store.Store
	path  string
	off   chan int64
	tries int
}

func (s *retryAfterDamage) Create(ctx context.Context, key string, body io.Reader, size int64) error {
	if !strings.HasPrefix(key, "d/") {
		return s.Store.Create(ctx, key, body, size)
	}
	if s.tries++; s.tries > 1 {
		return s.Store.Create(ctx, key, body, size)
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	if err := damage(s.path, <-s.off+200<<10); err != nil {
		return err
	}
	return errors.New("connection reset by peer")
}

// TestUploadRetryChecksAgain: a retry of a data object checks its bytes again, rather
// than trusting the checks of the attempt before: the local copy, damaged between the
// two, is not uploaded (the version fails as corrupt and the store holds no copy of it).
func TestUploadRetryChecksAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.ckp")
	st := &retryAfterDamage{Store: mem.New("retry"), path: path, off: make(chan int64, 1)}
	w := openRemoteWriter(t, path, engine.Options{Remote: &engine.Remote{Store: st}}, 2<<20)
	defer w.f.Close()
	w.saveAll(t, 1)
	st.off <- w.cks[0].Versions()[0].Offset
	err := w.f.Flush(t.Context())
	if !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("Flush: %v, want ErrCorrupt (the local copy was damaged before the retry)", err)
	}
	if st.tries != 2 {
		t.Fatalf("%d creates of the data object, want 2", st.tries)
	}
	if _, _, err := engine.ReadStoreVersion(t.Context(), st, 0, "r0", 1); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("the store's version 1: %v, want ErrNotFound (nothing of r0 committed)", err)
	}
}
