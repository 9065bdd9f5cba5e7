package capitest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/internal/ctest"
)

// buildFortran compiles the ckp_util module and examples/fortran/heat.f90 with
// gfortran against libckp.so and returns the program.
func buildFortran(t *testing.T) string {
	t.Helper()
	ctest.Require(t, "cc", "gfortran")
	lib := ctest.Build(t)
	dir := t.TempDir()
	exe := filepath.Join(dir, "heat")
	flags := []string{"-std=f2008", "-Wall", "-Werror", "-O2", "-J", dir}
	ctest.Run(t, ".", "gfortran", append(flags, "-c", lib.Fortran, "-o", filepath.Join(dir, "ckp_util.o"))...)
	ctest.Run(t, ".", "gfortran", append(flags, "-o", exe, example("fortran/heat.f90"), filepath.Join(dir, "ckp_util.o"),
		"-L", lib.Dir, "-lckp", "-Wl,-rpath,"+lib.Dir)...)
	return exe
}

// TestFortranResumeAfterKill: the Fortran heat solver saves, is killed with SIGKILL
// at random moments, restores, and ends with exactly the grid of an uninterrupted run.
func TestFortranResumeAfterKill(t *testing.T) {
	exe := buildFortran(t)
	dir := t.TempDir()
	args := func(ckpt, out string) []string { return []string{ckpt, "256", "4000", "20", out} }
	refOut := filepath.Join(dir, "ref.bin")
	ref := strings.Split(strings.TrimSpace(ctest.Run(t, dir, exe, args(filepath.Join(dir, "ref.ckp"), refOut)...)), "\n")
	want := lastLine(ref)
	if !strings.HasPrefix(want, "done: step 4000,") {
		t.Fatalf("uninterrupted run said %q", want)
	}

	out := filepath.Join(dir, "killed.bin")
	o := ctest.KillLoop(t, ctest.Killer{
		Start:    func() *exec.Cmd { return exec.Command(exe, args(filepath.Join(dir, "killed.ckp"), out)...) },
		Kills:    3,
		MaxAfter: 40,
		MaxDelay: 3 * time.Millisecond,
	})
	if got := lastLine(o.Lines); got != want {
		t.Fatalf("after %d kills: %q, uninterrupted run: %q", o.Kills, got, want)
	}
	if o.Kills < 1 || o.Resumed < o.Kills {
		t.Fatalf("%d kills, %d resumptions", o.Kills, o.Resumed)
	}
	a, _ := os.ReadFile(refOut)
	b, _ := os.ReadFile(out)
	if len(a) != 256*256*8 || !bytes.Equal(a, b) {
		t.Fatalf("the killed run's grid (%d bytes) differs from the uninterrupted run's (%d bytes)", len(b), len(a))
	}
	t.Logf("%d runs, %d kills, %d resumptions (%s), same grid: %s", o.Runs, o.Kills, o.Resumed, strings.Join(o.Trace, "; "), want)
}
