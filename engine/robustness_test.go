package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Regression tests for defects found by an adversarial review: each failed before its
// fix.

// knownErr reports whether err wraps one of the engine's errors or an operating-system
// error, as errors.go promises for every error a method returns.
func knownErr(err error) bool {
	for _, s := range []error{ErrInvalid, ErrNotFound, ErrExists, ErrVersion, ErrSize, ErrClosed, ErrLocked, ErrCorrupt, ErrFull} {
		if errors.Is(err, s) {
			return true
		}
	}
	var errno syscall.Errno
	return errors.As(err, &errno)
}

// TestMaxSizeOneRule: with a MaxSize that is not a multiple of 2 MiB (nor of the chunk),
// every save that returned nil is there after a reopen with the same options, and the
// save that does not fit fails with ErrFull, losing nothing.
func TestMaxSizeOneRule(t *testing.T) {
	for _, prefault := range []bool{false, true} {
		t.Run(fmt.Sprintf("prefault=%v", prefault), func(t *testing.T) {
			path := apiPath(t)
			opts := &Options{MaxSize: 3_000_000, ChunkSize: 1 << 20, NoPrefault: !prefault}
			f := apiOpen(t, path, opts)
			region := make([]byte, 1<<20)
			c := apiReg(t, f, "r", region)
			failed := limitsSaveUntil(t, c, region, ErrFull)
			if st, err := os.Stat(path); err != nil || st.Size() > opts.MaxSize {
				t.Fatalf("data file is %d bytes (%v), MaxSize %d", st.Size(), err, opts.MaxSize)
			}
			apiNoErr(t, f.Close(), "Close")
			g := apiOpen(t, path, opts)
			if r := g.Recovered(); r.TornTail || r.Invalid != "" || r.DroppedRecords != 0 {
				t.Fatalf("reopen dropped records: %+v", r)
			}
			c = apiReg(t, g, "r", region)
			if n := limitsCheckAll(t, c, region); n != failed-1 {
				t.Fatalf("%d versions after reopen, %d saves returned nil", n, failed-1)
			}
			// With one version kept, two slots suffice: saves go on in the same space.
			apiNoErr(t, g.Close(), "Close")
			path2 := path + "2"
			opts.KeepVersions = 1
			h := apiOpen(t, path2, opts)
			c = apiReg(t, h, "r", region)
			for v := 1; v <= 10; v++ {
				if err := limitsSave(c, region, v); err != nil {
					t.Fatalf("save %d with KeepVersions 1: %v", v, err)
				}
			}
		})
	}
}

// TestErrorsWrapEngineErrors: a MaxSize below the file's size, and a save past
// MaxSize, give errors that wrap the engine's errors.
func TestErrorsWrapEngineErrors(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, &Options{ChunkSize: 1 << 20, NoPrefault: true})
	region := make([]byte, 3<<20)
	c := apiReg(t, f, "r", region)
	apiNoErr(t, c.Save(), "Save")
	apiNoErr(t, f.Close(), "Close")
	_, err := Open(path, &Options{MaxSize: 1 << 20})
	apiWantErr(t, err, ErrInvalid, "Open with MaxSize below the file's size")
	if !strings.Contains(fmt.Sprint(err), "MaxSize") {
		t.Errorf("error does not say why: %v", err)
	}
	g := apiOpen(t, path, &Options{MaxSize: 8 << 20, ChunkSize: 1 << 20, NoPrefault: true})
	c = apiReg(t, g, "r", region)
	err = c.Save()
	apiWantErr(t, err, ErrFull, "save past MaxSize")
	if !knownErr(err) {
		t.Errorf("%v wraps no engine error", err)
	}
	apiNoErr(t, c.Restore(1), "Restore(1) after the failed save")
}

