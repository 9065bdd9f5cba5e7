package remote_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/pattern"
	"github.com/ckp-go/ckp/store"
)

// The three ways a job restarted wrong before the job protocol (issue 18), each as a
// test of the promise it broke.

// failingDeletes is a store whose Deletes fail while fail is set (an outage of the
// deletions, or a process that dies before they run).
type failingDeletes struct {
	store.Store
	fail atomic.Bool
}

func (s *failingDeletes) Delete(ctx context.Context, key string) error {
	if s.fail.Load() {
		return fmt.Errorf("%w: deletes fail for now", store.ErrDenied)
	}
	return s.Store.Delete(ctx, key)
}

// rankFile is one process of one rank of a test job.
type rankFile struct {
	w    *remoteWriter
	rank int
}

// startRanks opens a process of every rank (ranks[r] opens dirs[r]) and has each
// RestoreJob, returning what each restored.
func startRanks(t *testing.T, st []store.Store, dirs []string, keep int) ([]*rankFile, []int) {
	t.Helper()
	out := make([]*rankFile, len(st))
	got := make([]int, len(st))
	for r := range st {
		w := openRemoteWriter(t, filepath.Join(dirs[r], "r.ckp"), engine.Options{KeepVersions: 2,
			Remote: &engine.Remote{Store: st[r], Rank: r, Ranks: len(st), Keep: keep}}, 4096, 70000)
		v, err := w.f.RestoreJob(t.Context())
		if err != nil {
			t.Fatalf("rank %d: RestoreJob: %v", r, err)
		}
		out[r], got[r] = &rankFile{w, r}, v
	}
	return out, got
}

// save saves the versions from..to of a rank with the patterns of life (the version
// numbers plus 100 per life: bytes of two lives never match).
func (rf *rankFile) save(t *testing.T, from, to, life int) {
	t.Helper()
	for v := from; v <= to; v++ {
		for i := range rf.w.regions {
			pattern.Fill(rf.w.regions[i], 10*rf.rank+i, v+100*life)
		}
		if err := rf.w.f.SaveAll(); err != nil {
			t.Fatalf("rank %d: SaveAll %d: %v", rf.rank, v, err)
		}
	}
}

// holds checks that the rank's regions hold version v of life.
func (rf *rankFile) holds(t *testing.T, v, life int) {
	t.Helper()
	for i := range rf.w.regions {
		if err := pattern.Check(rf.w.regions[i], 10*rf.rank+i, v+100*life); err != nil {
			t.Fatalf("rank %d: not version %d of life %d: %v", rf.rank, v, life, err)
		}
	}
}

func (rf *rankFile) flush(t *testing.T) {
	t.Helper()
	if err := rf.w.f.Flush(t.Context()); err != nil {
		t.Fatalf("rank %d: Flush: %v", rf.rank, err)
	}
}

