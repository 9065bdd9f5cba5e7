package engine

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/ckp-go/ckp/store"
)

// TestJobLife: JobLife gives the job's newest life and its restart point, as every
// rank sees them: 0 and 0 before any rank joined, the life a RestoreJob began, the
// version complete on every rank in it, and, after a rank's restart sealed a life, the
// next one (also to a rank still in the sealed life, which then gets ErrRestart).
func TestJobLife(t *testing.T) {
	ctx := t.Context()
	st, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	open := func(rank int) (*File, []byte) {
		t.Helper()
		f, err := Open(filepath.Join(t.TempDir(), "r.ckp"), &Options{Remote: &Remote{Store: st, Rank: rank, Ranks: 2}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		region := make([]byte, 4096)
		if _, err := f.Register("a", region); err != nil {
			t.Fatal(err)
		}
		return f, region
	}
	want := func(f *File, life uint64, version int) {
		t.Helper()
		l, v, err := f.JobLife(ctx)
		if err != nil || l != life || v != version {
			t.Fatalf("JobLife = %d, %d, %v; want life %d, version %d", l, v, err, life, version)
		}
	}
	saveAll := func(f *File, region []byte, step byte) {
		t.Helper()
		region[0] = step
		if err := f.SaveAll(); err != nil {
			t.Fatal(err)
		}
	}
	flush := func(fs ...*File) {
		t.Helper()
		for _, f := range fs {
			if err := f.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	f0, r0 := open(0)
	f1, r1 := open(1)
	want(f0, 0, 0) // no rank joined yet
	for _, f := range []*File{f0, f1} {
		if _, err := f.RestoreJob(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want(f0, 1, 0)
	if _, err := f0.JobVersion(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("JobVersion with nothing complete: %v, want ErrNotFound", err)
	}
	for step := byte(1); step <= 2; step++ {
		saveAll(f0, r0, step)
		saveAll(f1, r1, step)
	}
	flush(f0, f1)
	want(f0, 1, 2)
	want(f1, 1, 2)

	// Rank 1 restarts on another node: it seals life 1 and begins life 2 at version 2.
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}
	f1, r1 = open(1)
	if v, err := f1.RestoreJob(ctx); err != nil || v != 2 {
		t.Fatalf("rank 1's RestoreJob = %d, %v; want 2", v, err)
	}
	want(f1, 2, 2)
	want(f0, 2, 2) // rank 0, still in life 1, sees the newest life
	saveAll(f0, r0, 3)
	if err := f0.Flush(ctx); !errors.Is(err, ErrRestart) {
		t.Fatalf("rank 0's Flush after its life was sealed: %v, want ErrRestart", err)
	}
	if v, err := f0.RestoreJob(ctx); err != nil || v != 2 {
		t.Fatalf("rank 0's RestoreJob = %d, %v; want 2", v, err)
	}
	saveAll(f0, r0, 3)
	saveAll(f1, r1, 3)
	flush(f0, f1)
	want(f0, 2, 3)
	if v, err := f0.JobVersion(ctx); err != nil || v != 3 {
		t.Fatalf("JobVersion = %d, %v; want 3", v, err)
	}

	if err := f0.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f0.JobLife(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("JobLife of a closed file: %v, want ErrClosed", err)
	}
	local, err := Open(filepath.Join(t.TempDir(), "l.ckp"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if _, _, err := local.JobLife(ctx); !errors.Is(err, ErrInvalid) {
		t.Fatalf("JobLife without a remote tier: %v, want ErrInvalid", err)
	}
}
