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

func TestMain(m *testing.M) { os.Exit(ctest.Main(m)) }

// example returns the path of a file of an example.
func example(name string) string { return filepath.Join("..", name) }

// build compiles examples/c/heat.c against libckp.so (static: libckp.a) and returns the
// program.
func build(t *testing.T, static bool) string {
	t.Helper()
	ctest.Require(t, "cc")
	lib := ctest.Build(t)
	exe := filepath.Join(t.TempDir(), "heat")
	link := lib.Shared()
	if static {
		link = lib.Static()
	}
	args := append([]string{"-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-o", exe, example("c/heat.c")}, link...)
	ctest.Run(t, ".", "cc", args...)
	return exe
}

func heatArgs(ckpt, out string) []string {
	return []string{"-ckpt", ckpt, "-n", "256", "-steps", "4000", "-every", "20", "-out", out}
}

func lastLine(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

// TestCResumeAfterKill: the C heat solver, killed with SIGKILL at random moments and
// restarted each time, ends with exactly the grid of an uninterrupted run.
func TestCResumeAfterKill(t *testing.T) {
	exe := build(t, false)
	dir := t.TempDir()
	refOut := filepath.Join(dir, "ref.bin")
	ref := ctest.Run(t, dir, exe, heatArgs(filepath.Join(dir, "ref.ckp"), refOut)...)
	want := lastLine(strings.Split(strings.TrimSpace(ref), "\n"))
	if !strings.HasPrefix(want, "done: step 4000,") {
		t.Fatalf("uninterrupted run said %q", want)
	}

	out := filepath.Join(dir, "killed.bin")
	o := ctest.KillLoop(t, ctest.Killer{
		Start:    func() *exec.Cmd { return exec.Command(exe, heatArgs(filepath.Join(dir, "killed.ckp"), out)...) },
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

// TestCStaticLink: heat.c linked against libckp.a gives the answer of the shared
// library's build, and resumes from the checkpoint file it wrote.
func TestCStaticLink(t *testing.T) {
	shared, static := build(t, false), build(t, true)
	dir := t.TempDir()
	args := func(ckpt string, steps string) []string {
		return []string{"-ckpt", filepath.Join(dir, ckpt), "-n", "64", "-steps", steps, "-every", "10"}
	}
	want := ctest.Run(t, dir, shared, args("a.ckp", "200")...)
	got := ctest.Run(t, dir, static, args("b.ckp", "200")...)
	if got != want {
		t.Fatalf("static build:\n%s\nshared build:\n%s", got, want)
	}
	// Half the run with one build, the rest with the other.
	ctest.Run(t, dir, static, args("c.ckp", "100")...)
	resumed := ctest.Run(t, dir, shared, args("c.ckp", "200")...)
	if !strings.HasPrefix(resumed, "resumed at step 100\n") || !strings.HasSuffix(resumed, lastLine(strings.Split(strings.TrimSpace(want), "\n"))+"\n") {
		t.Fatalf("resumed run:\n%s\nwant the end of:\n%s", resumed, want)
	}
}
