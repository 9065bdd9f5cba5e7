package remote_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/pattern"
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

// TestRestoreJobNeedsTheCheckpointsSaved: RestoreJob with a checkpoint registered that
// was not saved at the restart point fails with ErrCorrupt and changes nothing (the
// regions, the local versions); registered as saved, it restores.
func TestRestoreJobNeedsTheCheckpointsSaved(t *testing.T) {
	st := dirBackend().new(t)
	sts := []store.Store{st, st}
	dirs := []string{t.TempDir(), t.TempDir()}
	rs, _ := startRanks(t, sts, dirs, 0)
	for _, r := range rs {
		r.save(t, 1, 3, 1)
	}
	closeRanks(t, rs)
	opts := engine.Options{KeepVersions: 2, Remote: &engine.Remote{Store: st, Rank: 0, Ranks: 2}}
	w := openRemoteWriter(t, filepath.Join(dirs[0], "r.ckp"), opts, 4096, 70000, 512) // r2 is new
	for i := range w.regions {
		fill(w.regions[i], i, 77)
	}
	if _, err := w.f.RestoreJob(t.Context()); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("RestoreJob with a checkpoint not saved at the restart point: %v, want ErrCorrupt", err)
	}
	for i := range w.regions {
		if err := pattern.Check(w.regions[i], i, 77); err != nil {
			t.Fatalf("the failed RestoreJob changed region %d: %v", i, err)
		}
	}
	if n := (&rankFile{w, 0}).newest(t); n != 3 {
		t.Fatalf("the failed RestoreJob left version %d as the newest, want 3", n)
	}
	if err := w.f.Close(); err != nil {
		t.Fatal(err)
	}
	rs, got := startRanks(t, sts, dirs, 0)
	if got[0] != 3 || got[1] != 3 {
		t.Fatalf("restored %v, want 3", got)
	}
	for _, r := range rs {
		r.holds(t, 3, 1)
	}
	closeRanks(t, rs)
}

// TestRestoreAllInAJob: in a job of several ranks, RestoreAll(0) and
// RestoreAll(JobVersion) restore the job's restart point as RestoreJob does; another
// version is ErrVersion and changes nothing.
func TestRestoreAllInAJob(t *testing.T) {
	for _, v := range []int{0, 3, 2} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			st := dirBackend().new(t)
			sts := []store.Store{st, st}
			dirs := []string{t.TempDir(), t.TempDir()}
			rs, _ := startRanks(t, sts, dirs, 0)
			rs[0].save(t, 1, 4, 1)
			rs[1].save(t, 1, 3, 1) // the job's version is 3
			closeRanks(t, rs)
			var open []*rankFile // every rank restores before any saves, as in a job
			for rank := range sts {
				w := openRemoteWriter(t, filepath.Join(dirs[rank], "r.ckp"), engine.Options{KeepVersions: 2,
					Remote: &engine.Remote{Store: st, Rank: rank, Ranks: 2}}, 4096, 70000)
				defer w.f.Close()
				for i := range w.regions {
					fill(w.regions[i], 50+i, 77)
				}
				err := w.f.RestoreAll(v)
				if v == 2 {
					if !errors.Is(err, engine.ErrVersion) {
						t.Fatalf("rank %d: RestoreAll(2) with the job at 3: %v, want ErrVersion", rank, err)
					}
					for i := range w.regions {
						if err := pattern.Check(w.regions[i], 50+i, 77); err != nil {
							t.Fatalf("rank %d: the failed RestoreAll changed region %d: %v", rank, i, err)
						}
					}
					continue
				}
				if err != nil {
					t.Fatalf("rank %d: RestoreAll(%d): %v", rank, v, err)
				}
				open = append(open, &rankFile{w, rank})
			}
			for _, rf := range open {
				rf.holds(t, 3, 1)
				rf.save(t, 4, 4, 2)
				if n := rf.newest(t); n != 4 {
					t.Fatalf("rank %d: the save after RestoreAll(%d) is version %d", rf.rank, v, n)
				}
			}
			closeRanks(t, open)
			js, err := engine.InspectJob(t.Context(), st, 2)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 3, false: 4}[v == 2]; js.Version != want {
				t.Fatalf("job version %d after RestoreAll(%d) and saves, want %d", js.Version, v, want)
			}
		})
	}
}

// openRank opens a process of rank (of ranks) on dir with launch id launch, without
// restoring.
func openRank(t *testing.T, st store.Store, dir string, rank, ranks int, launch string) *rankFile {
	t.Helper()
	w := openRemoteWriter(t, filepath.Join(dir, "r.ckp"), engine.Options{KeepVersions: 2,
		Remote: &engine.Remote{Store: st, Rank: rank, Ranks: ranks, Launch: launch}}, 4096, 70000)
	t.Cleanup(func() { w.f.Close() })
	return &rankFile{w, rank}
}

