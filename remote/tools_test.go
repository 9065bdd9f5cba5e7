package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// shortReads is a store whose data objects read back short: every Get of one returns
// half the bytes asked for and then EOF, as a connection cut mid-transfer does.
type shortReads struct{ store.Store }

func (s shortReads) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key, off, n)
	if err != nil || len(key) < 2 || key[:2] != dataDir {
		return rc, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	return io.NopCloser(&halfReader{b[:len(b)/2]}), nil
}

type halfReader struct{ b []byte }

func (r *halfReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestToolsGiveUpOnAStoreThatKeepsFailing: without a deadline in their context, the
// store tools stop retrying a store that keeps answering short reads (after the
// budget of failures in a row) and say so with ErrRemote.
func TestToolsGiveUpOnAStoreThatKeepsFailing(t *testing.T) {
	old := toolBudget
	toolBudget = 300 * time.Millisecond
	defer func() { toolBudget = old }()
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	payload := []byte("hello, store")
	if err := dir.Create(ctx, dataKey(0, 1, 1, 1, int64(len(payload))), bytes.NewReader(payload), int64(len(payload))); err != nil {
		t.Fatal(err)
	}
	m := &manifest{Name: "x", Version: 1, Length: int64(len(payload)), Hash: crc.Payload(payload), Ranks: 1, Life: 1,
		Extents: []extentRef{{Off: 0, Len: int64(len(payload)), Hash: crc.Payload(payload), Key: dataKey(0, 1, 1, 1, int64(len(payload)))}}}
	b := m.encode()
	if err := dir.Create(ctx, manifestKey(0, 1, "x", 1), bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	st := shortReads{dir}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"ReadStoreVersion", func() error { _, _, err := ReadStoreVersion(ctx, st, 0, "x", 1); return err }},
		{"VerifyStore", func() error {
			rep, err := VerifyStore(ctx, st, 0, nil)
			switch {
			case err != nil:
				return err
			case rep.OK():
				return errors.New("VerifyStore found nothing wrong")
			}
			return base.ErrRemote // the version is reported damaged: it could not be read
		}},
	} {
		done := make(chan error, 1)
		go func() { done <- tc.call() }()
		select {
		case err := <-done:
			if !errors.Is(err, base.ErrRemote) {
				t.Fatalf("%s: %v, want ErrRemote", tc.name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still retrying a store that keeps answering short reads", tc.name)
		}
	}
}
