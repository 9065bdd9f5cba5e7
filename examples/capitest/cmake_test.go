package capitest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ckp-go/ckp/internal/ctest"
)

var (
	installOnce sync.Once
	installed   string
	installErr  string
)

// prefix runs capi/install.sh into a temporary prefix, once per test binary, and
// returns the prefix.
func prefix(t *testing.T) string {
	t.Helper()
	ctest.Require(t, "cc", "cmake")
	lib := ctest.Build(t) // fills the build cache install.sh uses
	installOnce.Do(func() {
		dir := filepath.Join(lib.Dir, "prefix") // removed with the build by ctest.Main
		cmd := exec.Command("bash", filepath.Join(ctest.Root(t), "capi", "install.sh"), dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			installErr = string(out)
			return
		}
		installed = dir
	})
	if installErr != "" {
		t.Fatalf("capi/install.sh: %s", installErr)
	}
	return installed
}

// cmakeProject copies the files of an example directory (or the given files) into a
// directory outside the source tree, configures it against the installed prefix
// with the extra -D settings, builds it, and returns the build directory; or, if the
// configuration fails, its output and the error.
func cmakeProject(t *testing.T, files map[string]string, defs ...string) (string, error) {
	t.Helper()
	src := t.TempDir()
	for name, from := range files {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := filepath.Join(t.TempDir(), "build")
	args := append([]string{"-S", src, "-B", build, "-DCMAKE_PREFIX_PATH=" + prefix(t)}, defs...)
	if out, err := exec.Command("cmake", args...).CombinedOutput(); err != nil {
		return string(out), err
	}
	ctest.Run(t, ".", "cmake", "--build", build)
	return build, nil
}

func exampleFiles(dir string, names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = example(filepath.Join(dir, n))
	}
	return m
}

// TestCMakeC: examples/c builds with CMake against the installed package, with
// ckp::ckp and with ckp::ckp_static, outside the source tree, and gives the answer of
// the cc build.
func TestCMakeC(t *testing.T) {
	ctest.Require(t, "cc", "cmake")
	ref := build(t, false)
	dir := t.TempDir()
	args := func(ckpt string) []string {
		return []string{"-ckpt", filepath.Join(dir, ckpt), "-n", "64", "-steps", "200", "-every", "10"}
	}
	want := ctest.Run(t, dir, ref, args("ref.ckp")...)
	for _, static := range []string{"OFF", "ON"} {
		b, err := cmakeProject(t, exampleFiles("c", "CMakeLists.txt", "heat.c"), "-DCKP_STATIC="+static)
		if err != nil {
			t.Fatalf("cmake (CKP_STATIC=%s): %v\n%s", static, err, b)
		}
		exe := filepath.Join(b, "heat")
		if got := ctest.Run(t, dir, exe, args("cmake-"+static+".ckp")...); got != want {
			t.Fatalf("CMake build (CKP_STATIC=%s) said:\n%s\nthe cc build:\n%s", static, got, want)
		}
		needed := ctest.Run(t, ".", "readelf", "-d", exe)
		if shared := strings.Contains(needed, "[libckp.so]"); shared != (static == "OFF") {
			t.Fatalf("CKP_STATIC=%s: linked against libckp.so: %v\n%s", static, shared, needed)
		}
	}
}

// TestCMakeFortran: examples/fortran builds with CMake through ckp::fortran (the
// module compiled into the program) and gives the answer of the gfortran build.
func TestCMakeFortran(t *testing.T) {
	ctest.Require(t, "cc", "gfortran", "cmake")
	ref := buildFortran(t)
	dir := t.TempDir()
	want := ctest.Run(t, dir, ref, filepath.Join(dir, "ref.ckp"), "64", "200", "10", filepath.Join(dir, "ref.bin"))
	b, err := cmakeProject(t, exampleFiles("fortran", "CMakeLists.txt", "heat.f90"))
	if err != nil {
		t.Fatalf("cmake: %v\n%s", err, b)
	}
	got := ctest.Run(t, dir, filepath.Join(b, "heat"), filepath.Join(dir, "c.ckp"), "64", "200", "10", filepath.Join(dir, "c.bin"))
	if got != want {
		t.Fatalf("CMake build said:\n%s\nthe gfortran build:\n%s", got, want)
	}
}

// TestCMakeCXX: a C++ project links ckp::ckp and runs the header's C++ test; a
// version newer than the installed one, or an unknown component, fails find_package
// with a message.
func TestCMakeCXX(t *testing.T) {
	ctest.Require(t, "cc", "c++", "cmake")
	root := ctest.Root(t)
	lists := filepath.Join(t.TempDir(), "CMakeLists.txt")
	write := func(body string) {
		if err := os.WriteFile(lists, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"CMakeLists.txt": lists, "header_test.cpp": filepath.Join(root, "capi", "testdata", "header_test.cpp")}
	write("cmake_minimum_required(VERSION 3.16)\nproject(cxx CXX)\nfind_package(ckp REQUIRED)\n" +
		"add_executable(header_test header_test.cpp)\ntarget_link_libraries(header_test PRIVATE ckp::ckp)\n")
	b, err := cmakeProject(t, files)
	if err != nil {
		t.Fatalf("cmake: %v\n%s", err, b)
	}
	if out := ctest.Run(t, ".", filepath.Join(b, "header_test"), t.TempDir()); strings.TrimSpace(out) != "ok" {
		t.Fatalf("header_test: %s", out)
	}
	version, err := os.ReadFile(filepath.Join(root, "capi", "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ find, msg string }{
		{"find_package(ckp 99 REQUIRED)", "version: " + strings.TrimSpace(string(version))},
		{"find_package(ckp REQUIRED COMPONENTS gpu)", "unknown component gpu"},
	} {
		write("cmake_minimum_required(VERSION 3.16)\nproject(cxx CXX)\n" + tc.find + "\n")
		out, err := cmakeProject(t, files)
		if err == nil || !strings.Contains(out, tc.msg) {
			t.Errorf("%s: err %v, want a failure saying %q:\n%s", tc.find, err, tc.msg, out)
		}
	}
}
