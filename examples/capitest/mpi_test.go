package capitest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckp-go/ckp/internal/ctest"
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

// cmd returns the job on checkpoint files ckpt.rankR, run to steps, its grid to out.
func (j *mpiJob) cmd(ckpt, steps, out string) *exec.Cmd {
	cmd := mpiRun(j.ctx, j.tmp, j.exe, "-ckpt", filepath.Join(j.dir, ckpt), "-n", mpiN, "-steps", steps,
		"-every", "20", "-out", filepath.Join(j.dir, out), "-pids", j.pids)
	cmd.Dir = j.dir
	return cmd
}

// run runs the job to the end and returns its output lines.
func (j *mpiJob) run(t *testing.T, ckpt, steps, out string) []string {
	t.Helper()
	b, err := j.cmd(ckpt, steps, out).CombinedOutput()
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

// TestMPIResumeAfterKill: four MPI ranks, each with its own checkpoint file, save
// with ckpSaveAll in lockstep; every process of the job is killed with SIGKILL at a
// random moment, again and again; on each restart the ranks agree on the newest
// version every rank holds, and the job ends with exactly the grid of an
// uninterrupted run, which is also the serial C program's.
func TestMPIResumeAfterKill(t *testing.T) {
	j := newMPIJob(t)
	j.checkAnswer(t, j.run(t, "ref.ckp", mpiSteps, "ref.bin"), "ref.bin")

	// Kill every process of the job (the ranks by the ids they wrote, mpirun by its
	// process group), as a node's death would, and wait until all are gone.
	killJob := func(cmd *exec.Cmd) {
		var ranks []int
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
			ranks = append(ranks, pid)
		}
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
	o := ctest.KillLoop(t, ctest.Killer{
		Start: func() *exec.Cmd {
			for r := 0; r < mpiRanks; r++ { // never kill a stale process id
				os.Remove(filepath.Join(j.pids, fmt.Sprintf("rank%d.pid", r)))
			}
			cmd := j.cmd("killed.ckp", mpiSteps, "killed.bin")
			cmd.Args = append(cmd.Args, "-progress", filepath.Join(j.dir, "progress"))
			return cmd
		},
		Kill:     killJob,
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
