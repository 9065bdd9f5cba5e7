package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/internal/ctest"
)

func TestMain(m *testing.M) { os.Exit(ctest.Main(m)) }

// compileC compiles C sources from testdata against the library (static: libckp.a)
// and returns the program.
func compileC(t *testing.T, static bool, src string, flags ...string) string {
	t.Helper()
	ctest.Require(t, "cc")
	lib := ctest.Build(t)
	exe := filepath.Join(t.TempDir(), strings.TrimSuffix(src, filepath.Ext(src)))
	link := lib.Shared()
	if static {
		link = lib.Static()
	}
	args := append([]string{"-Wall", "-Wextra", "-Werror", "-O1", "-pthread", "-o", exe, filepath.Join("testdata", src)}, flags...)
	ctest.Run(t, ".", "cc", append(args, link...)...)
	return exe
}

// TestAPI runs testdata/api_test.c, which calls every function and provokes every
// status code, linked against the shared and the static library.
func TestAPI(t *testing.T) {
	for _, link := range []string{"shared", "static"} {
		t.Run(link, func(t *testing.T) {
			exe := compileC(t, link == "static", "api_test.c", "-std=c11")
			cmd := exec.Command(exe, t.TempDir())
			// Made-up keys, for an S3 server that does not answer.
			cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=ckp-test", "AWS_SECRET_ACCESS_KEY=ckp-test-secret")
			out, err := cmd.CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if err != nil || !strings.HasSuffix(last, "checks, 0 failed") {
				var fails []string
				for _, l := range lines {
					if !strings.HasPrefix(l, "ok ") {
						fails = append(fails, l)
					}
				}
				t.Fatalf("api_test: %v\n%s", err, strings.Join(fails, "\n"))
			}
			t.Log(last)
		})
	}
}

// TestThreads: many threads at once, and a close under them, return documented
// statuses and never crash.
func TestThreads(t *testing.T) {
	exe := compileC(t, false, "threads_test.c", "-std=c11")
	if out, err := exec.Command(exe, t.TempDir()).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("threads_test: %v\n%s", err, out)
	}
}

// TestHeaderStrict: ckp_util.h compiles as strict C89 and C11 with every warning an
// error, and as C++ (header_test.cpp runs against the shared library).
func TestHeaderStrict(t *testing.T) {
	ctest.Require(t, "cc")
	dir := t.TempDir()
	src := filepath.Join(dir, "h.c")
	if err := os.WriteFile(src, []byte("#include \"ckp_util.h\"\nint f(void) { return ckpSaveAll((CheckpointFile)0); }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, std := range []string{"-std=c89", "-std=c11"} {
		ctest.Run(t, ".", "cc", std, "-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I", ".", src)
	}
	t.Run("c++", func(t *testing.T) {
		ctest.Require(t, "c++")
		lib := ctest.Build(t)
		exe := filepath.Join(t.TempDir(), "header_test")
		ctest.Run(t, ".", "c++", append([]string{"-std=c++11", "-Wall", "-Wextra", "-Werror", "-o", exe,
			filepath.Join("testdata", "header_test.cpp")}, lib.Shared()...)...)
		if out := ctest.Run(t, ".", exe, t.TempDir()); strings.TrimSpace(out) != "ok" {
			t.Fatalf("header_test: %s", out)
		}
	})
}

// TestHeaderMatchesLibrary: the functions ckp_util.h declares are exactly the ckp*
// functions libckp.so exports, each with the parameter count of Go's export.
func TestHeaderMatchesLibrary(t *testing.T) {
	ctest.Require(t, "cc", "nm")
	lib := ctest.Build(t)
	h, err := os.ReadFile("ckp_util.h")
	if err != nil {
		t.Fatal(err)
	}
	decl := regexp.MustCompile(`(?m)^[A-Za-z_][A-Za-z_ ]*[ *](ckp[A-Z][A-Za-z]*)\(([^)]*)\);`)
	params := map[string]int{}
	for _, m := range decl.FindAllStringSubmatch(strings.ReplaceAll(string(h), "\n                ", " "), -1) {
		params[m[1]] = countParams(m[2])
	}
	want := []string{"ckpClose", "ckpFlush", "ckpJobLife", "ckpJobVersion", "ckpLastError", "ckpLocate", "ckpNewest", "ckpOpen",
		"ckpRegister", "ckpRestore", "ckpRestoreAll", "ckpRestoreJob", "ckpSave", "ckpSaveAll", "ckpStrerror",
		"ckpSync", "ckpUnregister", "ckpVersions"}
	var declared []string
	for name := range params {
		declared = append(declared, name)
	}
	slices.Sort(declared)
	if !slices.Equal(declared, want) {
		t.Fatalf("ckp_util.h declares %v, want %v", declared, want)
	}

	out := ctest.Run(t, ".", "nm", "-D", "--defined-only", filepath.Join(lib.Dir, "libckp.so"))
	var exported []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[1] == "T" && strings.HasPrefix(f[2], "ckp") {
			exported = append(exported, f[2])
		}
	}
	slices.Sort(exported)
	if !slices.Equal(exported, want) {
		t.Fatalf("libckp.so exports %v, ckp_util.h declares %v", exported, want)
	}

	// Go writes its own header of the exports beside the library: same parameter counts.
	gen, err := os.ReadFile(filepath.Join(lib.Dir, "libckp.h"))
	if err != nil {
		t.Fatal(err)
	}
	ext := regexp.MustCompile(`(?m)^extern \S+ (ckp[A-Za-z]*)\(([^)]*)\);`)
	n := 0
	for _, m := range ext.FindAllStringSubmatch(string(gen), -1) {
		n++
		if got := countParams(m[2]); got != params[m[1]] {
			t.Errorf("%s: Go exports %d parameters, ckp_util.h declares %d", m[1], got, params[m[1]])
		}
	}
	if n != len(want)-2 { // ckpStrerror and ckpLastError are written in C
		t.Errorf("Go exports %d functions, want %d", n, len(want)-2)
	}
}