// TestJobVersionNeedsEveryRegisteredCheckpoint (scenario 1): the classic loop saves
// checkpoints one by one (Save(a); Save(b)); killed after Save(a) of version 5 was
// uploaded, the job's version is 4, and RestoreJob, on the same node and on a new one,
// and Pull restore 4, with every checkpoint.
func TestJobVersionNeedsEveryRegisteredCheckpoint(t *testing.T) {
	st := dirBackend().new(t)
	dir := t.TempDir()
	opts := engine.Options{Remote: &engine.Remote{Store: st}}
	w := openRemoteWriter(t, filepath.Join(dir, "a.ckp"), opts, 4096, 70000)
	if _, err := w.f.RestoreJob(t.Context()); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 5; v++ {
		for i, c := range w.cks {
			if v == 5 && i == 1 {
				break // killed after Save(a) of version 5
			}
			pattern.Fill(w.regions[i], i, v)
			if err := c.Save(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.f.Close(); err != nil { // version 5 of a is uploaded
		t.Fatal(err)
	}
	if vs := committed(t, st, 0); fmt.Sprint(vs["r0"]) != "[1 2 3 4 5]" {
		t.Fatalf("committed %v: version 5 of r0 should be", vs)
	}
	for _, d := range []string{dir, t.TempDir()} { // the same node, a new one
		n := openRemoteWriter(t, filepath.Join(d, "a.ckp"), opts, 4096, 70000)
		if jv, err := n.f.JobVersion(t.Context()); err != nil || jv != 4 {
			t.Fatalf("JobVersion = %d, %v; want 4", jv, err)
		}
		v, err := n.f.RestoreJob(t.Context())
		if err != nil || v != 4 {
			t.Fatalf("RestoreJob = %d, %v; want 4", v, err)
		}
		for i := range n.regions {
			if err := pattern.Check(n.regions[i], i, 4); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "pulled.ckp")
	if v, err := engine.Pull(t.Context(), st, 0, path, 0, nil); err != nil || v != 4 {
		t.Fatalf("Pull = %d, %v; want 4", v, err)
	}
	f, err := engine.Open(path, &engine.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if names := f.Checkpoints(); fmt.Sprint(names) != "[r0 r1]" {
		t.Fatalf("Pull brought %v, want both checkpoints", names)
	}
}

// TestRestartNeverMixesLives (scenario 2): three ranks; ranks 0 and 1 reach step 12,
// rank 2 step 9; every rank restarts at 9; ranks 0 and 1 die before their old
// versions 10..12 are deleted (their deletions fail); rank 2 commits step 10 of the new
// life; the job dies. On restart every rank restores step 9, byte-exact, never a step
// 10 of either life.
func TestRestartNeverMixesLives(t *testing.T) { testRestartAfterAbandonedLife(t, 0) }

// TestRetentionKeepsTheRealRestartPoint (scenario 3): the same with Keep 1: rank 2's
// retention keeps its step 9 (the job's restart point) although it committed a step 10
// since, and once ranks 0 and 1's old steps are deleted the job still restarts at 9,
// not from the start.
func TestRetentionKeepsTheRealRestartPoint(t *testing.T) { testRestartAfterAbandonedLife(t, 1) }

func testRestartAfterAbandonedLife(t *testing.T, keep int) {
	base := dirBackend().new(t)
	st := make([]store.Store, 3)
	fd := make([]*failingDeletes, 3)
	dirs := make([]string, 3)
	for r := range st {
		fd[r] = &failingDeletes{Store: base}
		st[r], dirs[r] = fd[r], t.TempDir()
	}
	ranks, _ := startRanks(t, st, dirs, keep)
	ranks[0].save(t, 1, 12, 1)
	ranks[1].save(t, 1, 12, 1)
	ranks[2].save(t, 1, 9, 1)
	for _, rf := range ranks {
		rf.flush(t)
		if err := rf.w.f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if jv, err := engine.InspectJob(t.Context(), base, 3); err != nil || jv.Version != 9 {
		t.Fatalf("job version %+v, %v; want 9", jv, err)
	}
	// Every rank restarts at 9; ranks 0 and 1 die before their deletions run.
	fd[0].fail.Store(true)
	fd[1].fail.Store(true)
	ranks, got := startRanks(t, st, dirs, keep)
	for r, v := range got {
		if v != 9 {
			t.Fatalf("rank %d restarted at %d, want 9", r, v)
		}
		ranks[r].holds(t, 9, 1)
	}
	for _, rf := range ranks[:2] {
		if err := rf.w.f.Close(); err != nil && !errors.Is(err, engine.ErrRemote) {
			t.Fatal(err)
		}
	}
	ranks[2].save(t, 10, 10, 2) // step 10 of the new life
	ranks[2].flush(t)           // its retention runs (Keep 1)
	if err := ranks[2].w.f.Close(); err != nil {
		t.Fatal(err)
	}
	// The job dies; later the deletions of ranks 0 and 1 go through.
	fd[0].fail.Store(false)
	fd[1].fail.Store(false)
	for round := 0; round < 2; round++ {
		ranks, got = startRanks(t, st, dirs, keep)
		for r, v := range got {
			if v != 9 {
				t.Fatalf("round %d: rank %d restarted at %d, want 9 (steps 10 of two lives must never mix)", round, r, v)
			}
			ranks[r].holds(t, 9, 1)
		}
		for _, rf := range ranks {
			rf.flush(t) // retention, deletions now working
			if err := rf.w.f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
