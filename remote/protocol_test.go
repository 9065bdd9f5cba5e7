package remote_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
)

// Promises of REMOTE.md's "The job protocol" and "Restarting", each on its own.

// closeRanks closes every rank's File (its uploads finish first).
func closeRanks(t *testing.T, rs []*rankFile) {
	t.Helper()
	for _, r := range rs {
		if err := r.w.f.Close(); err != nil {
			t.Fatalf("rank %d: Close: %v", r.rank, err)
		}
	}
}

// newest returns the number of a rank's newest local version of its first checkpoint.
func (rf *rankFile) newest(t *testing.T) int {
	t.Helper()
	vs := rf.w.cks[0].Versions()
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1].Version
}

// TestNumberingAfterRestartOnAnOldNode: a rank restarted on a node whose file holds
// the job's version as its newest numbers its next save after the job's version, even
// when another node of that rank committed newer versions of a life the job abandoned.
func TestNumberingAfterRestartOnAnOldNode(t *testing.T) {
	st := dirBackend().new(t)
	sts := []store.Store{st, st}
	old := []string{t.TempDir(), t.TempDir()}
	rs, _ := startRanks(t, sts, old, 0)
	for _, r := range rs {
		r.save(t, 1, 4, 1)
	}
	closeRanks(t, rs)
	// Life 2: rank 0 on a new node reaches 6, rank 1 saves nothing: the job stays at 4.
	rs, got := startRanks(t, sts, []string{t.TempDir(), old[1]}, 0)
	if got[0] != 4 || got[1] != 4 {
		t.Fatalf("life 2 restored %v, want 4 for both", got)
	}
	rs[0].save(t, 5, 6, 2)
	closeRanks(t, rs)
	// Life 3, every rank on its old node: the files hold 4, the store holds rank 0's 6.
	rs, got = startRanks(t, sts, old, 0)
	if got[0] != 4 || got[1] != 4 {
		t.Fatalf("life 3 restored %v, want 4 for both", got)
	}
	for _, r := range rs {
		r.holds(t, 4, 1)
		r.save(t, 5, 5, 3)
		if n := r.newest(t); n != 5 {
			t.Fatalf("rank %d: the save after restoring 4 is version %d", r.rank, n)
		}
		r.flush(t)
	}
	if jv, err := rs[0].w.f.JobVersion(t.Context()); err != nil || jv != 5 {
		t.Fatalf("JobVersion = %d, %v; want 5", jv, err)
	}
	closeRanks(t, rs)
	rs, got = startRanks(t, sts, []string{t.TempDir(), t.TempDir()}, 0)
	for _, r := range rs {
		if got[r.rank] != 5 {
			t.Fatalf("restored %v, want 5", got)
		}
		r.holds(t, 5, 3)
	}
	closeRanks(t, rs)
}

// TestSaveBeforeRestoreJob: in a job of several ranks that has a restart point, a
// process that saves without RestoreJob gets ErrRestart (from its next Save, SaveAll,
// Flush or Close): nothing it uploads counts, and the job's version is unchanged. After
// RestoreJob it saves and commits as usual.
func TestSaveBeforeRestoreJob(t *testing.T) {
	st := dirBackend().new(t)
	sts := []store.Store{st, st}
	rs, _ := startRanks(t, sts, []string{t.TempDir(), t.TempDir()}, 0)
	for _, r := range rs {
		r.save(t, 1, 2, 1)
	}
	closeRanks(t, rs)
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "r.ckp"), engine.Options{KeepVersions: 2,
		Remote: &engine.Remote{Store: st, Rank: 0, Ranks: 2}}, 4096, 70000)
	defer w.f.Close()
	w.saveAll(t, 9)
	if err := w.f.Flush(t.Context()); !errors.Is(err, engine.ErrRestart) || !errors.Is(err, engine.ErrRemote) {
		t.Fatalf("Flush after a save without RestoreJob: %v, want ErrRestart", err)
	}
	if jv, err := w.f.JobVersion(t.Context()); err != nil || jv != 2 {
		t.Fatalf("JobVersion = %d, %v; want 2", jv, err)
	}
	if v, err := w.f.RestoreJob(t.Context()); err != nil || v != 2 {
		t.Fatalf("RestoreJob = %d, %v; want 2", v, err)
	}
	(&rankFile{w, 0}).holds(t, 2, 1)
	w.saveAll(t, 3)
	if err := w.f.Flush(t.Context()); err != nil {
		t.Fatalf("Flush after RestoreJob: %v", err)
	}
	if vs := committed(t, st, 0); len(vs["r0"]) == 0 || vs["r0"][len(vs["r0"])-1] != 3 {
		t.Fatalf("committed %v: version 3 of the new life should be", vs)
	}
}
