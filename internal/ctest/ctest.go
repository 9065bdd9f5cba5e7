// Package ctest builds ckp's C library for tests and runs programs written against it:
// the C, C++, Fortran and MPI programs that capi's and the examples' tests compile with
// the system's compilers. Each test binary builds libckp.so and libckp.a once, in a
// temporary directory that Main removes.
//
// A test that needs a compiler or MPI calls Require first: it skips the test with a
// message when the tool is missing, or fails it when CKP_CAPI_REQUIRE=1 (as .ci/run
// sets it, after .ci/capi-setup.sh installed the tools).
package ctest

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns a missing tool into a failure.
const RequireEnv = "CKP_CAPI_REQUIRE"

// Require skips t unless every tool is on PATH (with CKP_CAPI_REQUIRE=1 it fails).
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("%s not installed (bash .ci/capi-setup.sh installs it)", strings.Join(missing, ", "))
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s=1 but %s", RequireEnv, msg)
	}
	t.Skip(msg)
}

// Root returns the module's root directory (where go.mod is).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Lib is a built libckp: Dir holds libckp.so and libckp.a, Include holds ckp_util.h.
type Lib struct {
	Dir     string
	Include string
	// Fortran is the Fortran module's source, ckp_util.f90.
	Fortran string
}

var (
	buildOnce sync.Once
	built     *Lib
	buildErr  error
	tmpDir    string
)

// Build builds libckp.so and libckp.a (once per test binary) and returns them. It
// needs a C compiler (cgo); the caller has checked with Require.
func Build(t testing.TB) *Lib {
	t.Helper()
	root := Root(t)
	buildOnce.Do(func() {
		tmpDir, buildErr = os.MkdirTemp("", "ckp-capi-")
		if buildErr != nil {
			return
		}
		l := &Lib{Dir: tmpDir, Include: filepath.Join(root, "capi"),
			Fortran: filepath.Join(root, "capi", "fortran", "ckp_util.f90")}
		for _, mode := range []struct{ flag, out string }{
			{"-buildmode=c-shared", "libckp.so"},
			{"-buildmode=c-archive", "libckp.a"},
		} {
			cmd := exec.Command("go", "build", mode.flag, "-o", filepath.Join(tmpDir, mode.out), "./capi")
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", mode.flag, err, out)
				return
			}
		}
		built = l
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// Main runs the tests and removes what Build built.
func Main(m *testing.M) int {
	code := m.Run()
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
	return code
}

// Shared returns the flags that link a program against libckp.so.
func (l *Lib) Shared() []string {
	return []string{"-I", l.Include, "-L", l.Dir, "-lckp", "-Wl,-rpath," + l.Dir}
}

// Static returns the flags that link a program against libckp.a.
func (l *Lib) Static() []string {
	return []string{"-I", l.Include, filepath.Join(l.Dir, "libckp.a"), "-lpthread", "-ldl", "-lm"}
}

// Run runs name with args in dir and returns its combined output; a failure fails t
// with the output.
func Run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Lines starts cmd with its standard output on a pipe and calls line for each line it
// prints until line returns false or the output ends; then it waits for cmd and
// returns the lines seen and Wait's error. stop, if not nil, runs when line returned
// false (it kills the program), before the wait.
func Lines(t testing.TB, cmd *exec.Cmd, line func(string) bool, stop func()) ([]string, error) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if !line(sc.Text()) {
			if stop != nil {
				stop()
			}
			break
		}
	}
	io.Copy(io.Discard, out)
	return seen, cmd.Wait()
}

// Killer says how KillLoop runs a program: Start returns a new, unstarted run of it,
// and Kill, if not nil, kills a started run (the default sends SIGKILL to its
// process).
type Killer struct {
	Start func() *exec.Cmd
	Kill  func(*exec.Cmd)
	// Kills is how many runs are killed before one is let finish; MaxAfter bounds the
	// "checkpoint" lines a run prints before it is killed (at random, 1..MaxAfter);
	// MaxDelay bounds the random wait between that line and the kill.
	Kills    int
	MaxAfter int
	MaxDelay time.Duration
	// Rand picks the moments; nil means a generator seeded from the clock.
	Rand *rand.Rand
	// Progress, if not empty, is a file the program appends its progress lines to
	// (removed before each run), read instead of its standard output to decide when
	// to kill it: output an MPI launcher forwards can lag far behind the ranks.
	Progress string
}

