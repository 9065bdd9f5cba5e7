package python

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/internal/ctest"
)

// RequireEnv turns a missing interpreter or module into a failure.
const RequireEnv = "CKP_PYTHON_REQUIRE"

func TestMain(m *testing.M) { os.Exit(ctest.Main(m)) }

// python returns the interpreter after checking it can import modules, or skips t.
func python(t *testing.T, modules ...string) string {
	t.Helper()
	py := os.Getenv("CKP_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	var missing string
	if _, err := os.Stat(py); err != nil {
		missing = py
	} else if out, err := exec.Command(py, "-c", "import "+strings.Join(modules, ", ")).CombinedOutput(); err != nil {
		missing = fmt.Sprintf("the Python modules %s for %s (%s)", strings.Join(modules, ", "), py, bytes.TrimSpace(out))
	}
	if missing != "" {
		msg := missing + " not installed (bash .ci/python-setup.sh installs them)"
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s=1 but %s", RequireEnv, msg)
		}
		t.Skip(msg)
	}
	return py
}

// TestPytest runs python/tests with pytest against a libckp and a ckp command built
// for the test (the package from its sources, not installed).
func TestPytest(t *testing.T) {
	py := python(t, "pytest")
	ctest.Require(t, "cc")
	lib := ctest.Build(t)
	root := ctest.Root(t)
	bin := filepath.Join(t.TempDir(), "ckp")
	ctest.Run(t, root, "go", "build", "-o", bin, "./cmd/ckp")
	cmd := exec.Command(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", filepath.Join("python", "tests"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"CKP_LIBRARY="+filepath.Join(lib.Dir, "libckp.so"),
		"CKP_COMMAND="+bin,
		"PYTHONPATH="+filepath.Join(root, "python", "src"),
		"PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	t.Logf("pytest:\n%s", out)
	if err != nil {
		t.Fatalf("pytest failed: %v", err)
	}
}

// quickstart is where the README's Python section keeps the commands a newcomer runs.
var quickstart = regexp.MustCompile("(?s)<!-- python quickstart -->\\s*```sh\n(.*?)```")

// TestREADMEQuickstart runs the README's Python commands as written, in a fresh
// HOME (the venv goes there) and with the checkpoint in a temporary directory: pip
// builds and installs the package, the heat example is killed with SIGKILL, and
// the rerun resumes and finishes with the answer of an uninterrupted run. The setup
// script's line is left out (it installs packages; CI ran it).
func TestREADMEQuickstart(t *testing.T) {
	py := python(t, "setuptools", "wheel", "numpy")
	ctest.Require(t, "cc")
	root := ctest.Root(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := quickstart.FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no <!-- python quickstart --> block")
	}
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "heat.ckp")
	var script []string
	for _, line := range strings.Split(string(m[1]), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "bash .ci/python-setup.sh") {
			continue
		}
		script = append(script, strings.ReplaceAll(line, "/tmp/heat.ckp", ckpt))
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(script, "\n"))
	cmd.Dir = root
	// A fresh HOME for the venv, with Go's caches where they were: a cold build cache
	// would rebuild everything, and the module cache would be downloaded again.
	cmd.Env = append(os.Environ(), "HOME="+filepath.Join(dir, "home"), "PIP_NO_INDEX=1", "PIP_DISABLE_PIP_VERSION_CHECK=1")
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		val := strings.TrimSpace(ctest.Run(t, root, "go", "env", v))
		cmd.Env = append(cmd.Env, v+"="+val)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's Python commands failed: %v\n%s", err, out)
	}
	t.Logf("%s", regexp.MustCompile(`(?m)^checkpoint at step .*\n`).ReplaceAll(out, nil))
	text := string(out)
	if !strings.Contains(text, "killed") || !regexp.MustCompile(`(?m)^resumed at step [1-9]`).MatchString(text) {
		t.Fatal("the run was not killed mid-run and resumed")
	}
	got := regexp.MustCompile(`(?m)^done: .*$`).FindAllString(text, -1)
	if len(got) != 1 {
		t.Fatalf("%d done lines, want 1 (the resumed run's)", len(got))
	}
	// The package holds the library and the command, and no header: cgo's libckp.h is
	// not the C interface, and pip's build leaves it behind.
	pkg := filepath.Join(venvSitePackages(t, dir), "ckp")
	for _, f := range []string{"libckp.so", "bin/ckp", "__init__.py"} {
		if _, err := os.Stat(filepath.Join(pkg, f)); err != nil {
			t.Error(err)
		}
	}
	if hs, _ := filepath.Glob(filepath.Join(pkg, "*.h")); len(hs) > 0 {
		t.Errorf("the installed package holds %v", hs)
	}
	// The answer of an uninterrupted run of the same command.
	args := regexp.MustCompile(`heat\.py (.*)`).FindStringSubmatch(script[len(script)-1])
	if args == nil {
		t.Fatalf("the last command does not run heat.py: %s", script[len(script)-1])
	}
	ref := strings.Fields(strings.ReplaceAll(args[1], ckpt, filepath.Join(dir, "ref.ckp")))
	run := exec.Command(py, append([]string{filepath.Join("examples", "python", "heat.py")}, ref...)...)
	run.Dir = root
	run.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(root, "python", "src"),
		"CKP_LIBRARY="+filepath.Join(pkg, "libckp.so"))
	refOut, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, refOut)
	}
	lines := strings.Split(strings.TrimSpace(string(refOut)), "\n")
	if want := lines[len(lines)-1]; want != got[0] {
		t.Fatalf("killed and resumed: %q, uninterrupted: %q", got[0], want)
	}
}

// venvSitePackages returns the site-packages of the venv the README creates under
// HOME=dir/home.
func venvSitePackages(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "home", ".venvs", "ckp", "lib", "python3*", "site-packages"))
	if len(m) != 1 {
		t.Fatalf("the README's venv is not where the test looks (%v)", m)
	}
	return m[0]
}