// TestTruncatedEveryMethod calls every exported method on a writer and on a reader
// after the data file, or the index, was truncated to zero underneath them, in a child
// process: none may kill the process or hang, and every error wraps an engine error.
func TestTruncatedEveryMethod(t *testing.T) {
	if mode := os.Getenv("CKP_TRUNC_CHILD"); mode != "" {
		truncChild(mode, os.Getenv("CKP_TRUNC_PATH"))
		return
	}
	for _, which := range []string{"data", "index"} {
		for _, role := range []string{"writer", "reader"} {
			t.Run(which+"/"+role, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "t.ckp")
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTruncatedEveryMethod$", "-test.count=1")
				cmd.Env = append(os.Environ(), "CKP_TRUNC_CHILD="+which+","+role, "CKP_TRUNC_PATH="+path)
				out, err := cmd.CombinedOutput()
				if err != nil || !bytes.Contains(out, []byte("trunc-child-done")) {
					t.Fatalf("child: %v (the last line names the method that killed or hung it)\n%s", err, out)
				}
				for _, l := range strings.Split(string(out), "\n") {
					if strings.HasPrefix(l, "BAD ") {
						t.Error(l)
					}
				}
			})
		}
	}
}

func truncChild(mode, path string) {
	which, role, _ := strings.Cut(mode, ",")
	say := func(what string, err error) {
		if err != nil && !knownErr(err) {
			fmt.Printf("BAD %s: error wraps no engine error: %v\n", what, err)
			return
		}
		fmt.Printf("ok %s: %v\n", what, err)
	}
	regions := [][]byte{make([]byte, 5000), make([]byte, 3<<20)}
	w, err := Open(path, &Options{ChunkSize: 1 << 20})
	if err != nil {
		fmt.Println("setup:", err)
		os.Exit(2)
	}
	for i, r := range regions {
		if _, err := w.Register(fmt.Sprintf("r%d", i), r); err != nil {
			fmt.Println("setup:", err)
			os.Exit(2)
		}
	}
	for v := 1; v <= 3; v++ {
		if err := w.SaveAll(); err != nil {
			fmt.Println("setup:", err)
			os.Exit(2)
		}
	}
	f := w
	if role == "reader" {
		if err := w.Close(); err != nil {
			fmt.Println("setup:", err)
			os.Exit(2)
		}
		if f, err = Open(path, &Options{ReadOnly: true}); err != nil {
			fmt.Println("setup:", err)
			os.Exit(2)
		}
	}
	victim := path
	if which == "index" {
		victim = path + ".idx"
	}
	if err := os.Truncate(victim, 0); err != nil {
		fmt.Println("setup:", err)
		os.Exit(2)
	}
	fmt.Println("truncated", victim)
	_, err = f.Info()
	say("Info", err)
	say("Checkpoints", nil)
	_ = f.Checkpoints()
	_, err = f.VersionsOf("r0")
	say("VersionsOf", err)
	_, _, err = f.ReadVersion("r0", 0)
	say("ReadVersion small", err)
	_, _, err = f.ReadVersion("r1", -1)
	say("ReadVersion large", err)
	_, err = f.Verify(nil)
	say("Verify", err)
	_ = f.Recovered()
	say("Recovered", nil)
	_, _ = f.Path(), f.IndexPath()
	say("Path", nil)
	c, err := f.Locate("r0")
	say("Locate", err)
	if c == nil {
		c, err = f.Register("r0", regions[0])
		say("Register", err)
	}
	if c != nil {
		_ = c.Versions()
		say("Versions", nil)
		_, _ = c.Name(), c.Region()
		say("Restore", c.Restore(0))
		say("Restore(1)", c.Restore(1))
		say("Save", c.Save())
	}
	say("RestoreAll", f.RestoreAll(0))
	say("SaveAll", f.SaveAll())
	say("Sync", f.Sync())
	var x struct{ A, B int64 }
	_, err = RegisterValue(f, "value", &x)
	say("RegisterValue", err)
	_, err = f.Register("new", make([]byte, 100))
	say("Register new", err)
	if c != nil {
		say("Unregister", c.Unregister())
	}
	_, err = WriterActive(path)
	say("WriterActive", err)
	_, err = Repair(path, &RepairOptions{DryRun: true})
	say("Repair dry run", err)
	say("Close", f.Close())
	g, err := Open(path, nil)
	say("Open again", err)
	if g != nil {
		say("Close again", g.Close())
	}
	fmt.Println("trunc-child-done")
}

