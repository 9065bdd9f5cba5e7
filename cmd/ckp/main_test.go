package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
)

// The end-to-end tests build the command once (TestMain) and run it against files the
// engine makes. Golden files in testdata/ hold the expected output of ls and info, with
// times and process ids replaced by placeholders; `go test -run Golden -update`
// rewrites them.

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// ckpBin is the command built for the tests.
var ckpBin string

func TestMain(m *testing.M) {
	if os.Getenv(writerEnv) != "" {
		os.Exit(writerMain())
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "ckp-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ckpBin = filepath.Join(dir, "ckp")
	build := exec.Command("go", "build", "-o", ckpBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ckp:", err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// ckp runs the command in dir.
func ckp(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(ckpBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("ckp %q: %v", args, err)
	}
	return r
}

// mustRun runs the command and fails unless it exits with code.
func mustRun(t *testing.T, code int, dir string, args ...string) result {
	t.Helper()
	r := ckp(t, dir, args...)
	if r.code != code {
		t.Fatalf("ckp %q: want exit %d, got %s", args, code, r)
	}
	return r
}

// oneErrorLine checks that stderr is a single "ckp: ..." line containing every want.
func oneErrorLine(t *testing.T, r result, want ...string) {
	t.Helper()
	if !strings.HasPrefix(r.stderr, "ckp: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Fatalf("stderr is not one \"ckp: \" line: %q", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Fatalf("stderr %q does not mention %q", r.stderr, w)
		}
	}
}

// Fixtures.

// fill writes the deterministic content of version v of region i.
func fill(b []byte, i, v int) {
	for k := range b {
		b[k] = byte(k*31 + i*7 + v*13 + k>>8)
	}
}

// fillText writes printable text.
func fillText(b []byte, v int) {
	line := fmt.Sprintf("text version %d\n", v)
	for k := range b {
		b[k] = line[k%len(line)]
	}
}

type region struct {
	name string
	size int
	text bool
}

// fixture is a file made by the engine and what each version holds.
type fixture struct {
	dir, file string // file is relative to dir
	want      map[string]map[int][]byte
}

func (fx *fixture) path() string { return filepath.Join(fx.dir, fx.file) }

// makeFixture writes rounds SaveAlls of regions (and extra Saves of the first region)
// into dir/file, deterministically.
func makeFixture(t *testing.T, dir, file string, regions []region, keep, rounds, extra int) *fixture {
	t.Helper()
	fx := &fixture{dir: dir, file: file, want: map[string]map[int][]byte{}}
	f, err := engine.Open(fx.path(), &engine.Options{KeepVersions: keep, NoPrefault: true, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	bufs := make([][]byte, len(regions))
	cps := make([]*engine.Checkpoint, len(regions))
	for i, r := range regions {
		bufs[i] = make([]byte, r.size)
		if cps[i], err = f.Register(r.name, bufs[i]); err != nil {
			t.Fatal(err)
		}
		fx.want[r.name] = map[int][]byte{}
	}
	set := func(i, v int) {
		if regions[i].text {
			fillText(bufs[i], v)
		} else {
			fill(bufs[i], i, v)
		}
		fx.want[regions[i].name][v] = bytes.Clone(bufs[i])
	}
	for v := 1; v <= rounds; v++ {
		for i := range regions {
			set(i, v)
		}
		if err := f.SaveAll(); err != nil {
			t.Fatal(err)
		}
	}
	for v := rounds + 1; v <= rounds+extra; v++ {
		set(0, v)
		if err := cps[0].Save(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return fx
}

var mainRegions = []region{
	{name: "alpha", size: 100},
	{name: "beta@2", size: 5000},
	{name: "ctl\x01\n", size: 64},
	{name: "\xff\xferaw", size: 8},
	{name: "space name", size: 3000},
	{name: "日本語", size: 10},
	{name: "text", size: 200, text: true},
}

// mainFixture: KeepVersions 3, 5 SaveAlls, 2 more saves of alpha. Kept: alpha 5..7,
// the others 3..5.
func mainFixture(t *testing.T) *fixture {
	return makeFixture(t, t.TempDir(), "g.ckp", mainRegions, 3, 5, 2)
}

// Normalisation of volatile fields for golden comparisons.
var normalizers = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z`), "YYYY-MM-DD hh:mm:ss.mmmZ"},
	{regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`), `"TIME"`},
	{regexp.MustCompile(`pid \d+`), "pid PID"},
	{regexp.MustCompile(`"pid": \d+`), `"pid": 0`},
}

func normalize(s string) string {
	for _, n := range normalizers {
		s = n.re.ReplaceAllString(s, n.repl)
	}
	return s
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	got = normalize(got)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func TestGolden(t *testing.T) {
	fx := mainFixture(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ls", []string{"ls", "--utc", "g.ckp"}},
		{"ls_bytes", []string{"ls", "--utc", "--bytes", "g.ckp"}},
		{"ls_json", []string{"ls", "--json", "g.ckp"}},
		{"ls_name", []string{"ls", "--utc", "g.ckp", "beta@2"}},
		{"ls_name_quoted", []string{"ls", "--utc", "g.ckp", `"ctl\x01\n"`}},
		{"ls_name_json", []string{"ls", "--json", "g.ckp", "alpha"}},
		{"info", []string{"info", "--utc", "g.ckp"}},
		{"info_json", []string{"info", "--json", "g.ckp"}},
		{"verify", []string{"verify", "g.ckp"}},
		{"verify_json", []string{"verify", "--json", "g.ckp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRun(t, 0, fx.dir, tc.args...)
			if r.stderr != "" {
				t.Fatalf("stderr: %q", r.stderr)
			}
			golden(t, tc.name, r.stdout)
		})
	}
}

// The golden files depend on nothing but the fixture: making it twice gives the same
// output after normalisation.
func TestFixtureDeterministic(t *testing.T) {
	a, b := mainFixture(t), mainFixture(t)
	for _, args := range [][]string{{"ls", "--utc", "g.ckp"}, {"ls", "--json", "g.ckp", "text"}, {"info", "--json", "g.ckp"}} {
		ra, rb := mustRun(t, 0, a.dir, args...), mustRun(t, 0, b.dir, args...)
		if normalize(ra.stdout) != normalize(rb.stdout) {
			t.Fatalf("%q differs between two identical fixtures:\n%s\n%s", args, ra.stdout, rb.stdout)
		}
	}
}

func TestEmptyFile(t *testing.T) {
	dir := t.TempDir()
	f, err := engine.Open(filepath.Join(dir, "e.ckp"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := mustRun(t, 0, dir, "ls", "e.ckp")
	if !strings.Contains(r.stdout, "no checkpoints") {
		t.Fatalf("ls of an empty file: %s", r)
	}
	r = mustRun(t, 0, dir, "ls", "--json", "e.ckp")
	if !strings.Contains(r.stdout, `"checkpoints": []`) {
		t.Fatalf("ls --json of an empty file: %s", r)
	}
	mustRun(t, 0, dir, "verify", "e.ckp")
	mustRun(t, 0, dir, "info", "e.ckp")
	r = mustRun(t, 0, dir, "export", "e.ckp", "out")
	if r.stdout != "" {
		t.Fatalf("export of an empty file: %s", r)
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"ls"},
		{"ls", "a", "b", "c"},
		{"ls", "--bogus", "x"},
		{"cat", "x"},
		{"verify"},
		{"export", "x"},
		{"export", "--version", "abc", "x", "d"},
		{"info", "a", "b"},
		{"repair"},
	} {
		r := ckp(t, dir, args...)
		if r.code != 2 {
			t.Fatalf("ckp %q: want exit 2, got %s", args, r)
		}
		oneErrorLine(t, r)
	}
	// A file that does not exist, and one that is not a ckp file.
	r := mustRun(t, 2, dir, "ls", "missing.ckp")
	oneErrorLine(t, r, "missing.ckp", "no such file")
	if err := os.WriteFile(filepath.Join(dir, "junk"), bytes.Repeat([]byte("junk"), 2000), 0o600); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, 2, dir, "info", "junk")
	oneErrorLine(t, r, "not a ckp data file")
}

func TestHelp(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []string{"ls", "verify", "cat", "export", "info", "repair"} {
		for _, args := range [][]string{{"help", c}, {c, "--help"}} {
			r := mustRun(t, 0, dir, args...)
			if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "ckp "+c+" ") || !strings.Contains(r.stdout, "Usage:") {
				t.Fatalf("ckp %q: no usage or example:\n%s", args, r.stdout)
			}
		}
	}
	r := mustRun(t, 0, dir, "help")
	for _, c := range []string{"ls", "verify", "cat", "export", "info", "repair"} {
		if !strings.Contains(r.stdout, "  "+c+" ") {
			t.Fatalf("ckp help does not list %s:\n%s", c, r.stdout)
		}
	}
	r = mustRun(t, 0, dir, "help", "verify")
	if !strings.Contains(r.stdout, "writer holds FILE") {
		t.Fatalf("verify help does not explain the index tail:\n%s", r.stdout)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
