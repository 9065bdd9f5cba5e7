//go:build linux

package remote_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/remote"
	"github.com/ckp-go/ckp/store"
)

// niceCreates records the nice value of the thread that creates each data object.
type niceCreates struct {
	store.Store
	t    *testing.T
	mu   sync.Mutex
	nice []int
}

func (s *niceCreates) Create(ctx context.Context, key string, body io.Reader, size int64) error {
	if strings.HasPrefix(key, "d/") {
		n := remote.ThreadNice(s.t)
		s.mu.Lock()
		s.nice = append(s.nice, n)
		s.mu.Unlock()
	}
	return s.Store.Create(ctx, key, body, size)
}

// TestUploadsRunNiced: every version's bytes are sent from a thread at nice 19
// (REMOTE.md, "The commit of a version": the kernel runs a save first). TestBackground
// checks that the thread gets its priority back.
func TestUploadsRunNiced(t *testing.T) {
	dir, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &niceCreates{Store: dir, t: t}
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "a.ckp"), engine.Options{Remote: &engine.Remote{Store: st}}, 64<<10)
	defer w.f.Close()
	const n = 6
	for v := 1; v <= n; v++ {
		w.saveAll(t, v)
	}
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.nice) != n {
		t.Fatalf("%d data objects created, want %d", len(st.nice), n)
	}
	for i, v := range st.nice {
		if v != 19 {
			t.Fatalf("data object %d sent from a thread at nice %d, want 19", i, v)
		}
	}
}