// restoreJob has the rank RestoreJob and returns the version.
func (rf *rankFile) restoreJob(t *testing.T) int {
	t.Helper()
	v, err := rf.w.f.RestoreJob(t.Context())
	if err != nil {
		t.Fatalf("rank %d: RestoreJob: %v", rf.rank, err)
	}
	return v
}

// TestRestartOfOneRankWhileOthersRun: a rank that restarts while the others run seals
// their life. A rank with nothing complete since it joined moves into the next life
// and its saves count there; a rank with a version complete since it joined gets
// ErrRestart, and after RestoreJob it is back in the job.
func TestRestartOfOneRankWhileOthersRun(t *testing.T) {
	t.Run("move on", func(t *testing.T) {
		st := dirBackend().new(t)
		a := openRank(t, st, t.TempDir(), 0, 2, "")
		b := openRank(t, st, t.TempDir(), 1, 2, "")
		a.restoreJob(t)
		b.restoreJob(t)
		b.w.f.Close() // rank 1 dies before any version completes, and restarts
		b = openRank(t, st, t.TempDir(), 1, 2, "")
		if v := b.restoreJob(t); v != 0 {
			t.Fatalf("rank 1 restored %d, want 0", v)
		}
		for _, r := range []*rankFile{a, b} {
			r.save(t, 1, 2, 1)
			r.flush(t)
		}
		if jv, err := a.w.f.JobVersion(t.Context()); err != nil || jv != 2 {
			t.Fatalf("JobVersion = %d, %v; want 2 (rank 0 moved on into the next life)", jv, err)
		}
	})
	t.Run("restart", func(t *testing.T) {
		st := dirBackend().new(t)
		a := openRank(t, st, t.TempDir(), 0, 2, "")
		b := openRank(t, st, t.TempDir(), 1, 2, "")
		a.restoreJob(t)
		b.restoreJob(t)
		for _, r := range []*rankFile{a, b} {
			r.save(t, 1, 2, 1)
			r.flush(t)
		}
		b.w.f.Close() // version 2 is complete; rank 1 dies and restarts
		b = openRank(t, st, t.TempDir(), 1, 2, "")
		if v := b.restoreJob(t); v != 2 {
			t.Fatalf("rank 1 restored %d, want 2", v)
		}
		a.save(t, 3, 3, 1)
		if err := a.w.f.Flush(t.Context()); !errors.Is(err, engine.ErrRestart) {
			t.Fatalf("rank 0's Flush after its life was sealed: %v, want ErrRestart", err)
		}
		if v := a.restoreJob(t); v != 2 {
			t.Fatalf("rank 0 restored %d, want 2", v)
		}
		a.holds(t, 2, 1)
		for _, r := range []*rankFile{a, b} {
			r.save(t, 3, 3, 2)
			r.flush(t)
		}
		if jv, err := b.w.f.JobVersion(t.Context()); err != nil || jv != 3 {
			t.Fatalf("JobVersion = %d, %v; want 3", jv, err)
		}
		rs, got := startRanks(t, []store.Store{st, st}, []string{t.TempDir(), t.TempDir()}, 0)
		defer closeRanks(t, rs)
		for _, r := range rs {
			if got[r.rank] != 3 {
				t.Fatalf("restored %v, want 3", got)
			}
			r.holds(t, 3, 2) // never the 3 rank 0 saved in the sealed life
		}
	})
}

