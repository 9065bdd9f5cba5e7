package remote_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
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