// Outcome is what KillLoop saw.
type Outcome struct {
	Lines   []string // the finished run's output
	Kills   int      // runs killed
	Resumed int      // lines starting with "resumed", in all runs
	Runs    int
	// Trace has, for each run, its "resumed" line and, if it was killed, the last
	// "checkpoint" line seen before the kill.
	Trace []string
}

// KillLoop runs k.Start() again and again, killing each run after a random number of
// lines that start with "checkpoint" and a random delay, until k.Kills runs were
// killed; then it lets one run finish (a run that finishes before its kill ends the
// loop too). It fails t if a run fails other than by the kill, or if none finishes in
// 4*Kills+4 runs.
func KillLoop(t testing.TB, k Killer) Outcome {
	t.Helper()
	r := k.Rand
	if r == nil {
		r = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
	}
	kill := k.Kill
	if kill == nil {
		kill = func(cmd *exec.Cmd) { cmd.Process.Signal(syscall.SIGKILL) }
	}
	var o Outcome
	for o.Runs < 4*k.Kills+4 {
		o.Runs++
		cmd := k.Start()
		after := 1 + r.IntN(k.MaxAfter)
		if o.Kills >= k.Kills {
			after = -1
		}
		seen, killed, lastCheckpoint, resumed := 0, false, "", ""
		watch := Lines
		if k.Progress != "" {
			os.Remove(k.Progress)
			watch = func(t testing.TB, cmd *exec.Cmd, line func(string) bool, stop func()) ([]string, error) {
				return progressLines(t, cmd, k.Progress, line, stop)
			}
		}
		lines, err := watch(t, cmd, func(line string) bool {
			if strings.HasPrefix(line, "resumed") && resumed == "" {
				resumed = line
				o.Trace = append(o.Trace, line)
			}
			if strings.HasPrefix(line, "checkpoint") {
				lastCheckpoint = line
				seen++
				if seen == after {
					if k.MaxDelay > 0 {
						time.Sleep(time.Duration(r.Int64N(int64(k.MaxDelay))))
					}
					return false
				}
			}
			return true
		}, func() {
			kill(cmd)
			killed = true
			o.Trace = append(o.Trace, "killed after: "+lastCheckpoint)
		})
		for _, l := range lines {
			if strings.HasPrefix(l, "resumed") && resumed == "" {
				resumed = l
				o.Trace = append(o.Trace, l)
			}
		}
		if resumed != "" {
			o.Resumed++
		}
		last := ""
		if len(lines) > 0 {
			last = lines[len(lines)-1]
		}
		if err == nil && strings.HasPrefix(last, "done") {
			o.Lines = lines
			return o
		}
		if !killed {
			t.Fatalf("run %d failed (%v) without being killed; its output:\n%s", o.Runs, err, strings.Join(lines, "\n"))
		}
		o.Kills++
	}
	t.Fatalf("no run finished in %d runs (%d kills)", o.Runs, o.Kills)
	return o
}

// progressLines starts cmd and calls line for each line appended to the file progress
// (polled every millisecond) until line returns false (then it calls stop) or cmd
// exits; it returns the lines of cmd's standard output and Wait's error.
func progressLines(t testing.TB, cmd *exec.Cmd, progress string, line func(string) bool, stop func()) ([]string, error) {
	t.Helper()
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var off int64
	var partial string
	// poll reads what was appended; it reports false once line asked for the stop.
	poll := func() bool {
		f, err := os.Open(progress)
		if err != nil {
			return true
		}
		defer f.Close()
		buf, _ := io.ReadAll(io.NewSectionReader(f, off, 1<<40))
		off += int64(len(buf))
		partial += string(buf)
		for {
			i := strings.IndexByte(partial, '\n')
			if i < 0 {
				return true
			}
			l := partial[:i]
			partial = partial[i+1:]
			if !line(l) {
				return false
			}
		}
	}
	var err error
loop:
	for {
		select {
		case err = <-exited:
			poll()
			break loop
		case <-time.After(time.Millisecond):
			if !poll() {
				stop()
				err = <-exited
				break loop
			}
		}
	}
	return strings.Split(strings.TrimSpace(stdout.String()), "\n"), err
}