// TestLaunchSealsTheOldLaunch: with launch ids, a process of an old launch that
// outlives the relaunch (a zombie) never has its saves counted: its life is sealed by
// the first rank of the new launch, and it gets ErrRestart.
func TestLaunchSealsTheOldLaunch(t *testing.T) {
	st := dirBackend().new(t)
	zombie := openRank(t, st, t.TempDir(), 0, 2, "job-1")
	other := openRank(t, st, t.TempDir(), 1, 2, "job-1")
	zombie.restoreJob(t)
	other.restoreJob(t)
	for _, r := range []*rankFile{zombie, other} {
		r.save(t, 1, 2, 1)
		r.flush(t)
	}
	other.w.f.Close()
	// Launch 2: rank 1 starts first, then rank 0 elsewhere; the zombie goes on saving.
	n1 := openRank(t, st, t.TempDir(), 1, 2, "job-2")
	if v := n1.restoreJob(t); v != 2 {
		t.Fatalf("launch 2 rank 1 restored %d, want 2", v)
	}
	zombie.save(t, 3, 4, 9)
	if err := zombie.w.f.Flush(t.Context()); !errors.Is(err, engine.ErrRestart) {
		t.Fatalf("the zombie's Flush: %v, want ErrRestart", err)
	}
	n0 := openRank(t, st, t.TempDir(), 0, 2, "job-2")
	if v := n0.restoreJob(t); v != 2 {
		t.Fatalf("launch 2 rank 0 restored %d, want 2", v)
	}
	n1.save(t, 3, 3, 2)
	n0.save(t, 3, 3, 2)
	n0.flush(t)
	n1.flush(t)
	rs, got := startRanks(t, []store.Store{st, st}, []string{t.TempDir(), t.TempDir()}, 0)
	defer closeRanks(t, rs)
	for _, r := range rs {
		if got[r.rank] != 3 {
			t.Fatalf("restored %v, want 3", got)
		}
		r.holds(t, 3, 2) // launch 2's step 3, never the zombie's
	}
}

// TestVersionsCompleteBeforeTheLifeStarted: a rank whose versions were complete before
// every rank had joined records them once the life starts, oldest first, with no
// save of its own after: by Flush, or by the uploader in the background.
func TestVersionsCompleteBeforeTheLifeStarted(t *testing.T) {
	for _, how := range []string{"flush", "background"} {
		t.Run(how, func(t *testing.T) {
			st := dirBackend().new(t)
			early := openRank(t, st, t.TempDir(), 0, 2, "")
			early.restoreJob(t)
			early.save(t, 1, 3, 1)
			early.flush(t) // committed; its life has not started
			late := openRank(t, st, t.TempDir(), 1, 2, "")
			late.restoreJob(t)
			late.save(t, 1, 3, 1)
			late.flush(t)
			if how == "flush" {
				early.flush(t)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				js, err := engine.InspectJob(t.Context(), st, 2)
				if err != nil {
					t.Fatal(err)
				}
				if js.Version == 3 {
					break
				}
				if how == "flush" || time.Now().After(deadline) {
					t.Fatalf("job version %d, want 3", js.Version)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestRestoreJobRewindsDifferentialVersions: a rank whose local file holds versions
// stored by blocks (deltas) beyond the job's restart point restores that point from its
// own file on an old node. The rewind drops the newer versions, which moves the index
// records of the ones it keeps: the restore read the delta's chain by the record it had
// found before, and failed with "version 2 is not held" (found by TestJobSim once it
// saved differentially).
func TestRestoreJobRewindsDifferentialVersions(t *testing.T) {
	const size = 32 * 4096
	content := func(v int) []byte { // version v: block 0 and block u rewritten by each u <= v
		b := make([]byte, size)
		for u := 1; u <= v; u++ {
			for _, blk := range []int{0, u} {
				for i := blk * 4096; i < (blk+1)*4096; i++ {
					b[i] = byte(u*31 + i)
				}
			}
		}
		return b
	}
	st := dirBackend().new(t)
	open := func(dir string, rank int) (*engine.File, [][]byte) {
		f, err := engine.Open(filepath.Join(dir, "r.ckp"), &engine.Options{KeepVersions: 3, Differential: true, NoTracking: true, NoPrefault: true,
			Remote: &engine.Remote{Store: st, Rank: rank, Ranks: 2}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		regions := [][]byte{make([]byte, size), make([]byte, size)}
		for i, r := range regions {
			if _, err := f.Register(fmt.Sprint("grid", i), r); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.RestoreJob(t.Context()); err != nil {
			t.Fatal(err)
		}
		return f, regions
	}
	dirA := t.TempDir()
	a, ra := open(dirA, 0)
	b, rb := open(t.TempDir(), 1)
	for _, x := range []struct {
		f       *engine.File
		regions [][]byte
		upTo    int
	}{{a, ra, 4}, {b, rb, 2}} {
		for v := 1; v <= x.upTo; v++ {
			for _, r := range x.regions {
				copy(r, content(v))
			}
			if err := x.f.SaveAll(); err != nil {
				t.Fatal(err)
			}
		}
		if err := x.f.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// Rank 0 dies (its files as they are while it runs) and restarts on its node; the
	// job's version is 2.
	node := t.TempDir()
	if err := copyFiles(dirA, node); err != nil {
		t.Fatal(err)
	}
	a.Close()
	_, ra = open(node, 0)
	for i, r := range ra {
		if !bytes.Equal(r, content(2)) {
			t.Fatalf("rank 0 restored other bytes than version 2's in region %d", i)
		}
	}
}
