package capitest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/ctest"
	"github.com/ckp-go/ckp/store"
)

const mpiRanks = 4

// mpiRun returns an mpirun command for ranks copies of exe with args. Open MPI refuses
// root without the two variables, and 4 ranks on a 2-core machine without
// --oversubscribe; its session files and shared-memory segments go to tmp, which the
// test removes even when the ranks were killed.
func mpiRun(ctx context.Context, tmp string, exe string, args ...string) *exec.Cmd {
	mpiArgs := []string{"--oversubscribe", "--bind-to", "none", "-n", strconv.Itoa(mpiRanks),
		"--mca", "pml", "ob1", "--mca", "btl", "self,vader",
		"--mca", "btl_vader_single_copy_mechanism", "none",
		"--mca", "btl_vader_backing_directory", tmp,
		exe}
	cmd := exec.CommandContext(ctx, "mpirun", append(mpiArgs, args...)...)
	cmd.Env = append(os.Environ(),
		"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
		"OMPI_MCA_orte_tmpdir_base="+tmp, "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// gone reports whether process pid has exited (it is missing or a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// mpiJob is a built heat_mpi with the serial program's answer to compare against.
type mpiJob struct {
	exe       string
	dir       string // checkpoint files and outputs
	tmp, pids string
	ctx       context.Context
	want      string // the serial program's last line
	wantGrid  []byte // and its grid
}

const mpiN, mpiSteps = "128", "3000"

func newMPIJob(t *testing.T) *mpiJob {
	t.Helper()
	ctest.Require(t, "cc", "mpicc", "mpirun")
	lib := ctest.Build(t)
	j := &mpiJob{dir: t.TempDir(), tmp: t.TempDir(), pids: t.TempDir()}
	j.exe = filepath.Join(t.TempDir(), "heat_mpi")
	ctest.Run(t, ".", "mpicc", append([]string{"-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-o", j.exe,
		example("mpi/heat_mpi.c")}, append(lib.Shared(), "-lm")...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	j.ctx = ctx

	serial := build(t, false)
	serialOut := filepath.Join(j.dir, "serial.bin")
	j.want = lastLine(strings.Split(strings.TrimSpace(ctest.Run(t, j.dir, serial,
		"-ckpt", filepath.Join(j.dir, "serial.ckp"), "-n", mpiN, "-steps", mpiSteps, "-every", "1000", "-out", serialOut)), "\n"))
	j.wantGrid, _ = os.ReadFile(serialOut)
	if len(j.wantGrid) != 128*128*8 {
		t.Fatalf("the serial program wrote %d bytes", len(j.wantGrid))
	}
	return j
}

// cmd returns the job on checkpoint files ckpt.rankR, run to steps, its grid to out,
// with more arguments of heat_mpi if any.
func (j *mpiJob) cmd(ckpt, steps, out string, more ...string) *exec.Cmd {
	cmd := mpiRun(j.ctx, j.tmp, j.exe, append([]string{"-ckpt", filepath.Join(j.dir, ckpt), "-n", mpiN, "-steps", steps,
		"-every", "20", "-out", filepath.Join(j.dir, out), "-pids", j.pids}, more...)...)
	cmd.Dir = j.dir
	return cmd
}

// run runs the job to the end and returns its output lines.
func (j *mpiJob) run(t *testing.T, ckpt, steps, out string, more ...string) []string {
	t.Helper()
	b, err := j.cmd(ckpt, steps, out, more...).CombinedOutput()
	if err != nil {
		t.Fatalf("mpirun: %v\n%s", err, b)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// checkAnswer compares a finished job's last line and grid with the serial program's.
func (j *mpiJob) checkAnswer(t *testing.T, lines []string, out string) {
	t.Helper()
	if got := lastLine(lines); got != j.want {
		t.Fatalf("the job said %q, the serial program %q; output:\n%s", got, j.want, strings.Join(lines, "\n"))
	}
	if got, _ := os.ReadFile(filepath.Join(j.dir, out)); !bytes.Equal(got, j.wantGrid) {
		t.Fatal("the job's grid differs from the serial program's")
	}
}

// rankPids returns the process ids the ranks of the running job wrote.
func (j *mpiJob) rankPids(t *testing.T) []int {
	var pids []int
	for r := 0; r < mpiRanks; r++ {
		s, err := os.ReadFile(filepath.Join(j.pids, fmt.Sprintf("rank%d.pid", r)))
		if err != nil {
			t.Errorf("rank %d wrote no process id: %v", r, err)
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(s)))
		if err != nil {
			t.Errorf("rank %d's process id %q: %v", r, s, err)
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// forgetPids removes the ranks' process id files before a run: a kill never hits a
// stale process id.
func (j *mpiJob) forgetPids() {
	for r := 0; r < mpiRanks; r++ {
		os.Remove(filepath.Join(j.pids, fmt.Sprintf("rank%d.pid", r)))
	}
}

// killAll kills every process of the job (the ranks by the ids they wrote, mpirun by
// its process group), as a node's death would, and waits until all are gone.
func (j *mpiJob) killAll(t *testing.T, cmd *exec.Cmd) {
	ranks := j.rankPids(t)
	for _, pid := range ranks {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	deadline := time.Now().Add(time.Minute)
	for _, pid := range ranks {
		for !gone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("rank process %d still alive a minute after SIGKILL", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestMPIResumeAfterKill: four MPI ranks, each with its own checkpoint file, save
// with ckpSaveAll in lockstep; every process of the job is killed with SIGKILL at a
// random moment, again and again; on each restart the ranks agree on the newest
// version every rank holds, and the job ends with exactly the grid of an
// uninterrupted run, which is also the serial C program's.
func TestMPIResumeAfterKill(t *testing.T) {
	j := newMPIJob(t)
	j.checkAnswer(t, j.run(t, "ref.ckp", mpiSteps, "ref.bin"), "ref.bin")

	o := ctest.KillLoop(t, ctest.Killer{
		Start: func() *exec.Cmd {
			j.forgetPids()
			cmd := j.cmd("killed.ckp", mpiSteps, "killed.bin")
			cmd.Args = append(cmd.Args, "-progress", filepath.Join(j.dir, "progress"))
			return cmd
		},
		Kill:     func(cmd *exec.Cmd) { j.killAll(t, cmd) },
		Kills:    3,
		MaxAfter: 40,
		MaxDelay: 5 * time.Millisecond,
		Progress: filepath.Join(j.dir, "progress"),
	})
	j.checkAnswer(t, o.Lines, "killed.bin")
	if o.Kills < 1 || o.Resumed < o.Kills {
		t.Fatalf("%d kills, %d resumptions", o.Kills, o.Resumed)
	}
	t.Logf("%d runs, %d kills, %d resumptions (%s), same grid: %s", o.Runs, o.Kills, o.Resumed, strings.Join(o.Trace, "; "), j.want)
}

// TestMPIAgreement builds, from copies of the ranks' files, the states a kill in the
// middle of a round of saves leaves, and checks that the ranks agree on a version
// that is one state, realign their version numbers, and finish with the answer:
//   - a lost round: ranks 0 and 1 hold the round of step 220 (version 11), ranks 2
//     and 3 stop at step 200 (version 10);
//   - a realignment cut short: ranks 0 and 1 as before, ranks 2 and 3 after they
//     realigned (versions 11 and 12 hold step 200), so version 11, the newest all hold,
//     is step 220 on two ranks and step 200 on the others, and the ranks fall back to
//     version 10.
func TestMPIAgreement(t *testing.T) {
	j := newMPIJob(t)
	copyRanks := func(from, to string, ranks ...int) {
		for _, r := range ranks {
			for _, suffix := range []string{"", ".idx"} {
				name := fmt.Sprintf(".rank%d%s", r, suffix)
				b, err := os.ReadFile(filepath.Join(j.dir, from+name))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(j.dir, to+name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	resumedAt := func(lines []string, want string) {
		t.Helper()
		for _, l := range lines {
			if strings.HasPrefix(l, "resumed") {
				if l != want {
					t.Fatalf("%q, want %q", l, want)
				}
				return
			}
		}
		t.Fatalf("no resumption in:\n%s", strings.Join(lines, "\n"))
	}

	j.run(t, "x", "200", "x.bin") // versions 1..10, the last at step 200
	copyRanks("x", "y", 0, 1, 2, 3)
	j.run(t, "x", "220", "x.bin") // version 11 at step 220
	copyRanks("x", "lost", 0, 1)
	copyRanks("y", "lost", 2, 3)
	copyRanks("x", "cut", 0, 1)

	// A lost round: restart at step 200 from version 10, realign, stop at once.
	lines := j.run(t, "lost", "200", "lost.bin")
	resumedAt(lines, "resumed at step 200 (version 10)")
	copyRanks("lost", "cut", 2, 3)
	lines = j.run(t, "lost", mpiSteps, "lost.bin")
	resumedAt(lines, "resumed at step 200 (version 12)")
	j.checkAnswer(t, lines, "lost.bin")

	// A realignment cut short.
	lines = j.run(t, "cut", mpiSteps, "cut.bin")
	resumedAt(lines, "resumed at step 200 (version 10)")
	j.checkAnswer(t, lines, "cut.bin")
}

// TestMPIRemoteResumeAfterKill: heat_mpi with -remote, a directory store shared by the
// four ranks. The job is killed again and again at random moments: every rank at once,
// or one rank first and the others up to 50 ms later (the survivors go on uploading,
// or mpirun brings them down); after some kills one rank's local files are deleted too,
// as if its node were lost, so that it restarts from the store. On each restart the
// ranks agree through the store alone (ckpRestoreJob; no MPI call decides anything):
// every rank starts at the job version the store held when the job died (read here
// with engine.InspectJob), or starts over when there was none; and the job ends with
// the grid of an uninterrupted run and of the serial program, with job version 150
// (3000 steps, a version every 20) committed by every rank. Each run is a launch of
// its own: the newest life of the store names a launch id of 16 hex digits, and the
// last run's is not the first's.
func TestMPIRemoteResumeAfterKill(t *testing.T) {
	j := newMPIJob(t)
	refStore, err := store.Dir(filepath.Join(j.dir, "refstore"))
	if err != nil {
		t.Fatal(err)
	}
	inspect := func(st store.Store) engine.JobStatus {
		js, err := engine.InspectJob(j.ctx, st, mpiRanks)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	lines := j.run(t, "ref.ckp", mpiSteps, "ref.bin", "-remote", filepath.Join(j.dir, "refstore"))
	j.checkAnswer(t, lines, "ref.bin")
	wantJob := "job version 150"
	if !slices.Contains(lines, wantJob) {
		t.Fatalf("no %q in:\n%s", wantJob, strings.Join(lines, "\n"))
	}
	launchID := regexp.MustCompile(`^[0-9a-f]{16}$`)
	if l := inspect(refStore).Launch; !launchID.MatchString(l) {
		t.Fatalf("the job's launch id is %q, want 16 hex digits", l)
	}

	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 7))
	storeDir := filepath.Join(j.dir, "store")
	st, err := store.Dir(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	jobVersion := func() int { return inspect(st).Version }
	var firstLaunch string
	progress := filepath.Join(j.dir, "progress")
	// Each run must start where the store says: wantStart is that line.
	wantStart := "started"
	var starts, kills []string
	// collect checks, after each run, the line every rank wrote where it started.
	collect := func() {
		n := 0
		for rank := 0; rank < mpiRanks; rank++ {
			f := fmt.Sprintf("%s.rank%d", progress, rank)
			b, err := os.ReadFile(f)
			if err != nil {
				continue // killed before it got there
			}
			os.Remove(f)
			if got := strings.TrimSpace(string(b)); got != wantStart {
				t.Fatalf("seed %d: rank %d: %q, want %q (starts so far: %q)", seed, rank, got, wantStart, starts)
			}
			n++
		}
		if n > 0 {
			starts = append(starts, fmt.Sprintf("%s (%d ranks)", wantStart, n))
		}
	}
	o := ctest.KillLoop(t, ctest.Killer{
		Start: func() *exec.Cmd {
			j.forgetPids()
			return j.cmd("killed.ckp", mpiSteps, "killed.bin", "-remote", storeDir, "-progress", progress)
		},
		Kill: func(cmd *exec.Cmd) {
			// The first kill waits for a job version, so that a restart resumes at least once.
			for deadline := time.Now().Add(time.Minute); len(kills) == 0 && jobVersion() == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no job version a minute into the run")
				}
			}
			how := "all"
			if r.IntN(2) == 0 {
				pids := j.rankPids(t)
				first := r.IntN(len(pids))
				syscall.Kill(pids[first], syscall.SIGKILL)
				delay := time.Duration(r.Int64N(int64(50 * time.Millisecond)))
				time.Sleep(delay)
				how = fmt.Sprintf("rank %d, the rest %v later", first, delay.Round(time.Millisecond))
			}
			j.killAll(t, cmd)
			if len(kills) == 0 {
				firstLaunch = inspect(st).Launch
			}
			collect()
			if r.IntN(3) == 0 {
				lost := r.IntN(mpiRanks)
				for _, suffix := range []string{"", ".idx"} {
					if err := os.Remove(filepath.Join(j.dir, fmt.Sprintf("killed.ckp.rank%d%s", lost, suffix))); err != nil && !os.IsNotExist(err) {
						t.Fatal(err)
					}
				}
				how += fmt.Sprintf(", rank %d's node lost", lost)
			}
			wantStart = "started"
			if v := jobVersion(); v > 0 {
				wantStart = fmt.Sprintf("resumed at step %d (version %d)", 20*v, v)
			}
			kills = append(kills, how)
		},
		Kills:    3,
		MaxAfter: 40,
		MaxDelay: 5 * time.Millisecond,
		Progress: progress,
		Rand:     r,
	})
	collect()
	j.checkAnswer(t, o.Lines, "killed.bin")
	if !slices.Contains(o.Lines, wantJob) {
		t.Fatalf("no %q in:\n%s", wantJob, strings.Join(o.Lines, "\n"))
	}
	if l := inspect(st).Launch; !launchID.MatchString(l) || l == firstLaunch {
		t.Fatalf("the last run's launch id is %q, the first's %q: want 16 hex digits, another each run", l, firstLaunch)
	}
	if len(starts) != o.Runs || !strings.HasSuffix(starts[len(starts)-1], fmt.Sprintf("(%d ranks)", mpiRanks)) {
		t.Fatalf("%d runs, start lines %q", o.Runs, starts)
	}
	if o.Kills < 1 || o.Resumed < 1 {
		t.Fatalf("%d kills, %d resumptions (seed %d; kills: %s; starts: %s)", o.Kills, o.Resumed, seed,
			strings.Join(kills, "; "), strings.Join(starts, "; "))
	}
	t.Logf("seed %d: %d runs, %d kills (%s); starts: %s; trace: %s; same grid: %s", seed, o.Runs, o.Kills,
		strings.Join(kills, "; "), strings.Join(starts, "; "), strings.Join(o.Trace, "; "), j.want)
}
