package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/storetest"
)

func newDir(t *testing.T) store.Store {
	t.Helper()
	s, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDirConformance(t *testing.T) {
	storetest.Run(t, newDir)
}

func TestDirString(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "dir:"+dir; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestDirOpen(t *testing.T) {
	dir := t.TempDir()
	if _, err := store.Dir(""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Dir(\"\") = %v, want ErrInvalid", err)
	}
	// A missing directory is made.
	s, err := store.Dir(filepath.Join(dir, "new", "sub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new", "sub", "k")); err != nil {
		t.Fatal(err)
	}
	// A file where the directory should be is not a store.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Dir(file); err == nil {
		t.Errorf("Dir of a file succeeded")
	}
}

// TestDirStaleTemp checks that what a writer killed mid-write leaves is invisible and
// harmless, and that CleanTemps removes it once old.
func TestDirStaleTemp(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "run/a", strings.NewReader("aaa"), 3); err != nil {
		t.Fatal(err)
	}
	stale := []string{filepath.Join(dir, "run", ".tmp-123"), filepath.Join(dir, ".tmp-456"), filepath.Join(dir, "other", ".tmp-789")}
	for _, p := range stale {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("half a checkpoint"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, prefix := range []string{"", "run/", ".tmp", "run/.tmp", "other/"} {
		objs, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		want := 0
		if prefix == "" || prefix == "run/" {
			want = 1
		}
		if len(objs) != want {
			t.Fatalf("List(%q) = %+v, want %d object(s)", prefix, objs, want)
		}
	}
	// Writes next to stale files work, and deleting the last object keeps the
	// directory that still holds a stale file.
	if err := s.Create(ctx, "run/b", strings.NewReader("b"), 1); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"run/a", "run/b"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// Fresh temporary files are kept: they may be a writer's in progress.
	if n, err := store.CleanTemps(dir, time.Hour); err != nil || n != 0 {
		t.Fatalf("CleanTemps(hour) = %d, %v; want 0", n, err)
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, p := range stale {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := store.CleanTemps(dir, time.Hour); err != nil || n != len(stale) {
		t.Fatalf("CleanTemps(hour) = %d, %v; want %d", n, err, len(stale))
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want removed", p, err)
		}
	}
}

// TestDirLayout checks that objects are plain files under the directory, no
// temporary file stays behind, and Delete prunes the directories it empties.
func TestDirLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Create(ctx, "a/b/c", strings.NewReader("create"), 6); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a/b/d", strings.NewReader("put"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "a/b/c", strings.NewReader("again"), 5); !errors.Is(err, store.ErrExists) {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "a", "b", "c"))
	if err != nil || string(got) != "create" {
		t.Fatalf("a/b/c on disk = %q, %v", got, err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("a/b holds %d entries, want 2 (no temporary files)", len(entries))
	}
	for _, k := range []string{"a/b/c", "a/b/d"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a/ after deleting every object under it: %v, want removed", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the store's own directory: %v", err)
	}
}

// TestDirKeyConflict checks that a key cannot be both an object and a directory.
func TestDirKeyConflict(t *testing.T) {
	s := newDir(t)
	ctx := t.Context()
	if err := s.Put(ctx, "a/b", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "f", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		op, key string
		f       func(string) error
	}{
		{"Put", "a", func(k string) error { return s.Put(ctx, k, strings.NewReader("y"), 1) }},
		{"Create", "a", func(k string) error { return s.Create(ctx, k, strings.NewReader("y"), 1) }},
		{"Put", "f/g", func(k string) error { return s.Put(ctx, k, strings.NewReader("y"), 1) }},
		{"Create", "f/g/h", func(k string) error { return s.Create(ctx, k, strings.NewReader("y"), 1) }},
	}
	for _, tc := range tests {
		if err := tc.f(tc.key); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s(%q) = %v, want ErrInvalid", tc.op, tc.key, err)
		}
	}
	for _, k := range []string{"a", "f/g"} {
		if _, err := s.Get(ctx, k, 0, -1); !errors.Is(err, store.ErrNotExist) {
			t.Errorf("Get(%q) = %v, want ErrNotExist", k, err)
		}
		if err := s.Delete(ctx, k); err != nil {
			t.Errorf("Delete(%q) = %v", k, err)
		}
	}
	objs, err := s.List(ctx, "")
	if err != nil || len(objs) != 2 {
		t.Fatalf("List = %+v, %v; want a/b and f", objs, err)
	}
}

func TestDirDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores file permissions")
	}
	dir := t.TempDir()
	s, err := store.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	err = s.Put(t.Context(), "k", strings.NewReader("x"), 1)
	if !errors.Is(err, store.ErrDenied) || !store.IsPermanent(err) {
		t.Fatalf("Put into a read-only directory = %v, want ErrDenied", err)
	}
}

// The cross-process Create race: the test binary runs itself as several children,
// each creating the same key with its own bytes.
const (
	raceEnvDir = "CKP_STORE_RACE_DIR"
	raceEnvID  = "CKP_STORE_RACE_ID"
)

func TestDirCreateRaceProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const children = 4
	const rounds = 5
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for round := range rounds {
		cmds := make([]*exec.Cmd, children)
		outs := make([]*bytes.Buffer, children)
		for i := range children {
			cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestDirCreateRaceChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), raceEnvDir+"="+dir, raceEnvID+"="+strconv.Itoa(round*100+i))
			outs[i] = new(bytes.Buffer)
			cmd.Stdout, cmd.Stderr = outs[i], outs[i]
			cmds[i] = cmd
		}
		for _, cmd := range cmds {
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
		}
		winners := []int{}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child %d: %v\n%s", i, err, outs[i])
			}
			out := outs[i].String()
			switch {
			case strings.Contains(out, "RESULT created"):
				winners = append(winners, round*100+i)
			case strings.Contains(out, "RESULT exists"):
			default:
				t.Fatalf("child %d said:\n%s", i, out)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: winners %v, want exactly one", round, winners)
		}
		s, err := store.Dir(dir)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := s.Get(t.Context(), "race/0", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if want := raceBody(winners[0]); !bytes.Equal(got, want) {
			t.Fatalf("round %d: object holds %d bytes, not winner %d's", round, len(got), winners[0])
		}
		if err := s.Delete(t.Context(), "race/0"); err != nil {
			t.Fatal(err)
		}
	}
}

func raceBody(id int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("writer %d;", id)), 10000) }

// TestDirCreateRaceChild is the child of TestDirCreateRaceProcesses; run alone it
// does nothing.
func TestDirCreateRaceChild(t *testing.T) {
	dir := os.Getenv(raceEnvDir)
	if dir == "" {
		t.Skip("the child of TestDirCreateRaceProcesses")
	}
	id, err := strconv.Atoi(os.Getenv(raceEnvID))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	body := raceBody(id)
	err = s.Create(context.Background(), "race/0", bytes.NewReader(body), int64(len(body)))
	switch {
	case err == nil:
		fmt.Println("RESULT created")
	case errors.Is(err, store.ErrExists):
		fmt.Println("RESULT exists")
	default:
		t.Fatal(err)
	}
}