// TestRepairNeverMixesSaveAlls: a SaveAll that filled its slots but was never published
// (its writer died, or its index was lost) leaves intact trailers whose transaction and
// version numbers the next writer uses again. Repair must not rebuild a SaveAll from
// members of both: RestoreAll(0) after Repair gives every region from the same SaveAll,
// the one that returned.
func TestRepairNeverMixesSaveAlls(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.ckp")
	opts := &Options{Sync: SyncEvery(3), KeepVersions: 3, NoPrefault: true}
	f := apiOpen(t, orig, opts)
	regions := [][]byte{make([]byte, 3000), make([]byte, 3000)}
	for i, r := range regions {
		apiReg(t, f, fmt.Sprintf("r%d", i), r)
	}
	saveAll := func(f *File, step int) {
		t.Helper()
		for i, r := range regions {
			crashFill(r, i, step)
		}
		apiNoErr(t, f.SaveAll(), fmt.Sprintf("SaveAll %d", step))
	}
	for step := 1; step <= 10; step++ {
		saveAll(f, step)
	}
	cp := filepath.Join(dir, "copy.ckp")
	copyFile(t, orig+".idx", cp+".idx") // the index as it was after ten SaveAlls
	saveAll(f, 11)
	copyFile(t, orig, cp) // the data file after an eleventh, unknown to that index
	apiNoErr(t, f.Close(), "Close")

	g := apiOpen(t, cp, opts)
	for i, r := range regions {
		apiReg(t, g, fmt.Sprintf("r%d", i), r)
	}
	saveAll(g, 12) // the SaveAll that returned: it takes the eleventh's numbers
	apiNoErr(t, g.Close(), "Close")
	rep, err := Repair(cp, nil)
	apiNoErr(t, err, "Repair")
	t.Logf("repair: %+v", rep)

	h := apiOpen(t, cp, opts)
	for i, r := range regions {
		apiReg(t, h, fmt.Sprintf("r%d", i), r)
	}
	apiNoErr(t, h.RestoreAll(0), "RestoreAll(0)")
	for i, r := range regions {
		if err := crashCheck(r, i, 12); err != nil {
			t.Errorf("region %d after Repair and RestoreAll(0): %v", i, err)
		}
	}
	// Every version Repair kept belongs with its SaveAll: the regions agree at each.
	vs := h.Checkpoints()
	a, _ := h.VersionsOf(vs[0])
	b, _ := h.VersionsOf(vs[1])
	if len(a) != len(b) {
		t.Fatalf("regions keep %d and %d versions", len(a), len(b))
	}
	for k := range a {
		if a[k].Version != b[k].Version || a[k].Txn != b[k].Txn || a[k].Saved != b[k].Saved {
			t.Fatalf("version %d: regions come from different saves: %+v vs %+v", a[k].Version, a[k], b[k])
		}
	}
}

// TestReadVersionDuringSaves: ReadVersion on a writer while another goroutine saves
// with KeepVersions 1 returns the bytes of a kept version (or ErrVersion for an
// absolute one that was dropped), never ErrCorrupt on a healthy file; so does Verify.
// With differential saves too (deltas whose chains retention pins and releases).
func TestReadVersionDuringSaves(t *testing.T) {
	for _, diff := range []bool{false, true} {
		t.Run(fmt.Sprintf("differential=%v", diff), func(t *testing.T) {
			readDuringSaves(t, diff)
		})
	}
}

