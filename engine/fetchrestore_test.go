package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ckp-go/ckp/internal/pattern"
	"github.com/ckp-go/ckp/store"
)

// Restores of versions that only the store holds (fetchrestore.go).

// fetchSizes are the regions of these tests: one fetched in several pieces of
// parallel GETs, one small.
var fetchSizes = []int{20<<20 + 123, 5000}

// storeWithVersions saves versions 1..n of regions r0, r1 (fetchSizes) through a
// remote tier on a directory store at root and closes the file: what a node that
// died left in the store.
func storeWithVersions(t *testing.T, root string, n int) store.Store {
	t.Helper()
	st, err := store.Dir(root)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(filepath.Join(t.TempDir(), "old.ckp"), &Options{Remote: &Remote{Store: st}})
	if err != nil {
		t.Fatal(err)
	}
	regions := newNode(t, f, 0)
	for v := 1; v <= n; v++ {
		for i, r := range regions {
			pattern.Fill(r, i, v)
		}
		if err := f.SaveAll(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return st
}

// newNode registers regions r0, r1 of fetchSizes on f, each filled with fill.
func newNode(t *testing.T, f *File, fill byte) [][]byte {
	t.Helper()
	var regions [][]byte
	for i, n := range fetchSizes {
		r := bytes.Repeat([]byte{fill}, n)
		if _, err := f.Register([]string{"r0", "r1"}[i], r); err != nil {
			t.Fatal(err)
		}
		regions = append(regions, r)
	}
	return regions
}

// damageStored flips a byte at off of the data object of version v of the checkpoint
// called name in the directory store at root.
func damageStored(t *testing.T, st store.Store, root, name string, v int, off int64) {
	t.Helper()
	svs, err := StoreVersions(context.Background(), st, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, sv := range svs {
		if sv.Name == name && sv.Version == v {
			p := filepath.Join(root, filepath.FromSlash(sv.Objects[0]))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[off] ^= 0xff
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("version %d of %q is not in the store", v, name)
}

// TestFetchRestoreLeavesRegionsOnFailure: a restore on a new node (RestoreAll of an
// absolute version, which has no fallback, or RestoreJob) whose store copy turns out
// damaged fails with ErrRemote wrapping ErrCorrupt and writes no byte of any region
// (the other checkpoint's version checked out, and came in at the same time), and the
// local file is as before: nothing added, no space lost; once the store's copy is
// whole again, the same restore works.
func TestFetchRestoreLeavesRegionsOnFailure(t *testing.T) {
	restores := map[string]func(f *File) error{
		"RestoreAll": func(f *File) error { return f.RestoreAll(2) },
		"RestoreJob": func(f *File) error { _, err := f.RestoreJob(context.Background()); return err },
	}
	for _, tc := range []struct {
		name, restore string
		off           int64
	}{
		{"r0", "RestoreAll", 7<<20 + 5}, // in the second of r0's three ranged GETs
		{"r1", "RestoreAll", 17},
		{"r0", "RestoreJob", 7<<20 + 5},
	} {
		t.Run(tc.restore+"/"+tc.name, func(t *testing.T) {
			restore := restores[tc.restore]
			root := t.TempDir()
			st := storeWithVersions(t, root, 2)
			damageStored(t, st, root, tc.name, 2, tc.off)
			path := filepath.Join(t.TempDir(), "new.ckp")
			f, err := Open(path, &Options{Remote: &Remote{Store: st}})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			regions := newNode(t, f, 0xa5)
			f.mu.Lock()
			before := f.alloc.end
			f.mu.Unlock()
			err = restore(f)
			if !errors.Is(err, ErrRemote) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s of a damaged store copy = %v, want ErrRemote wrapping ErrCorrupt", tc.restore, err)
			}
			for i, r := range regions {
				for j, c := range r {
					if c != 0xa5 {
						t.Fatalf("r%d: byte %d was written by the failed restore", i, j)
					}
				}
			}
			for _, name := range []string{"r0", "r1"} {
				if vs, _ := f.VersionsOf(name); len(vs) != 0 {
					t.Fatalf("%s: the failed restore left versions %+v", name, vs)
				}
			}
			f.mu.Lock()
			after := f.alloc.end
			f.mu.Unlock()
			if after != before {
				t.Fatalf("the data file's frontier moved from %d to %d: the failed fetch kept its slots", before, after)
			}
			damageStored(t, st, root, tc.name, 2, tc.off) // whole again
			if err := restore(f); err != nil {
				t.Fatal(err)
			}
			for i, r := range regions {
				if err := pattern.Check(r, i, 2); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestFetchRestoreJobKeeps: RestoreJob on a new node brings the job's restart point
// into the local file, appended to the index as a save appends (the index file is not
// replaced), with the store's numbers, hashes and times; the next save follows them. A
// restore of an older version from the store keeps nothing and does not move the
// numbering back.
func TestFetchRestoreJobKeeps(t *testing.T) {
	root := t.TempDir()
	st := storeWithVersions(t, root, 3)
	want, err := StoreVersions(context.Background(), st, 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "new.ckp")
	f, err := Open(path, &Options{KeepVersions: 2, Remote: &Remote{Store: st}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	regions := newNode(t, f, 0)
	before := inode(t, path+".idx")
	if v, err := f.RestoreJob(context.Background()); err != nil || v != 3 {
		t.Fatalf("RestoreJob = %d, %v; want 3", v, err)
	}
	if inode(t, path+".idx") != before {
		t.Fatal("RestoreJob replaced the index file: versions of checkpoints the file never had come in by an append")
	}
	for i, name := range []string{"r0", "r1"} {
		if err := pattern.Check(regions[i], i, 3); err != nil {
			t.Fatal(err)
		}
		vs, _ := f.VersionsOf(name)
		if len(vs) != 1 || vs[0].Version != 3 {
			t.Fatalf("%s: versions %+v after the restore, want [3]", name, vs)
		}
		for _, sv := range want {
			if sv.Name == name && sv.Version == 3 && (vs[0].Hash != sv.Hash || !vs[0].Saved.Equal(sv.Saved)) {
				t.Fatalf("%s@3: hash %x, time %v; the store's: %x, %v", name, vs[0].Hash, vs[0].Saved, sv.Hash, sv.Saved)
			}
		}
	}
	if err := f.RestoreAll(2); err != nil { // only in the store
		t.Fatal(err)
	}
	if vs, _ := f.VersionsOf("r0"); len(vs) != 1 || vs[0].Version != 3 {
		t.Fatalf("versions %+v after restoring version 2 from the store, want [3]", vs)
	}
	if err := f.SaveAll(); err != nil {
		t.Fatal(err)
	}
	if vs, _ := f.VersionsOf("r0"); len(vs) != 2 || vs[1].Version != 4 {
		t.Fatalf("versions %+v after a save, want [3 4]", vs)
	}
	// The file reopens with the imported version, and it reads back.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c, err := g.Register("r1", regions[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Restore(3); err != nil {
		t.Fatal(err)
	}
	if err := pattern.Check(regions[1], 1, 3); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestFetchRestoreDurability: a version RestoreJob brings in on a new node is published
// like a save under SyncNone, whatever the policy: no durable point of its own (the
// store holds it durably), covered by the policy's next one. After an OS crash before
// that point, its transaction may be lost and recovery drops it, taking nothing else
// with it; after the durable point it survives.
func TestFetchRestoreDurability(t *testing.T) {
	root := t.TempDir()
	st := storeWithVersions(t, root, 3)
	boot, other := [16]byte{1}, [16]byte{2}
	path := filepath.Join(t.TempDir(), "new.ckp")
	f, err := Open(path, &Options{Sync: SyncAlways, bootID: &boot, Remote: &Remote{Store: st}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	regions := newNode(t, f, 0)
	if _, err := f.RestoreJob(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := durableFlags(t, path); got != "S." {
		t.Fatalf("durable points after the restore %q, want %q (S session, . not durable)", got, "S.")
	}
	// A crash now: the imported slot's pages never reached the disk.
	lost := filepath.Join(t.TempDir(), "lost.ckp")
	damageCopy(t, path, lost)
	vs, _ := f.VersionsOf("r0")
	b, err := os.ReadFile(lost)
	if err != nil {
		t.Fatal(err)
	}
	b[vs[0].Offset+4096] ^= 0xff
	if err := os.WriteFile(lost, b, 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := Open(lost, &Options{bootID: &other})
	if err != nil {
		t.Fatal(err)
	}
	if r := g.Recovered(); r.DroppedTxns != 1 {
		t.Fatalf("after a crash that lost the import: %+v, want its transaction dropped", r)
	}
	if vs, _ := g.VersionsOf("r0"); len(vs) != 0 {
		t.Fatalf("after a crash that lost the import: versions %+v", vs)
	}
	g.Close()

	// The next durable point (a save under SyncAlways) writes the import to the disk.
	// (That save's commit claims nothing: the transaction before it was not durable
	// when it was published. The save after it claims both.)
	for i, r := range regions {
		pattern.Fill(r, i, 4)
	}
	if err := f.SaveAll(); err != nil {
		t.Fatal(err)
	}
	if got := durableFlags(t, path); got != "S.." {
		t.Fatalf("durable points after a save %q, want %q", got, "S..")
	}
	kept := filepath.Join(t.TempDir(), "kept.ckp")
	damageCopy(t, path, kept)
	g, err = Open(kept, &Options{bootID: &other})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if r := g.Recovered(); r.DroppedTxns != 0 || r.Verified != 4 {
		t.Fatalf("after a crash past the durable point: %+v, want the import and the save checked, nothing dropped", r)
	}
	c, err := g.Register("r0", regions[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Restore(3); err != nil {
		t.Fatal(err)
	}
	if err := pattern.Check(regions[0], 0, 3); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveAll(); err != nil {
		t.Fatal(err)
	}
	if got := durableFlags(t, path); got != "S..D" {
		t.Fatalf("durable points after a second save %q, want %q", got, "S..D")
	}
}

// busyProbe counts the Gets of data objects (with all, of every object), and those
// while the File it watches counted no large save or restore.
type busyProbe struct {
	store.Store
	all        bool
	f          atomic.Pointer[File]
	gets, idle atomic.Int32
}

func (s *busyProbe) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if f := s.f.Load(); f != nil && (s.all || strings.HasPrefix(key, "d/")) {
		s.gets.Add(1)
		if f.busy.Load() == 0 {
			s.idle.Add(1)
		}
	}
	return s.Store.Get(ctx, key, off, n)
}

// TestFetchRestoreBusy: a large restore from the store counts as a large save while
// it fetches (docs/REMOTE.md, "Fetching"): every GET of its data runs while uploads
// and the pre-faulter leave the cores to it.
func TestFetchRestoreBusy(t *testing.T) {
	if g, i := restoreProbed(t, false); g == 0 || i > 0 {
		t.Fatalf("%d GETs of data, %d of them while the File was not busy", g, i)
	}
}

// TestRestoreFromStoreLeavesTheCores: a large restore that goes to the store counts as
// a large save from its start, so the pre-faulter (started by Register) and the uploads
// leave it the cores while it waits for the store's answers too, not only while it
// fetches: every request of the restore finds it marked.
func TestRestoreFromStoreLeavesTheCores(t *testing.T) {
	if n, idle := restoreProbed(t, true); n < 3 || idle > 0 {
		t.Fatalf("%d of the restore's %d requests found it not marked as a large save", idle, n)
	}
}

// restoreProbed restores, on a new node, the newest of two versions that only the
// store holds, through a busyProbe (with all: counting every GET, not only those of
// data), checks the regions, and returns what the probe counted.
func restoreProbed(t *testing.T, all bool) (gets, idle int32) {
	t.Helper()
	probe := &busyProbe{Store: storeWithVersions(t, t.TempDir(), 2), all: all}
	f, err := Open(filepath.Join(t.TempDir(), "new.ckp"), &Options{Remote: &Remote{Store: probe}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	regions := newNode(t, f, 0)
	probe.f.Store(f)
	if err := f.RestoreAll(0); err != nil {
		t.Fatal(err)
	}
	probe.f.Store(nil)
	for i, r := range regions {
		if err := pattern.Check(r, i, 2); err != nil {
			t.Fatal(err)
		}
	}
	return probe.gets.Load(), probe.idle.Load()
}