// TestOptionKeysDocumented: ckp_util.h documents every key ckpOpen knows, and the
// Fortran module binds every function it declares.
func TestOptionKeysDocumented(t *testing.T) {
	h, err := os.ReadFile("ckp_util.h")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range optionKeys {
		if !regexp.MustCompile(`(?m)^ \*     (.*[ ,])?` + k.name + `=`).Match(h) {
			t.Errorf("ckp_util.h does not document the option %s=", k.name)
		}
	}
	f90, err := os.ReadFile(filepath.Join("fortran", "ckp_util.f90"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^[A-Za-z_][A-Za-z_ ]*[ *](ckp[A-Z][A-Za-z]*)\(`).FindAllSubmatch(h, -1) {
		name := string(m[1])
		if !strings.Contains(string(f90), "name='"+name+"'") || !strings.Contains(string(f90), "public :: ") ||
			!regexp.MustCompile(`(?m)^  public :: .*\b`+name+`\b`).Match(f90) {
			t.Errorf("the Fortran module does not bind and export %s", name)
		}
	}
}

func countParams(list string) int {
	list = strings.TrimSpace(list)
	if list == "" || list == "void" {
		return 0
	}
	return strings.Count(list, ",") + 1
}

// TestFortranModule: every call of the ckp_util module, from gfortran.
func TestFortranModule(t *testing.T) {
	ctest.Require(t, "cc", "gfortran")
	lib := ctest.Build(t)
	dir := t.TempDir()
	exe := filepath.Join(dir, "api_test")
	flags := []string{"-std=f2008", "-Wall", "-Wextra", "-Werror", "-J", dir}
	ctest.Run(t, ".", "gfortran", append(flags, "-c", lib.Fortran, "-o", filepath.Join(dir, "ckp_util.o"))...)
	ctest.Run(t, ".", "gfortran", append(flags, "-o", exe, filepath.Join("testdata", "api_test.f90"),
		filepath.Join(dir, "ckp_util.o"), "-L", lib.Dir, "-lckp", "-Wl,-rpath,"+lib.Dir)...)
	if out := ctest.Run(t, ".", exe, t.TempDir()); strings.TrimSpace(out) != "ok" {
		t.Fatalf("api_test.f90:\n%s", out)
	}
}

// TestInstall: install.sh installs the libraries, the header, the Fortran module and
// two pkg-config files, with which a C program builds in one line, shared or static.
func TestInstall(t *testing.T) {
	ctest.Require(t, "cc", "pkg-config")
	ctest.Build(t) // fills the build cache install.sh uses
	prefix := filepath.Join(t.TempDir(), "prefix")
	ctest.Run(t, ".", "bash", "install.sh", prefix)
	for _, f := range []string{"lib/libckp.so", "lib/libckp.a", "include/ckp_util.h", "include/ckp_util.f90",
		"lib/pkgconfig/ckp.pc", "lib/pkgconfig/ckp-static.pc", "lib/cmake/ckp/ckpConfig.cmake",
		"lib/cmake/ckp/ckpConfigVersion.cmake"} {
		if _, err := os.Stat(filepath.Join(prefix, f)); err != nil {
			t.Error(err)
		}
	}
	// cgo's own header (libckp.h: handles as uintptr_t, no ckpLastError) is nowhere
	// a user would pick it up: ckp_util.h is the only header.
	filepath.WalkDir(prefix, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".h") && d.Name() != "ckp_util.h" {
			t.Errorf("install.sh left %s", p)
		}
		return err
	})
	heat, err := filepath.Abs(filepath.Join("..", "examples", "c", "heat.c"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range []string{"ckp", "ckp-static"} {
		exe := filepath.Join(t.TempDir(), "heat")
		// The one line a C project writes.
		line := "cc -O2 -o " + exe + " " + heat + " $(pkg-config --cflags --libs " + pc + ")"
		cmd := exec.Command("sh", "-c", line)
		cmd.Env = append(os.Environ(), "PKG_CONFIG_PATH="+filepath.Join(prefix, "lib", "pkgconfig"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		out := ctest.Run(t, ".", exe, "-ckpt", filepath.Join(t.TempDir(), "h.ckp"), "-n", "32", "-steps", "20", "-every", "10")
		if !strings.Contains(out, "done: step 20,") {
			t.Fatalf("%s built with %s said:\n%s", heat, pc, out)
		}
	}
}