func readDuringSaves(t *testing.T, diff bool) {
	f := apiOpen(t, apiPath(t), &Options{KeepVersions: 1, Differential: diff, NoTracking: true})
	region := make([]byte, 256<<10)
	c := apiReg(t, f, "r", region)
	fill, check := crashFill, crashCheck
	if diff {
		fill = func(p []byte, r, v int) { crashFillSparse(p, r, v, v-1) }
		check = crashCheckSparse
	}
	crashFillSparse(region, 0, 1, 0)
	if !diff {
		crashFill(region, 0, 1)
	}
	apiNoErr(t, c.Save(), "Save")
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := 2; !stop.Load(); v++ {
			fill(region, 0, v)
			if err := c.Save(); err != nil {
				t.Errorf("save %d: %v", v, err)
				return
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	reads := 0
	for reads < 300 || time.Now().Before(deadline) {
		if reads >= 5000 {
			break
		}
		reads++
		b, vi, err := f.ReadVersion("r", 0)
		if err != nil {
			t.Fatalf("ReadVersion(0) #%d: %v", reads, err)
		}
		if err := check(b, 0, vi.Version); err != nil {
			t.Fatalf("ReadVersion(0) #%d returned other bytes than version %d: %v", reads, vi.Version, err)
		}
		if b, vi, err := f.ReadVersion("r", max(1, vi.Version-1)); err == nil {
			if err := check(b, 0, vi.Version); err != nil {
				t.Fatalf("ReadVersion(%d): %v", vi.Version, err)
			}
		} else if !errors.Is(err, ErrVersion) {
			t.Fatalf("ReadVersion(absolute): %v", err)
		}
		if reads%50 == 0 {
			rep, err := f.Verify(nil)
			if err != nil || len(rep.Damaged) > 0 {
				t.Fatalf("Verify during saves: %v %+v", err, rep.Damaged)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
}

// TestManyRegions registers 10,000 regions, saves them all twice, reopens and restores:
// a SaveAll of thousands of regions is one transaction that recovery checks in linear
// time, and registration keeps its order without rebuilding the list each time.
func TestManyRegions(t *testing.T) {
	const n = 10000
	path := apiPath(t)
	f := apiOpen(t, path, &Options{KeepVersions: 1})
	regions := make([][]byte, n)
	for i := range regions {
		regions[i] = make([]byte, 16)
		apiReg(t, f, fmt.Sprintf("field-%05d", i), regions[i])
	}
	for step := 1; step <= 2; step++ {
		for i, r := range regions {
			copy(r, fmt.Sprintf("%06d/%06d", i, step))
		}
		apiNoErr(t, f.SaveAll(), "SaveAll")
	}
	// Unregister and register again out of order: SaveAll still covers each once.
	for i := 0; i < n; i += 1000 {
		c, err := f.Locate(fmt.Sprintf("field-%05d", i))
		apiNoErr(t, err, "Locate")
		apiNoErr(t, c.Unregister(), "Unregister")
	}
	for i := n - 1000; i >= 0; i -= 1000 {
		apiReg(t, f, fmt.Sprintf("field-%05d", i), regions[i])
	}
	apiNoErr(t, f.SaveAll(), "SaveAll after re-registering")
	apiNoErr(t, f.Close(), "Close")
	g := apiOpen(t, path, nil)
	if got := len(g.Checkpoints()); got != n {
		t.Fatalf("%d checkpoints after reopen, want %d", got, n)
	}
	for i := range regions {
		clear(regions[i])
		apiReg(t, g, fmt.Sprintf("field-%05d", i), regions[i])
	}
	apiNoErr(t, g.RestoreAll(0), "RestoreAll")
	for i, r := range regions {
		if want := fmt.Sprintf("%06d/%06d", i, 2); string(r[:13]) != want {
			t.Fatalf("region %d holds %q, want %q", i, r[:13], want)
		}
		c, err := g.Locate(fmt.Sprintf("field-%05d", i))
		apiNoErr(t, err, "Locate")
		if vs := c.Versions(); len(vs) != 1 || vs[0].Version != 3 {
			t.Fatalf("region %d: versions %v", i, apiVersionNums(c.Versions()))
		}
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
