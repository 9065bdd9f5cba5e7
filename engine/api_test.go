package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
)

// Tests of the public API contract of package engine. Helpers are prefixed with "api".

// apiFill fills b with a deterministic pseudo-random pattern derived from seed. It
// generates 8 bytes per step into an aligned buffer and copies them out, which keeps it
// fast under the race detector.
func apiFill(b []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var buf [512]uint64
	view := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	for off := 0; off < len(b); off += len(view) {
		n := min(len(view), len(b)-off)
		for i := 0; i < (n+7)/8; i++ {
			buf[i] = r.Uint64()
		}
		copy(b[off:off+n], view[:n])
	}
}

// apiPattern returns n bytes of the pattern of seed.
func apiPattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	apiFill(b, seed)
	return b
}

// apiPatterns memoises apiPattern for tests that compare against the same large
// patterns many times (generating them is slow under the race detector). The returned
// slices must not be modified.
type apiPatterns map[[2]uint64][]byte

func (m apiPatterns) get(seed uint64, n int) []byte {
	k := [2]uint64{seed, uint64(n)}
	if b, ok := m[k]; ok {
		return b
	}
	b := apiPattern(seed, n)
	m[k] = b
	return b
}

// apiPath returns the path of a new checkpoint file in a fresh temporary directory.
func apiPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "run.ckp")
}

// apiOpen opens path or fails the test; the File is closed at cleanup if still open.
func apiOpen(t *testing.T, path string, opts *Options) *File {
	t.Helper()
	f, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%q, %+v): %v", path, opts, err)
	}
	if f == nil {
		t.Fatalf("Open(%q) returned a nil File and no error", path)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// apiReg registers region under name or fails the test.
func apiReg(t *testing.T, f *File, name string, region []byte) *Checkpoint {
	t.Helper()
	c, err := f.Register(name, region)
	if err != nil {
		t.Fatalf("Register(%q, %d bytes): %v", name, len(region), err)
	}
	if c == nil {
		t.Fatalf("Register(%q) returned a nil Checkpoint and no error", name)
	}
	return c
}

// apiWantErr reports an error unless errors.Is(err, target).
func apiWantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

// apiNoErr fails the test on err.
func apiNoErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// apiSame reports an error unless got equals want byte for byte.
func apiSame(t *testing.T, got, want []byte, what string) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Errorf("%s: region differs (len %d vs %d, first difference at byte %d)", what, len(got), len(want), i)
	}
}

// apiVersionNums returns the version numbers of vs.
func apiVersionNums(vs []VersionInfo) []int {
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = v.Version
	}
	return out
}

// apiDirNames returns the sorted names in dir.
func apiDirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// apiOnlyPair checks that the directory of path holds exactly path and path.idx.
func apiOnlyPair(t *testing.T, path, when string) {
	t.Helper()
	got := apiDirNames(t, filepath.Dir(path))
	want := []string{filepath.Base(path), filepath.Base(path) + ".idx"}
	if !slices.Equal(got, want) {
		t.Errorf("%s: directory holds %q, want exactly %q", when, got, want)
	}
}

// apiFileState is what must not change when Open refuses a file.
type apiFileState struct {
	exists bool
	data   []byte
	mtime  time.Time
	mode   os.FileMode
}

func apiSnap(t *testing.T, path string) apiFileState {
	t.Helper()
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return apiFileState{}
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return apiFileState{exists: true, data: b, mtime: st.ModTime(), mode: st.Mode()}
}

func apiSameState(t *testing.T, before, after apiFileState, what string) {
	t.Helper()
	switch {
	case before.exists != after.exists:
		t.Errorf("%s: existence changed from %v to %v", what, before.exists, after.exists)
	case !before.exists:
	case !bytes.Equal(before.data, after.data):
		t.Errorf("%s: contents changed (%d bytes before, %d after)", what, len(before.data), len(after.data))
	case !before.mtime.Equal(after.mtime):
		t.Errorf("%s: mtime changed from %v to %v", what, before.mtime, after.mtime)
	case before.mode != after.mode:
		t.Errorf("%s: mode changed from %v to %v", what, before.mode, after.mode)
	}
}

// apiPatchFile overwrites bytes of the file at path at offset off.
func apiPatchFile(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// apiReadAt reads n bytes of the file at path at offset off.
func apiReadAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, n)
	if _, err := fh.ReadAt(b, off); err != nil {
		t.Fatalf("read %s at %d: %v", path, off, err)
	}
	return b
}

// apiCorruptVersion flips one byte of the payload of version info, in the file itself
// (the File's shared mapping sees the change).
func apiCorruptVersion(t *testing.T, path string, info VersionInfo, at int64) {
	t.Helper()
	b := apiReadAt(t, path, info.Offset+at, 1)
	b[0] ^= 0x5a
	apiPatchFile(t, path, info.Offset+at, b)
}

// apiMakePair creates a valid ckp file at path holding two versions of "a" (100 bytes).
func apiMakePair(t *testing.T, path string) {
	t.Helper()
	f, err := Open(path, &Options{ChunkSize: 64 << 10})
	apiNoErr(t, err, "Open")
	a := apiPattern(1, 100)
	c, err := f.Register("a", a)
	apiNoErr(t, err, "Register")
	apiNoErr(t, c.Save(), "Save")
	apiFill(a, 2)
	apiNoErr(t, c.Save(), "Save")
	apiNoErr(t, f.Close(), "Close")
}

// ---------------------------------------------------------------------------------------

func TestAPIFilesOnDisk(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	apiOnlyPair(t, path, "after creating Open")
	for _, p := range []string{path, path + ".idx"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := st.Mode(); m != 0o600 {
			t.Errorf("%s has mode %v, want -rw-------", filepath.Base(p), m)
		}
	}
	a := apiPattern(1, 5000)
	c := apiReg(t, f, "a", a)
	apiNoErr(t, c.Save(), "Save")
	apiNoErr(t, f.SaveAll(), "SaveAll")
	apiNoErr(t, c.Restore(1), "Restore")
	apiNoErr(t, f.Sync(), "Sync")
	apiOnlyPair(t, path, "after saves")
	apiNoErr(t, c.Unregister(), "Unregister")
	apiNoErr(t, f.Close(), "Close")
	apiOnlyPair(t, path, "after Close")

	// Opens that fail create nothing.
	if _, err := Open(path, &Options{KeepVersions: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open with KeepVersions -1: %v", err)
	}
	f = apiOpen(t, path, nil)
	if _, err := Open(path, nil); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	apiOnlyPair(t, path, "after a refused Open")
	ro, err := Open(path, &Options{ReadOnly: true})
	apiNoErr(t, err, "read-only Open")
	apiNoErr(t, ro.Close(), "read-only Close")
	apiNoErr(t, f.Close(), "Close")
	apiOnlyPair(t, path, "after a read-only Open and Close")

	other := filepath.Join(t.TempDir(), "new.ckp")
	if _, err := Open(other, &Options{Sync: SyncEvery(0)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open with SyncEvery(0): %v", err)
	}
	if names := apiDirNames(t, filepath.Dir(other)); len(names) != 0 {
		t.Errorf("Open with invalid options created %q", names)
	}
	if _, err := Open(other, &Options{ReadOnly: true}); err == nil {
		t.Errorf("read-only Open of a missing file succeeded")
	}
	if names := apiDirNames(t, filepath.Dir(other)); len(names) != 0 {
		t.Errorf("read-only Open of a missing file created %q", names)
	}
}

// TestAPINoStrayFilesAfterIndexRewrite saves often under retention, so that the index is
// rewritten (via path.idx.tmp); nothing but the pair may remain at any point we look.
func TestAPINoStrayFilesAfterIndexRewrite(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, &Options{KeepVersions: 1})
	idx0, err := os.Stat(path + ".idx")
	apiNoErr(t, err, "stat index")
	// An unregistered checkpoint's kept version and a long binary name must survive the
	// rewrites too.
	u := apiPattern(3, 300)
	cu := apiReg(t, f, "unregistered", u)
	apiNoErr(t, cu.Save(), "Save")
	apiFill(u, 4)
	apiNoErr(t, cu.Save(), "Save")
	apiNoErr(t, cu.Unregister(), "Unregister")
	long := strings.Repeat("b\x00\xff", 80)
	a := make([]byte, 64)
	b := make([]byte, 100)
	ca := apiReg(t, f, "a", a)
	apiReg(t, f, long, b)
	const n = 2600
	for i := 1; i <= n; i++ {
		binary.LittleEndian.PutUint64(a, uint64(i))
		binary.LittleEndian.PutUint64(b, uint64(i))
		if i%2 == 0 {
			apiNoErr(t, f.SaveAll(), "SaveAll")
		} else {
			apiNoErr(t, ca.Save(), "Save")
		}
		if i%500 == 0 {
			apiOnlyPair(t, path, fmt.Sprintf("after %d saves", i))
		}
	}
	idx1, err := os.Stat(path + ".idx")
	apiNoErr(t, err, "stat index")
	t.Logf("index rewritten during the run: %v", !os.SameFile(idx0, idx1))
	clear(a)
	apiNoErr(t, ca.Restore(0), "Restore(0)")
	if got := binary.LittleEndian.Uint64(a); got != n {
		t.Errorf("restored save %d, want %d", got, n)
	}
	if vs := ca.Versions(); len(vs) != 1 || vs[0].Version != n {
		t.Errorf("versions %v, want [%d]", apiVersionNums(vs), n)
	}
	apiNoErr(t, f.Close(), "Close")
	apiOnlyPair(t, path, "after Close")

	f = apiOpen(t, path, &Options{KeepVersions: 1})
	ca = apiReg(t, f, "a", a)
	cb := apiReg(t, f, long, b)
	cu = apiReg(t, f, "unregistered", u)
	clear(a)
	clear(b)
	clear(u)
	apiNoErr(t, ca.Restore(n), "Restore after reopen")
	if got := binary.LittleEndian.Uint64(a); got != n {
		t.Errorf("after reopen restored save %d of a, want %d", got, n)
	}
	if vs := cb.Versions(); len(vs) != 1 || vs[0].Version != n/2 {
		t.Errorf("long name: versions %v, want [%d]", apiVersionNums(vs), n/2)
	}
	apiNoErr(t, cb.Restore(0), "Restore of the long name after reopen")
	if got := binary.LittleEndian.Uint64(b); got != n {
		t.Errorf("after reopen restored save %d of the long name, want %d", got, n)
	}
	if vs := cu.Versions(); len(vs) != 1 || vs[0].Version != 2 {
		t.Errorf("unregistered checkpoint: versions %v after reopen, want [2]", apiVersionNums(vs))
	}
	apiNoErr(t, cu.Restore(2), "Restore of the unregistered checkpoint after reopen")
	apiSame(t, u, apiPattern(4, 300), "unregistered checkpoint after reopen")
	apiNoErr(t, f.Close(), "Close")
	apiOnlyPair(t, path, "after the second Close")
}

func TestAPIVersionNumbers(t *testing.T) {
	f := apiOpen(t, apiPath(t), nil)
	const size = 777
	region := make([]byte, size)
	c := apiReg(t, f, "v", region)

	// No versions yet: every number is ErrVersion and the region is untouched.
	apiFill(region, 99)
	before := slices.Clone(region)
	for _, v := range []int{0, 1, -1, 2, math.MaxInt, math.MinInt} {
		apiWantErr(t, c.Restore(v), ErrVersion, fmt.Sprintf("Restore(%d) with no versions", v))
		apiSame(t, region, before, fmt.Sprintf("region after Restore(%d) with no versions", v))
	}
	apiWantErr(t, f.RestoreAll(0), ErrVersion, "RestoreAll(0) with no versions")
	apiSame(t, region, before, "region after RestoreAll(0) with no versions")
	if vs := c.Versions(); len(vs) != 0 {
		t.Errorf("Versions with no saves: %v", vs)
	}

	const n = 4
	for v := 1; v <= n; v++ {
		apiFill(region, uint64(v))
		apiNoErr(t, c.Save(), "Save")
	}
	if got := apiVersionNums(c.Versions()); !slices.Equal(got, []int{1, 2, 3, 4}) {
		t.Fatalf("Versions %v, want [1 2 3 4]", got)
	}
	tests := []struct {
		v    int
		want int // expected version, 0: ErrVersion
	}{
		{1, 1}, {2, 2}, {3, 3}, {4, 4},
		{0, 4}, {-1, 3}, {-2, 2}, {-3, 1},
		{5, 0}, {6, 0}, {-4, 0}, {-5, 0}, {1000, 0}, {-1000, 0},
		{math.MaxInt, 0}, {math.MinInt, 0}, {math.MaxInt32 + 1, 0},
	}
	for _, tt := range tests {
		apiFill(region, 12345)
		before := slices.Clone(region)
		err := c.Restore(tt.v)
		if tt.want == 0 {
			apiWantErr(t, err, ErrVersion, fmt.Sprintf("Restore(%d)", tt.v))
			apiSame(t, region, before, fmt.Sprintf("region after failed Restore(%d)", tt.v))
			continue
		}
		if err != nil {
			t.Errorf("Restore(%d): %v", tt.v, err)
			continue
		}
		apiSame(t, region, apiPattern(uint64(tt.want), size), fmt.Sprintf("Restore(%d)", tt.v))
	}
	// Same numbers through RestoreAll.
	for _, tt := range tests {
		apiFill(region, 12345)
		before := slices.Clone(region)
		err := f.RestoreAll(tt.v)
		if tt.want == 0 {
			apiWantErr(t, err, ErrVersion, fmt.Sprintf("RestoreAll(%d)", tt.v))
			apiSame(t, region, before, fmt.Sprintf("region after failed RestoreAll(%d)", tt.v))
			continue
		}
		if err != nil {
			t.Errorf("RestoreAll(%d): %v", tt.v, err)
			continue
		}
		apiSame(t, region, apiPattern(uint64(tt.want), size), fmt.Sprintf("RestoreAll(%d)", tt.v))
	}
}

func TestAPIVersionInfo(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	a := make([]byte, 5000)
	b := make([]byte, 2<<20+5) // three hash blocks
	ca := apiReg(t, f, "a", a)
	cb := apiReg(t, f, "b", b)
	want := map[string][][]byte{}
	t0 := time.Now()
	// SaveAll, Save(a), SaveAll.
	for step := 0; step < 3; step++ {
		apiFill(a, uint64(10+step))
		apiFill(b, uint64(20+step))
		if step == 1 {
			apiNoErr(t, ca.Save(), "Save")
			want["a"] = append(want["a"], slices.Clone(a))
			continue
		}
		apiNoErr(t, f.SaveAll(), "SaveAll")
		want["a"] = append(want["a"], slices.Clone(a))
		want["b"] = append(want["b"], slices.Clone(b))
	}
	t1 := time.Now()
	va, vb := ca.Versions(), cb.Versions()
	if got := apiVersionNums(va); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("a versions %v, want [1 2 3]", got)
	}
	if got := apiVersionNums(vb); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("b versions %v, want [1 2]", got)
	}
	check := func(name string, vs []VersionInfo) {
		for i, v := range vs {
			w := want[name][i]
			if v.Size != int64(len(w)) {
				t.Errorf("%s v%d: Size %d, want %d", name, v.Version, v.Size, len(w))
			}
			if h := crc.Payload(w); v.Hash != h {
				t.Errorf("%s v%d: Hash %#x, want %#x", name, v.Version, v.Hash, h)
			}
			if len(w) <= crc.BlockSize && v.Hash != xxhash.Sum64(w) {
				t.Errorf("%s v%d: Hash %#x is not the xxhash64 of the payload", name, v.Version, v.Hash)
			}
			if v.Saved.Before(t0.Add(-time.Second)) || v.Saved.After(t1.Add(time.Second)) {
				t.Errorf("%s v%d: Saved %v, not between %v and %v", name, v.Version, v.Saved, t0, t1)
			}
			if i > 0 && v.Saved.Before(vs[i-1].Saved) {
				t.Errorf("%s v%d: Saved %v before the previous version's %v", name, v.Version, v.Saved, vs[i-1].Saved)
			}
			if i > 0 && v.Txn <= vs[i-1].Txn {
				t.Errorf("%s v%d: Txn %d does not increase (previous %d)", name, v.Version, v.Txn, vs[i-1].Txn)
			}
			if v.Offset <= 0 {
				t.Errorf("%s v%d: Offset %d", name, v.Version, v.Offset)
				continue
			}
			apiSame(t, apiReadAt(t, path, v.Offset, len(w)), w, fmt.Sprintf("%s v%d: data file bytes at Offset", name, v.Version))
		}
	}
	check("a", va)
	check("b", vb)
	// One transaction per SaveAll, shared by its versions; Save(a) has its own.
	if va[0].Txn != vb[0].Txn || va[2].Txn != vb[1].Txn {
		t.Errorf("SaveAll versions do not share their Txn: a %d,%d b %d,%d", va[0].Txn, va[2].Txn, vb[0].Txn, vb[1].Txn)
	}
	if va[1].Txn == vb[0].Txn || va[1].Txn == vb[1].Txn {
		t.Errorf("Save(a) shares Txn %d with a SaveAll", va[1].Txn)
	}
	// Kept versions do not overlap in the data file.
	type span struct{ lo, hi int64 }
	var spans []span
	for _, v := range append(slices.Clone(va), vb...) {
		spans = append(spans, span{v.Offset, v.Offset + v.Size})
	}
	for i := range spans {
		for j := i + 1; j < len(spans); j++ {
			if spans[i].lo < spans[j].hi && spans[j].lo < spans[i].hi {
				t.Errorf("versions overlap in the data file: %v and %v", spans[i], spans[j])
			}
		}
	}
	// The info survives a reopen.
	apiNoErr(t, f.Close(), "Close")
	f = apiOpen(t, path, nil)
	ca = apiReg(t, f, "a", a)
	if got := ca.Versions(); !slices.EqualFunc(got, va, func(x, y VersionInfo) bool {
		return x.Version == y.Version && x.Size == y.Size && x.Hash == y.Hash && x.Offset == y.Offset &&
			x.Txn == y.Txn && x.Saved.Equal(y.Saved)
	}) {
		t.Errorf("versions after reopen\n%+v\nwant\n%+v", got, va)
	}
}

func TestAPISaveAllRestoreAll(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	regions := map[string][]byte{"x": make([]byte, 1000), "y": make([]byte, 70000), "z": make([]byte, 3)}
	cs := map[string]*Checkpoint{}
	for _, n := range []string{"x", "y", "z"} {
		cs[n] = apiReg(t, f, n, regions[n])
	}
	seed := func(name string, v int) uint64 { return uint64(v)*1000 + uint64(name[0]) }
	const n = 3
	for v := 1; v <= n; v++ {
		for name, r := range regions {
			apiFill(r, seed(name, v))
		}
		apiNoErr(t, f.SaveAll(), "SaveAll")
	}
	for name, c := range cs {
		if got := apiVersionNums(c.Versions()); !slices.Equal(got, []int{1, 2, 3}) {
			t.Errorf("%s: versions %v after 3 SaveAll", name, got)
		}
	}
	for _, v := range []int{1, 2, 3, 0, -1, -2} {
		want := v
		if v <= 0 {
			want = n + v
		}
		for _, r := range regions {
			apiFill(r, 7)
		}
		apiNoErr(t, f.RestoreAll(v), fmt.Sprintf("RestoreAll(%d)", v))
		for name, r := range regions {
			apiSame(t, r, apiPattern(seed(name, want), len(r)), fmt.Sprintf("%s after RestoreAll(%d)", name, v))
		}
	}
	// SaveAll and RestoreAll with nothing registered do nothing and succeed.
	for _, c := range cs {
		apiNoErr(t, c.Unregister(), "Unregister")
	}
	apiNoErr(t, f.SaveAll(), "SaveAll with nothing registered")
	apiNoErr(t, f.RestoreAll(0), "RestoreAll with nothing registered")
	c := apiReg(t, f, "x", regions["x"])
	if got := apiVersionNums(c.Versions()); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("x: versions %v after an empty SaveAll", got)
	}
}

// TestAPIRestoreAllTouchesNothingOnError: when one checkpoint's version cannot be
// restored, RestoreAll leaves every region unchanged, whatever the order of the
// checkpoints.
func TestAPIRestoreAllTouchesNothingOnError(t *testing.T) {
	const sizeA, sizeB = 3000, 2<<20 + 3
	type setup struct {
		name string
		// prepare builds a file where "first" and "second" (registered in that order) are
		// registered, and returns the version to restore and the expected error.
		prepare func(t *testing.T, path string, first, second []byte) (*File, int, error)
	}
	fewer := func(badFirst bool) func(t *testing.T, path string, first, second []byte) (*File, int, error) {
		return func(t *testing.T, path string, first, second []byte) (*File, int, error) {
			f := apiOpen(t, path, nil)
			c1 := apiReg(t, f, "first", first)
			c2 := apiReg(t, f, "second", second)
			good := c1 // gets two more versions than the other
			if badFirst {
				good = c2
			}
			apiNoErr(t, f.SaveAll(), "SaveAll")
			apiNoErr(t, good.Save(), "Save")
			apiNoErr(t, good.Save(), "Save")
			return f, 3, ErrVersion
		}
	}
	fewerRel := func(t *testing.T, path string, first, second []byte) (*File, int, error) {
		f, _, err := fewer(false)(t, path, first, second)
		return f, -2, err
	}
	size := func(badFirst bool) func(t *testing.T, path string, first, second []byte) (*File, int, error) {
		return func(t *testing.T, path string, first, second []byte) (*File, int, error) {
			f, err := Open(path, nil)
			apiNoErr(t, err, "Open")
			bad := "first"
			if !badFirst {
				bad = "second"
			}
			// Save the bad one with another size, then register it with the real size.
			for _, n := range []string{"first", "second"} {
				r := first
				if n == "second" {
					r = second
				}
				if n == bad {
					r = make([]byte, len(r)+8)
				}
				c := apiReg(t, f, n, r)
				apiNoErr(t, c.Save(), "Save")
			}
			apiNoErr(t, f.Close(), "Close")
			f = apiOpen(t, path, nil)
			apiReg(t, f, "first", first)
			apiReg(t, f, "second", second)
			return f, 1, ErrSize
		}
	}
	corrupt := func(badFirst bool) func(t *testing.T, path string, first, second []byte) (*File, int, error) {
		return func(t *testing.T, path string, first, second []byte) (*File, int, error) {
			f := apiOpen(t, path, nil)
			c1 := apiReg(t, f, "first", first)
			c2 := apiReg(t, f, "second", second)
			apiNoErr(t, f.SaveAll(), "SaveAll")
			bad := c2
			if badFirst {
				bad = c1
			}
			info := bad.Versions()[0]
			apiCorruptVersion(t, path, info, info.Size-1)
			return f, 1, ErrCorrupt
		}
	}
	setups := []setup{
		{"fewer-versions-second", fewer(false)},
		{"fewer-versions-first", fewer(true)},
		{"fewer-versions-relative", fewerRel},
		{"size-second", size(false)},
		{"size-first", size(true)},
		{"corrupt-second", corrupt(false)},
		{"corrupt-first", corrupt(true)},
	}
	for _, s := range setups {
		for _, big := range []bool{false, true} {
			name := s.name
			if big {
				name += "/multi-block"
			}
			t.Run(name, func(t *testing.T) {
				path := apiPath(t)
				n1, n2 := sizeA, sizeA+1
				if big {
					n1, n2 = sizeB, sizeB+4096
				}
				first, second := apiPattern(1, n1), apiPattern(2, n2)
				f, v, wantErr := s.prepare(t, path, first, second)
				apiFill(first, 77)
				apiFill(second, 78)
				b1, b2 := slices.Clone(first), slices.Clone(second)
				err := f.RestoreAll(v)
				apiWantErr(t, err, wantErr, fmt.Sprintf("RestoreAll(%d)", v))
				apiSame(t, first, b1, "first region after failed RestoreAll")
				apiSame(t, second, b2, "second region after failed RestoreAll")

				// The same through a read-only File.
				apiNoErr(t, f.Close(), "Close")
				ro := apiOpen(t, path, &Options{ReadOnly: true})
				apiReg(t, ro, "first", first)
				apiReg(t, ro, "second", second)
				err = ro.RestoreAll(v)
				apiWantErr(t, err, wantErr, fmt.Sprintf("read-only RestoreAll(%d)", v))
				apiSame(t, first, b1, "first region after failed read-only RestoreAll")
				apiSame(t, second, b2, "second region after failed read-only RestoreAll")
			})
		}
	}
}

// TestAPIRestoreErrorLeavesRegion: every failing Restore leaves the region as it was.
func TestAPIRestoreErrorLeavesRegion(t *testing.T) {
	for _, size := range []int{100, 4096, 1<<20 + 1, 3 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			path := apiPath(t)
			f := apiOpen(t, path, nil)
			region := apiPattern(1, size)
			c := apiReg(t, f, "r", region)
			apiNoErr(t, c.Save(), "Save")
			apiFill(region, 2)
			apiNoErr(t, c.Save(), "Save")
			apiFill(region, 3)
			apiNoErr(t, c.Save(), "Save")

			scratch := func() []byte { apiFill(region, 50); return slices.Clone(region) }

			// ErrVersion.
			for _, v := range []int{4, -3, 100} {
				before := scratch()
				apiWantErr(t, c.Restore(v), ErrVersion, fmt.Sprintf("Restore(%d)", v))
				apiSame(t, region, before, fmt.Sprintf("after Restore(%d)", v))
			}
			// ErrCorrupt: damage version 2 near its end (the last block of multi-block
			// payloads), and version 3 at its start.
			vs := c.Versions()
			apiCorruptVersion(t, path, vs[1], int64(size)-1)
			apiCorruptVersion(t, path, vs[2], 0)
			for _, v := range []int{2, 3, 0, -1} {
				before := scratch()
				apiWantErr(t, c.Restore(v), ErrCorrupt, fmt.Sprintf("Restore(%d) of a damaged version", v))
				apiSame(t, region, before, fmt.Sprintf("after Restore(%d) of a damaged version", v))
			}
			// Version 1 is intact.
			scratch()
			apiNoErr(t, c.Restore(1), "Restore(1)")
			apiSame(t, region, apiPattern(1, size), "Restore(1)")

			// ErrSize: register the same name with another size.
			apiNoErr(t, c.Unregister(), "Unregister")
			other := apiPattern(60, size+1)
			c2 := apiReg(t, f, "r", other)
			for _, v := range []int{1, -2} {
				apiFill(other, 61)
				before := slices.Clone(other)
				apiWantErr(t, c2.Restore(v), ErrSize, fmt.Sprintf("Restore(%d) into a larger region", v))
				apiSame(t, other, before, fmt.Sprintf("larger region after Restore(%d)", v))
			}
			apiNoErr(t, c2.Unregister(), "Unregister")
			smaller := apiPattern(62, size-1)
			if len(smaller) > 0 {
				c3 := apiReg(t, f, "r", smaller)
				before := slices.Clone(smaller)
				apiWantErr(t, c3.Restore(1), ErrSize, "Restore(1) into a smaller region")
				apiSame(t, smaller, before, "smaller region after Restore(1)")
				apiNoErr(t, c3.Unregister(), "Unregister")
			}

			// ErrClosed.
			c4 := apiReg(t, f, "r", region)
			apiNoErr(t, f.Close(), "Close")
			before := scratch()
			apiWantErr(t, c4.Restore(1), ErrClosed, "Restore after Close")
			apiSame(t, region, before, "after Restore on a closed File")
			apiWantErr(t, f.RestoreAll(1), ErrClosed, "RestoreAll after Close")
			apiSame(t, region, before, "after RestoreAll on a closed File")

			// A read-only File checks the hash too.
			ro := apiOpen(t, path, &Options{ReadOnly: true})
			rc := apiReg(t, ro, "r", region)
			for _, v := range []int{2, 3} {
				before := scratch()
				apiWantErr(t, rc.Restore(v), ErrCorrupt, fmt.Sprintf("read-only Restore(%d) of a damaged version", v))
				apiSame(t, region, before, fmt.Sprintf("after read-only Restore(%d) of a damaged version", v))
			}
			before = scratch()
			apiWantErr(t, rc.Restore(4), ErrVersion, "read-only Restore(4)")
			apiSame(t, region, before, "after read-only Restore(4)")
			apiNoErr(t, rc.Restore(1), "read-only Restore(1)")
			apiSame(t, region, apiPattern(1, size), "read-only Restore(1)")
		})
	}
}

func TestAPIReopenContinues(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	r := make([]byte, 4000)
	c := apiReg(t, f, "state", r)
	for v := 1; v <= 3; v++ {
		apiFill(r, uint64(v))
		apiNoErr(t, c.Save(), "Save")
	}
	apiNoErr(t, f.Close(), "Close")

	f = apiOpen(t, path, nil)
	r2 := make([]byte, 4000)
	c = apiReg(t, f, "state", r2)
	if got := apiVersionNums(c.Versions()); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("versions after reopen %v, want [1 2 3]", got)
	}
	for v := 1; v <= 3; v++ {
		apiNoErr(t, c.Restore(v), fmt.Sprintf("Restore(%d)", v))
		apiSame(t, r2, apiPattern(uint64(v), 4000), fmt.Sprintf("Restore(%d) after reopen", v))
	}
	apiFill(r2, 4)
	apiNoErr(t, c.Save(), "Save")
	apiFill(r2, 5)
	apiNoErr(t, f.SaveAll(), "SaveAll")
	if got := apiVersionNums(c.Versions()); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("versions after saving on the reopened file %v, want [1 2 3 4 5]", got)
	}
	apiNoErr(t, f.Close(), "Close")

	f = apiOpen(t, path, nil)
	c = apiReg(t, f, "state", r2)
	for v := 1; v <= 5; v++ {
		apiNoErr(t, c.Restore(v), fmt.Sprintf("Restore(%d)", v))
		apiSame(t, r2, apiPattern(uint64(v), 4000), fmt.Sprintf("Restore(%d) after second reopen", v))
	}
	// A name never saved has no versions.
	other := apiReg(t, f, "never-saved", make([]byte, 10))
	if vs := other.Versions(); len(vs) != 0 {
		t.Errorf("never-saved has versions %v", apiVersionNums(vs))
	}
}

// TestAPIRegisterOtherSize: a saved name may be registered with another size; new saves
// have the new size and versions of the other size give ErrSize.
func TestAPIRegisterOtherSize(t *testing.T) {
	for _, reopen := range []bool{false, true} {
		t.Run(fmt.Sprintf("reopen=%v", reopen), func(t *testing.T) {
			path := apiPath(t)
			f := apiOpen(t, path, nil)
			small := make([]byte, 100)
			c := apiReg(t, f, "s", small)
			for v := 1; v <= 2; v++ {
				apiFill(small, uint64(v))
				apiNoErr(t, c.Save(), "Save")
			}
			if reopen {
				apiNoErr(t, f.Close(), "Close")
				f = apiOpen(t, path, nil)
			} else {
				apiNoErr(t, c.Unregister(), "Unregister")
			}
			big := apiPattern(9, 200)
			c = apiReg(t, f, "s", big)
			vs := c.Versions()
			if len(vs) != 2 || vs[0].Size != 100 || vs[1].Size != 100 {
				t.Fatalf("versions %+v, want two of 100 bytes", vs)
			}
			before := slices.Clone(big)
			apiWantErr(t, c.Restore(1), ErrSize, "Restore(1) of a 100-byte version into 200 bytes")
			apiWantErr(t, c.Restore(0), ErrSize, "Restore(0) of a 100-byte version into 200 bytes")
			apiSame(t, big, before, "region after ErrSize")
			apiFill(big, 3)
			apiNoErr(t, c.Save(), "Save")
			vs = c.Versions()
			if len(vs) != 3 || vs[2].Version != 3 || vs[2].Size != 200 {
				t.Fatalf("versions %+v, want a third of 200 bytes", vs)
			}
			clear(big)
			apiNoErr(t, c.Restore(3), "Restore(3)")
			apiSame(t, big, apiPattern(3, 200), "Restore(3)")
			apiWantErr(t, c.Restore(-1), ErrSize, "Restore(-1)")
			apiNoErr(t, f.Close(), "Close")

			f = apiOpen(t, path, nil)
			c = apiReg(t, f, "s", small)
			apiNoErr(t, c.Restore(2), "Restore(2) into 100 bytes")
			apiSame(t, small, apiPattern(2, 100), "Restore(2)")
			before = slices.Clone(small)
			apiWantErr(t, c.Restore(3), ErrSize, "Restore(3) of a 200-byte version into 100 bytes")
			apiSame(t, small, before, "region after ErrSize")
		})
	}
}

func TestAPILocateUnregister(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	a := apiPattern(1, 64)
	b := apiPattern(2, 64)
	ca := apiReg(t, f, "a", a)
	cb := apiReg(t, f, "b", b)
	if got, err := f.Locate("a"); err != nil || got != ca || got.Name() != "a" {
		t.Errorf("Locate(a) = %p, %v; want %p", got, err, ca)
	}
	if got, err := f.Locate("b"); err != nil || got != cb {
		t.Errorf("Locate(b) = %p, %v; want %p", got, err, cb)
	}
	for _, n := range []string{"c", "", "A", "a\x00", strings.Repeat("x", 300)} {
		if got, err := f.Locate(n); !errors.Is(err, ErrNotFound) || got != nil {
			t.Errorf("Locate(%q) = %p, %v; want ErrNotFound", n, got, err)
		}
	}
	apiNoErr(t, ca.Save(), "Save")
	apiNoErr(t, ca.Save(), "Save")
	apiNoErr(t, ca.Unregister(), "Unregister")
	if got, err := f.Locate("a"); !errors.Is(err, ErrNotFound) || got != nil {
		t.Errorf("Locate(a) after Unregister = %p, %v; want ErrNotFound", got, err)
	}
	if ca.Name() != "a" {
		t.Errorf("Name after Unregister = %q", ca.Name())
	}
	apiWantErr(t, ca.Save(), ErrNotFound, "Save after Unregister")
	apiFill(a, 3)
	before := slices.Clone(a)
	apiWantErr(t, ca.Restore(1), ErrNotFound, "Restore after Unregister")
	apiSame(t, a, before, "region after Restore on an unregistered Checkpoint")
	apiWantErr(t, ca.Unregister(), ErrNotFound, "second Unregister")
	// SaveAll saves only what is registered.
	apiNoErr(t, f.SaveAll(), "SaveAll")
	apiNoErr(t, f.RestoreAll(0), "RestoreAll")
	apiSame(t, a, before, "unregistered region after RestoreAll")
	if got := apiVersionNums(cb.Versions()); !slices.Equal(got, []int{1}) {
		t.Errorf("b versions %v, want [1]", got)
	}

	// Re-registering the name finds the kept versions.
	a2 := make([]byte, 64)
	ca2, err := f.Register("a", a2)
	apiNoErr(t, err, "Register after Unregister")
	if got := apiVersionNums(ca2.Versions()); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("versions after re-register %v, want [1 2]", got)
	}
	apiNoErr(t, ca2.Restore(1), "Restore(1) after re-register")
	apiSame(t, a2, apiPattern(1, 64), "Restore(1) after re-register")
	if got, err := f.Locate("a"); err != nil || got != ca2 {
		t.Errorf("Locate(a) after re-register = %p, %v; want %p", got, err, ca2)
	}
	// The old handle stays unregistered.
	apiWantErr(t, ca.Save(), ErrNotFound, "Save on the old handle")
	apiWantErr(t, ca.Unregister(), ErrNotFound, "Unregister on the old handle")
	apiNoErr(t, ca2.Save(), "Save")
	if got := apiVersionNums(ca2.Versions()); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("versions %v, want [1 2 3]", got)
	}
	// Versions kept by an unregistered checkpoint survive Close and reopen.
	apiNoErr(t, ca2.Unregister(), "Unregister")
	apiNoErr(t, f.Close(), "Close")
	f = apiOpen(t, path, nil)
	if _, err := f.Locate("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Locate(a) on a reopened file before Register: %v, want ErrNotFound", err)
	}
	ca3 := apiReg(t, f, "a", a2)
	if got := apiVersionNums(ca3.Versions()); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("versions after reopen %v, want [1 2 3]", got)
	}
}

func TestAPIClosedFile(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	a := apiPattern(1, 128)
	ca := apiReg(t, f, "a", a)
	cu := apiReg(t, f, "u", make([]byte, 8))
	apiNoErr(t, f.SaveAll(), "SaveAll")
	apiNoErr(t, cu.Unregister(), "Unregister")
	apiNoErr(t, f.Close(), "Close")

	apiFill(a, 2)
	before := slices.Clone(a)
	calls := []struct {
		name string
		call func() error
	}{
		{"File.Register", func() error { _, err := f.Register("n", make([]byte, 8)); return err }},
		{"File.Register(a)", func() error { _, err := f.Register("a", a); return err }},
		{"RegisterValue", func() error { var x int64; _, err := RegisterValue(f, "v", &x); return err }},
		{"File.Locate", func() error { _, err := f.Locate("a"); return err }},
		{"File.Locate(missing)", func() error { _, err := f.Locate("missing"); return err }},
		{"File.SaveAll", f.SaveAll},
		{"File.RestoreAll(0)", func() error { return f.RestoreAll(0) }},
		{"File.RestoreAll(1)", func() error { return f.RestoreAll(1) }},
		{"File.Sync", f.Sync},
		{"File.Close", f.Close},
		{"Checkpoint.Save", ca.Save},
		{"Checkpoint.Restore(1)", func() error { return ca.Restore(1) }},
		{"Checkpoint.Restore(0)", func() error { return ca.Restore(0) }},
		{"Checkpoint.Unregister", ca.Unregister},
		{"unregistered Checkpoint.Save", cu.Save},
		{"unregistered Checkpoint.Restore", func() error { return cu.Restore(1) }},
		{"unregistered Checkpoint.Unregister", cu.Unregister},
	}
	for _, c := range calls {
		apiWantErr(t, c.call(), ErrClosed, c.name+" after Close")
	}
	apiSame(t, a, before, "region after calls on a closed File")
	if ca.Name() != "a" {
		t.Errorf("Name after Close = %q", ca.Name())
	}
	_ = ca.Versions() // must not panic

	// Close released the lock and made the save durable: Open succeeds and sees it.
	f2 := apiOpen(t, path, nil)
	c := apiReg(t, f2, "a", a)
	apiNoErr(t, c.Restore(1), "Restore after reopen")
	apiSame(t, a, apiPattern(1, 128), "Restore after reopen")
	// The old File's Checkpoints stay closed.
	apiWantErr(t, ca.Save(), ErrClosed, "old Checkpoint.Save with a new File open")
}

func TestAPILocking(t *testing.T) {
	path := apiPath(t)
	w := apiOpen(t, path, nil)
	a := apiPattern(1, 1000)
	ca := apiReg(t, w, "a", a)
	apiNoErr(t, ca.Save(), "Save")

	for _, p := range []string{path, filepath.Join(filepath.Dir(path), ".", filepath.Base(path))} {
		for _, o := range []*Options{nil, {KeepVersions: 3}, {Sync: SyncAlways}} {
			f2, err := Open(p, o)
			if !errors.Is(err, ErrLocked) {
				t.Errorf("second Open(%q, %+v): %v, want ErrLocked", p, o, err)
			}
			if f2 != nil {
				t.Errorf("second Open returned a File along with %v", err)
				_ = f2.Close()
			}
		}
	}
	// The refused Opens did not disturb the writer.
	apiFill(a, 2)
	apiNoErr(t, ca.Save(), "Save after refused Opens")
	apiNoErr(t, ca.Restore(1), "Restore after refused Opens")
	apiSame(t, a, apiPattern(1, 1000), "Restore after refused Opens")

	// A reader may open while the writer holds the file.
	ro, err := Open(path, &Options{ReadOnly: true})
	apiNoErr(t, err, "read-only Open while a writer is active")
	apiNoErr(t, w.Close(), "Close")
	// After Close, Open succeeds (the reader does not hold the lock).
	w2 := apiOpen(t, path, nil)
	apiNoErr(t, w2.Close(), "Close")
	apiNoErr(t, ro.Close(), "read-only Close")
	w3 := apiOpen(t, path, nil)
	c3 := apiReg(t, w3, "a", a)
	if got := apiVersionNums(c3.Versions()); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("versions %v, want [1 2]", got)
	}
}

func TestAPIReadOnly(t *testing.T) {
	path := apiPath(t)
	w := apiOpen(t, path, nil)
	a := make([]byte, 3000)
	b := make([]byte, 1<<20+100)
	ca := apiReg(t, w, "a", a)
	apiReg(t, w, "b", b)
	for v := 1; v <= 2; v++ {
		apiFill(a, uint64(v))
		apiFill(b, uint64(100+v))
		apiNoErr(t, w.SaveAll(), "SaveAll")
	}

	ro, err := Open(path, &Options{ReadOnly: true})
	apiNoErr(t, err, "read-only Open")
	t.Cleanup(func() { _ = ro.Close() })
	// The writer goes on; the reader sees what was complete when it opened.
	apiFill(a, 3)
	apiFill(b, 103)
	apiNoErr(t, w.SaveAll(), "SaveAll")
	apiFill(a, 4)
	apiNoErr(t, ca.Save(), "Save")

	ra := make([]byte, 3000)
	rb := make([]byte, 1<<20+100)
	rca := apiReg(t, ro, "a", ra)
	rcb := apiReg(t, ro, "b", rb)
	if got := apiVersionNums(rca.Versions()); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("reader sees versions %v of a, want [1 2]", got)
	}
	if got := apiVersionNums(rcb.Versions()); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("reader sees versions %v of b, want [1 2]", got)
	}
	for _, v := range []int{1, 2, 0, -1} {
		want := v
		if v <= 0 {
			want = 2 + v
		}
		apiNoErr(t, ro.RestoreAll(v), fmt.Sprintf("reader RestoreAll(%d)", v))
		apiSame(t, ra, apiPattern(uint64(want), len(ra)), fmt.Sprintf("reader a after RestoreAll(%d)", v))
		apiSame(t, rb, apiPattern(uint64(100+want), len(rb)), fmt.Sprintf("reader b after RestoreAll(%d)", v))
	}
	before := slices.Clone(ra)
	apiWantErr(t, rca.Restore(3), ErrVersion, "reader Restore(3)")
	apiSame(t, ra, before, "reader region after Restore(3)")

	for name, err := range map[string]error{"Save": rca.Save(), "SaveAll": ro.SaveAll()} {
		if !errors.Is(err, ErrReadOnly) || !errors.Is(err, ErrInvalid) {
			t.Errorf("reader %s: %v, want ErrReadOnly wrapping ErrInvalid", name, err)
		}
	}
	if got := apiVersionNums(rca.Versions()); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("reader versions after refused saves %v, want [1 2]", got)
	}
	if _, err := ro.Locate("a"); err != nil {
		t.Errorf("reader Locate: %v", err)
	}
	apiNoErr(t, rca.Unregister(), "reader Unregister")
	apiNoErr(t, ro.Close(), "reader Close")
	apiWantErr(t, ro.Close(), ErrClosed, "reader second Close")

	// The writer is not disturbed by the reader.
	apiNoErr(t, ca.Restore(4), "writer Restore(4)")
	apiSame(t, a, apiPattern(4, len(a)), "writer Restore(4)")
	apiNoErr(t, w.Close(), "Close")

	// A reader of a quiet file sees everything and writes nothing.
	sd, si := apiSnap(t, path), apiSnap(t, path+".idx")
	ro2, err := Open(path, &Options{ReadOnly: true})
	apiNoErr(t, err, "read-only Open")
	rca = apiReg(t, ro2, "a", ra)
	if got := apiVersionNums(rca.Versions()); !slices.Equal(got, []int{1, 2, 3, 4}) {
		t.Errorf("reader of a closed file sees versions %v, want [1 2 3 4]", got)
	}
	apiNoErr(t, rca.Restore(0), "reader Restore(0)")
	apiSame(t, ra, apiPattern(4, len(ra)), "reader Restore(0)")
	_ = rca.Save()
	_ = ro2.SaveAll()
	_ = ro2.Sync()
	apiSameState(t, sd, apiSnap(t, path), "data file after a reader's work")
	apiSameState(t, si, apiSnap(t, path+".idx"), "index file after a reader's work")
	// A writer may open while a reader is open.
	w2 := apiOpen(t, path, nil)
	apiNoErr(t, w2.Close(), "writer Close")
	apiNoErr(t, ro2.Close(), "reader Close")
}

// apiSetFormatVersion rewrites the format version field (bytes 8..11) of the 64-byte
// header of the data or index file at path, with a correct header CRC32C (bytes 60..63
// over bytes 0..59), so that only the version is wrong.
func apiSetFormatVersion(t *testing.T, path string, v uint32) {
	t.Helper()
	h := apiReadAt(t, path, 0, 64)
	binary.LittleEndian.PutUint32(h[8:], v)
	binary.LittleEndian.PutUint32(h[60:], crc32.Checksum(h[:60], crc32.MakeTable(crc32.Castagnoli)))
	apiPatchFile(t, path, 0, h)
}

func TestAPIOpenRefusesNonCkp(t *testing.T) {
	const text = "this is a text file, not a checkpoint\n"
	cases := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"short-text-file", func(t *testing.T, path string) {
			apiNoErr(t, os.WriteFile(path, []byte(text), 0o644), "write")
		}},
		{"long-text-file", func(t *testing.T, path string) {
			apiNoErr(t, os.WriteFile(path, []byte(strings.Repeat(text, 500)), 0o644), "write")
		}},
		{"text-file-beside-valid-index", func(t *testing.T, path string) {
			apiMakePair(t, path)
			apiNoErr(t, os.WriteFile(path, []byte(strings.Repeat(text, 500)), 0o600), "write")
		}},
		{"bad-data-magic", func(t *testing.T, path string) {
			apiMakePair(t, path)
			apiPatchFile(t, path, 0, []byte("X"))
		}},
		{"data-format-version-2", func(t *testing.T, path string) {
			apiMakePair(t, path)
			apiSetFormatVersion(t, path, FormatVersion+1)
		}},
		{"data-format-version-0xffffffff", func(t *testing.T, path string) {
			apiMakePair(t, path)
			apiSetFormatVersion(t, path, math.MaxUint32)
		}},
		{"data-header-checksum", func(t *testing.T, path string) {
			apiMakePair(t, path)
			b := apiReadAt(t, path, 20, 1)
			b[0] ^= 1
			apiPatchFile(t, path, 20, b)
		}},
		{"index-of-another-file", func(t *testing.T, path string) {
			apiMakePair(t, path)
			other := filepath.Join(t.TempDir(), "other.ckp")
			apiMakePair(t, other)
			b, err := os.ReadFile(other + ".idx")
			apiNoErr(t, err, "read other index")
			apiNoErr(t, os.WriteFile(path+".idx", b, 0o600), "write index")
		}},
		{"missing-index", func(t *testing.T, path string) {
			apiMakePair(t, path)
			apiNoErr(t, os.Remove(path+".idx"), "remove index")
		}},
		{"bad-index-magic", func(t *testing.T, path string) {
			apiMakePair(t, path)
			apiPatchFile(t, path+".idx", 0, []byte("X"))
		}},
		{"index-format-version-2", func(t *testing.T, path string) {
			apiMakePair(t, path)
			apiSetFormatVersion(t, path+".idx", FormatVersion+1)
		}},
		{"text-index", func(t *testing.T, path string) {
			apiMakePair(t, path)
			apiNoErr(t, os.WriteFile(path+".idx", []byte(strings.Repeat(text, 10)), 0o600), "write index")
		}},
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, tc := range cases {
		for _, ro := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/readonly=%v", tc.name, ro), func(t *testing.T) {
				path := apiPath(t)
				tc.make(t, path)
				for _, p := range []string{path, path + ".idx"} {
					if _, err := os.Stat(p); err == nil {
						apiNoErr(t, os.Chtimes(p, old, old), "chtimes")
					}
				}
				names := apiDirNames(t, filepath.Dir(path))
				sd, si := apiSnap(t, path), apiSnap(t, path+".idx")
				f, err := Open(path, &Options{ReadOnly: ro})
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("Open: %v, want ErrCorrupt", err)
				}
				if f != nil {
					t.Errorf("Open returned a File along with %v", err)
					_ = f.Close()
				}
				apiSameState(t, sd, apiSnap(t, path), "data file")
				apiSameState(t, si, apiSnap(t, path+".idx"), "index file")
				if got := apiDirNames(t, filepath.Dir(path)); !slices.Equal(got, names) {
					t.Errorf("directory holds %q after the refused Open, was %q", got, names)
				}
			})
		}
	}
}

// apiPlain is a plain-data type RegisterValue accepts.
type apiPlain struct {
	Step  int64
	Pos   [3]float64
	Flags [4]bool
	Inner struct {
		A uint16
		B int8
		C [2]complex64
	}
	Grid [2][3]uint32
	U    uint
	I    int
}

// apiRegNew returns a function that registers a new zero T with RegisterValue.
func apiRegNew[T any]() func(f *File, name string) (*Checkpoint, error) {
	return func(f *File, name string) (*Checkpoint, error) { return RegisterValue(f, name, new(T)) }
}

func TestAPIRegisterValueTypes(t *testing.T) {
	f := apiOpen(t, apiPath(t), nil)
	accept := []struct {
		name string
		reg  func(*File, string) (*Checkpoint, error)
	}{
		{"int", apiRegNew[int]()},
		{"int8", apiRegNew[int8]()},
		{"uint64", apiRegNew[uint64]()},
		{"float32", apiRegNew[float32]()},
		{"complex128", apiRegNew[complex128]()},
		{"bool", apiRegNew[bool]()},
		{"[16]byte", apiRegNew[[16]byte]()},
		{"[4][4]float64", apiRegNew[[4][4]float64]()},
		{"struct", apiRegNew[apiPlain]()},
		{"[3]struct", apiRegNew[[3]apiPlain]()},
		{"nested anonymous", apiRegNew[struct {
			A [2]struct{ B [2]struct{ C int16 } }
			D bool
		}]()},
	}
	for _, tc := range accept {
		c, err := tc.reg(f, "ok-"+tc.name)
		if err != nil || c == nil {
			t.Errorf("RegisterValue[%s]: %v", tc.name, err)
			continue
		}
		apiNoErr(t, c.Save(), "Save "+tc.name)
		apiNoErr(t, c.Restore(0), "Restore "+tc.name)
	}
	refuse := []struct {
		name string
		reg  func(*File, string) (*Checkpoint, error)
	}{
		{"*int", apiRegNew[*int]()},
		{"[]byte", apiRegNew[[]byte]()},
		{"map", apiRegNew[map[string]int]()},
		{"string", apiRegNew[string]()},
		{"any", apiRegNew[any]()},
		{"error", apiRegNew[error]()},
		{"chan", apiRegNew[chan int]()},
		{"func", apiRegNew[func()]()},
		{"uintptr", apiRegNew[uintptr]()},
		{"unsafe.Pointer", apiRegNew[unsafe.Pointer]()},
		{"struct with string", apiRegNew[struct {
			A int
			S string
		}]()},
		{"struct with deep pointer", apiRegNew[struct {
			A int
			B struct{ C [2]struct{ D *int } }
		}]()},
		{"array of strings", apiRegNew[[2][3]string]()},
		{"array of struct with func", apiRegNew[[1]struct{ F func() }]()},
		{"struct with uintptr array", apiRegNew[struct{ X [2]uintptr }]()},
		{"struct with unsafe.Pointer", apiRegNew[struct {
			N int
			U unsafe.Pointer
		}]()},
		{"array of slices", apiRegNew[[4][]byte]()},
		{"struct with map", apiRegNew[struct{ M map[int]int }]()},
		{"struct with chan", apiRegNew[struct{ C chan bool }]()},
		{"struct with interface", apiRegNew[struct{ I interface{ M() } }]()},
		{"deep array of struct with pointer", apiRegNew[[2][2]struct {
			A [3]struct {
				B int
				P *apiPlain
			}
		}]()},
		{"zero-size struct", apiRegNew[struct{}]()},
		{"zero-length array", apiRegNew[[0]int64]()},
	}
	for _, tc := range refuse {
		name := "bad-" + tc.name
		c, err := tc.reg(f, name)
		if !errors.Is(err, ErrInvalid) || c != nil {
			t.Errorf("RegisterValue[%s] = %p, %v; want ErrInvalid", tc.name, c, err)
		}
		if _, err := f.Locate(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Locate after refused RegisterValue[%s]: %v, want ErrNotFound", tc.name, err)
		}
	}
	// nil pointer.
	if c, err := RegisterValue[apiPlain](f, "nil", nil); !errors.Is(err, ErrInvalid) || c != nil {
		t.Errorf("RegisterValue(nil) = %p, %v; want ErrInvalid", c, err)
	}
	if c, err := RegisterValue[int64](f, "nil-int", nil); !errors.Is(err, ErrInvalid) || c != nil {
		t.Errorf("RegisterValue[int64](nil) = %p, %v; want ErrInvalid", c, err)
	}
	// A refused name is free for a valid registration.
	if _, err := RegisterValue(f, "bad-string", new(int64)); err != nil {
		t.Errorf("RegisterValue after a refused one of the same name: %v", err)
	}
	apiNoErr(t, f.SaveAll(), "SaveAll")
}

func TestAPIRegisterValueRoundTrip(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	var v apiPlain
	var arr [5]int32
	c, err := RegisterValue(f, "state", &v)
	apiNoErr(t, err, "RegisterValue")
	ca, err := RegisterValue(f, "arr", &arr)
	apiNoErr(t, err, "RegisterValue")
	mk := func(i int) apiPlain {
		var p apiPlain
		p.Step = int64(i) * 1e12
		p.Pos = [3]float64{float64(i) + 0.5, -float64(i), math.Pi * float64(i)}
		p.Flags = [4]bool{i%2 == 0, true, false, i%3 == 0}
		p.Inner.A = uint16(i * 7)
		p.Inner.B = int8(-i)
		p.Inner.C = [2]complex64{complex(float32(i), 1), complex(2, float32(-i))}
		p.Grid = [2][3]uint32{{1, 2, uint32(i)}, {uint32(i) << 20, 5, 6}}
		p.U = uint(i) * 3
		p.I = -i * 11
		return p
	}
	saved := []apiPlain{mk(1), mk(2), mk(3)}
	for i, s := range saved {
		v = s
		arr = [5]int32{int32(i), -1, 2, -3, int32(i * i)}
		apiNoErr(t, f.SaveAll(), "SaveAll")
	}
	if vs := c.Versions(); len(vs) != 3 || vs[0].Size != int64(unsafe.Sizeof(v)) {
		t.Fatalf("versions %+v, want 3 of %d bytes", vs, unsafe.Sizeof(v))
	}
	for i := range saved {
		v = mk(99)
		apiNoErr(t, c.Restore(i+1), "Restore")
		if v != saved[i] {
			t.Errorf("Restore(%d) gave %+v, want %+v", i+1, v, saved[i])
		}
	}
	apiNoErr(t, f.Close(), "Close")

	f = apiOpen(t, path, nil)
	var w apiPlain
	var arr2 [5]int32
	c, err = RegisterValue(f, "state", &w)
	apiNoErr(t, err, "RegisterValue after reopen")
	_, err = RegisterValue(f, "arr", &arr2)
	apiNoErr(t, err, "RegisterValue after reopen")
	apiNoErr(t, f.RestoreAll(-1), "RestoreAll(-1)")
	if w != saved[1] {
		t.Errorf("after reopen Restore(-1) gave %+v, want %+v", w, saved[1])
	}
	if arr2 != [5]int32{1, -1, 2, -3, 1} {
		t.Errorf("after reopen arr = %v", arr2)
	}
	// Another type of the same size is a plain byte view too; a different size is ErrSize.
	apiNoErr(t, c.Unregister(), "Unregister")
	var small int32
	cs, err := RegisterValue(f, "state", &small)
	apiNoErr(t, err, "RegisterValue of another size")
	apiWantErr(t, cs.Restore(0), ErrSize, "Restore of a version of another size")
	if small != 0 {
		t.Errorf("value changed by a failed Restore: %d", small)
	}
	_ = ca
}

func TestAPIBadArguments(t *testing.T) {
	f := apiOpen(t, apiPath(t), nil)
	r := make([]byte, 16)
	tests := []struct {
		what   string
		name   string
		region []byte
		want   error
	}{
		{"empty name", "", r, ErrInvalid},
		{"name of 256 bytes", strings.Repeat("n", 256), r, ErrInvalid},
		{"name of 1000 bytes", strings.Repeat("n", 1000), r, ErrInvalid},
		{"nil region", "nil-region", nil, ErrInvalid},
		{"empty region", "empty-region", []byte{}, ErrInvalid},
		{"empty region with capacity", "cap-region", make([]byte, 0, 64), ErrInvalid},
		{"empty name and nil region", "", nil, ErrInvalid},
		{"name of 255 bytes", strings.Repeat("m", 255), r, nil},
		{"name of 1 byte", "x", r, nil},
		{"duplicate", "x", make([]byte, 16), ErrExists},
		{"duplicate of another size", "x", make([]byte, 99), ErrExists},
		{"duplicate of 255 bytes", strings.Repeat("m", 255), r, ErrExists},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: Register panicked: %v", tt.what, p)
				}
			}()
			c, err := f.Register(tt.name, tt.region)
			if tt.want == nil {
				if err != nil || c == nil {
					t.Errorf("%s: Register = %p, %v; want success", tt.what, c, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || c != nil {
				t.Errorf("%s: Register = %p, %v; want %v", tt.what, c, err, tt.want)
			}
		}()
	}
	for _, n := range []string{"", strings.Repeat("v", 256)} {
		var x int64
		if c, err := RegisterValue(f, n, &x); !errors.Is(err, ErrInvalid) || c != nil {
			t.Errorf("RegisterValue(%d-byte name) = %p, %v; want ErrInvalid", len(n), c, err)
		}
	}
	var x int64
	if c, err := RegisterValue(f, "x", &x); !errors.Is(err, ErrExists) || c != nil {
		t.Errorf("RegisterValue of a registered name = %p, %v; want ErrExists", c, err)
	}
	// Refused registrations left nothing behind.
	for _, n := range []string{"", "nil-region", "empty-region", "cap-region", strings.Repeat("n", 256)} {
		if _, err := f.Locate(n); !errors.Is(err, ErrNotFound) {
			t.Errorf("Locate(%.10q) after a refused Register: %v", n, err)
		}
	}
	// The accepted ones work; the duplicate did not replace the first region.
	c, err := f.Locate("x")
	apiNoErr(t, err, "Locate(x)")
	if len(c.Region()) != 16 {
		t.Errorf("Locate(x) has a %d-byte region, want the first registration's 16", len(c.Region()))
	}
	apiNoErr(t, f.SaveAll(), "SaveAll")
	if vs := c.Versions(); len(vs) != 1 || vs[0].Size != 16 {
		t.Errorf("versions of x %+v", vs)
	}
}

func TestAPIInvalidOptions(t *testing.T) {
	bad := []struct {
		name string
		opts Options
	}{
		{"KeepVersions=-1", Options{KeepVersions: -1}},
		{"KeepVersions=MinInt", Options{KeepVersions: math.MinInt}},
		{"SyncEvery(0)", Options{Sync: SyncEvery(0)}},
		{"SyncEvery(-3)", Options{Sync: SyncEvery(-3)}},
		{"SyncInterval(0)", Options{Sync: SyncInterval(0)}},
		{"SyncInterval(-1s)", Options{Sync: SyncInterval(-time.Second)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.ckp")
			o := tt.opts
			f, err := Open(path, &o)
			if !errors.Is(err, ErrInvalid) || f != nil {
				t.Errorf("Open = %p, %v; want ErrInvalid", f, err)
				if f != nil {
					_ = f.Close()
				}
			}
			if names := apiDirNames(t, dir); len(names) != 0 {
				t.Errorf("refused Open created %q", names)
			}
			// An existing file is not touched either.
			apiMakePair(t, path)
			sd, si := apiSnap(t, path), apiSnap(t, path+".idx")
			if _, err := Open(path, &o); !errors.Is(err, ErrInvalid) {
				t.Errorf("Open of an existing file = %v; want ErrInvalid", err)
			}
			apiSameState(t, sd, apiSnap(t, path), "data file")
			apiSameState(t, si, apiSnap(t, path+".idx"), "index file")
		})
	}
	good := []struct {
		name string
		opts *Options
	}{
		{"nil", nil},
		{"zero", &Options{}},
		{"SyncNone", &Options{Sync: SyncNone}},
		{"SyncAsync", &Options{Sync: SyncAsync}},
		{"SyncAlways", &Options{Sync: SyncAlways}},
		{"SyncEvery(1)", &Options{Sync: SyncEvery(1)}},
		{"SyncEvery(4)", &Options{Sync: SyncEvery(4)}},
		{"SyncInterval(1ms)", &Options{Sync: SyncInterval(time.Millisecond)}},
		{"SyncInterval(1h)", &Options{Sync: SyncInterval(time.Hour)}},
		{"KeepVersions=1", &Options{KeepVersions: 1}},
		{"Workers=1,NoPrefault,NoHugePages", &Options{Workers: 1, NoPrefault: true, NoHugePages: true}},
		{"small ChunkSize and MaxSize", &Options{ChunkSize: 4096, MaxSize: 64 << 20}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			path := apiPath(t)
			f := apiOpen(t, path, tt.opts)
			r := apiPattern(5, 3000)
			c := apiReg(t, f, "r", r)
			for i := 0; i < 5; i++ {
				apiNoErr(t, c.Save(), "Save")
			}
			apiNoErr(t, f.SaveAll(), "SaveAll")
			clear(r)
			apiNoErr(t, c.Restore(0), "Restore")
			apiSame(t, r, apiPattern(5, 3000), "Restore")
			apiNoErr(t, f.Sync(), "Sync")
			apiNoErr(t, f.Close(), "Close")
			apiOnlyPair(t, path, "after Close")
		})
	}
}

func TestAPINamesAreBytes(t *testing.T) {
	var all255 strings.Builder
	for i := 0; i < 255; i++ {
		all255.WriteByte(byte(255 - i)) // the byte values 255 down to 1
	}
	names := []string{
		"\x00",
		"a",
		"a\x00",
		"\x00a",
		"a\x00b",
		"A",
		"\xff\xfe\xfd",
		"\xc3\x28", // invalid UTF-8
		"é名前",
		"with/slash and space ",
		strings.Repeat("\x00", 255),
		strings.Repeat("\x00", 254),
		all255.String(),
		strings.Repeat("k", 52),
		strings.Repeat("k", 53),
		strings.Repeat("k", 104),
		strings.Repeat("k", 105),
		strings.Repeat("\xff", 255),
	}
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	regions := make([][]byte, len(names))
	cs := make([]*Checkpoint, len(names))
	for i, n := range names {
		regions[i] = apiPattern(uint64(i), 100+i)
		cs[i] = apiReg(t, f, n, regions[i])
		if cs[i].Name() != n {
			t.Errorf("Name() = %q, want %q", cs[i].Name(), n)
		}
	}
	apiNoErr(t, f.SaveAll(), "SaveAll")
	for i := range names {
		apiFill(regions[i], uint64(1000+i))
		apiNoErr(t, cs[i].Save(), "Save")
	}
	for i, n := range names {
		got, err := f.Locate(n)
		if err != nil || got != cs[i] {
			t.Errorf("Locate(%q) = %p, %v; want %p", n, got, err, cs[i])
		}
	}
	apiNoErr(t, f.Close(), "Close")

	f = apiOpen(t, path, nil)
	// A name that was never saved has no versions, even if it shares a prefix.
	for _, n := range []string{"a\x00\x00", "\x00\x00", strings.Repeat("k", 51), strings.Repeat("\x00", 253)} {
		c := apiReg(t, f, n, make([]byte, 8))
		if vs := c.Versions(); len(vs) != 0 {
			t.Errorf("unsaved name %q has versions %v", n, apiVersionNums(vs))
		}
	}
	for i, n := range names {
		r := make([]byte, 100+i)
		c := apiReg(t, f, n, r)
		if c.Name() != n {
			t.Errorf("Name() after reopen = %q, want %q", c.Name(), n)
		}
		if got := apiVersionNums(c.Versions()); !slices.Equal(got, []int{1, 2}) {
			t.Errorf("%q: versions after reopen %v, want [1 2]", n, got)
			continue
		}
		apiNoErr(t, c.Restore(1), "Restore(1)")
		apiSame(t, r, apiPattern(uint64(i), len(r)), fmt.Sprintf("%q Restore(1)", n))
		apiNoErr(t, c.Restore(2), "Restore(2)")
		apiSame(t, r, apiPattern(uint64(1000+i), len(r)), fmt.Sprintf("%q Restore(2)", n))
	}
}

func TestAPIRetention(t *testing.T) {
	path := apiPath(t)
	const size = 1000
	f := apiOpen(t, path, &Options{KeepVersions: 3})
	r := make([]byte, size)
	c := apiReg(t, f, "r", r)
	one := make([]byte, 10)
	c1 := apiReg(t, f, "one", one)
	for v := 1; v <= 10; v++ {
		apiFill(r, uint64(v))
		apiNoErr(t, c.Save(), "Save")
		if got := len(c.Versions()); got != min(v, 3) {
			t.Errorf("after save %d: %d versions kept, want %d", v, got, min(v, 3))
		}
	}
	// check verifies the kept versions of "r" are exactly kept, with the content of
	// the save of that number.
	check := func(c *Checkpoint, kept []int, newest int) {
		t.Helper()
		if got := apiVersionNums(c.Versions()); !slices.Equal(got, kept) {
			t.Errorf("kept versions %v, want %v", got, kept)
		}
		for v := 1; v <= newest+2; v++ {
			apiFill(r, 555)
			before := slices.Clone(r)
			err := c.Restore(v)
			if slices.Contains(kept, v) {
				if err != nil {
					t.Errorf("Restore(%d): %v", v, err)
				}
				apiSame(t, r, apiPattern(uint64(v), size), fmt.Sprintf("Restore(%d)", v))
			} else {
				apiWantErr(t, err, ErrVersion, fmt.Sprintf("Restore(%d) of a dropped or unsaved version", v))
				apiSame(t, r, before, fmt.Sprintf("region after Restore(%d)", v))
			}
		}
		for i := 0; i < len(kept); i++ {
			apiNoErr(t, c.Restore(-i), fmt.Sprintf("Restore(%d)", -i))
			apiSame(t, r, apiPattern(uint64(kept[len(kept)-1-i]), size), fmt.Sprintf("Restore(%d)", -i))
		}
		apiWantErr(t, c.Restore(-len(kept)), ErrVersion, fmt.Sprintf("Restore(%d)", -len(kept)))
	}
	check(c, []int{8, 9, 10}, 10)

	// SaveAll applies retention to each checkpoint.
	apiFill(r, 11)
	apiNoErr(t, f.SaveAll(), "SaveAll")
	check(c, []int{9, 10, 11}, 11)
	if got := apiVersionNums(c1.Versions()); !slices.Equal(got, []int{1}) {
		t.Errorf("one: versions %v, want [1]", got)
	}
	apiNoErr(t, f.Close(), "Close")

	// Reopen with the same retention: same view; numbering continues.
	f = apiOpen(t, path, &Options{KeepVersions: 3})
	c = apiReg(t, f, "r", r)
	check(c, []int{9, 10, 11}, 11)
	apiFill(r, 12)
	apiNoErr(t, c.Save(), "Save")
	check(c, []int{10, 11, 12}, 12)
	apiNoErr(t, f.Close(), "Close")

	// Reopen keeping everything: dropped versions stay dropped.
	f = apiOpen(t, path, nil)
	c = apiReg(t, f, "r", r)
	check(c, []int{10, 11, 12}, 12)
	apiFill(r, 13)
	apiNoErr(t, c.Save(), "Save")
	check(c, []int{10, 11, 12, 13}, 13)
	apiNoErr(t, f.Close(), "Close")

	// Reopen with a smaller retention: the next save trims to it.
	f = apiOpen(t, path, &Options{KeepVersions: 1})
	c = apiReg(t, f, "r", r)
	apiFill(r, 14)
	apiNoErr(t, c.Save(), "Save")
	check(c, []int{14}, 14)
	apiFill(r, 15)
	apiNoErr(t, c.Save(), "Save")
	check(c, []int{15}, 15)
	apiNoErr(t, f.Close(), "Close")
	f = apiOpen(t, path, &Options{KeepVersions: 1})
	c = apiReg(t, f, "r", r)
	check(c, []int{15}, 15)
}

// TestAPIRetentionReuse saves under retention with every sync policy, with regions of
// several sizes, checking after every save that each kept version still holds what was
// saved: reusing the space of dropped versions must never damage a kept one.
func TestAPIRetentionReuse(t *testing.T) {
	policies := []struct {
		name string
		p    SyncPolicy
	}{
		{"none", SyncNone},
		{"async", SyncAsync},
		{"always", SyncAlways},
		{"every3", SyncEvery(3)},
		{"interval", SyncInterval(2 * time.Millisecond)},
	}
	sizes := map[string]int{"small": 3000, "medium": 70001, "large": 1<<20 + 1}
	order := []string{"large", "medium", "small"}
	seed := func(name string, v int) uint64 { return uint64(v)<<8 | uint64(len(name)) }
	for _, pol := range policies {
		t.Run(pol.name, func(t *testing.T) {
			path := apiPath(t)
			const keep = 2
			pats := apiPatterns{}
			f := apiOpen(t, path, &Options{KeepVersions: keep, Sync: pol.p})
			regions := map[string][]byte{}
			cs := map[string]*Checkpoint{}
			next := map[string]int{}
			for _, n := range order {
				regions[n] = make([]byte, sizes[n])
				cs[n] = apiReg(t, f, n, regions[n])
				next[n] = 1
			}
			verify := func(when string) {
				t.Helper()
				for _, n := range order {
					vs := cs[n].Versions()
					if want := min(next[n]-1, keep); len(vs) != want {
						t.Errorf("%s: %s keeps %d versions, want %d", when, n, len(vs), want)
					}
					for _, v := range vs {
						if err := cs[n].Restore(v.Version); err != nil {
							t.Errorf("%s: %s Restore(%d): %v", when, n, v.Version, err)
							continue
						}
						apiSame(t, regions[n], pats.get(seed(n, v.Version), sizes[n]), fmt.Sprintf("%s: %s v%d", when, n, v.Version))
					}
				}
			}
			for round := 0; round < 12; round++ {
				for _, n := range order {
					copy(regions[n], pats.get(seed(n, next[n]), sizes[n]))
				}
				switch round % 3 {
				case 0:
					apiNoErr(t, f.SaveAll(), "SaveAll")
					for _, n := range order {
						next[n]++
					}
				case 1:
					n := order[round%len(order)]
					apiNoErr(t, cs[n].Save(), "Save")
					next[n]++
				case 2:
					for _, n := range order[:2] {
						apiNoErr(t, cs[n].Save(), "Save")
						next[n]++
					}
				}
				verify(fmt.Sprintf("round %d", round))
			}
			apiNoErr(t, f.Close(), "Close")
			f = apiOpen(t, path, &Options{KeepVersions: keep, Sync: pol.p})
			for _, n := range order {
				cs[n] = apiReg(t, f, n, regions[n])
			}
			verify("after reopen")
		})
	}
}

func TestAPIRegionSizes(t *testing.T) {
	sizes := []int{1, 7, 63, 64, 4095, 4096, 1<<20 - 1, 1 << 20, 1<<20 + 1, 2<<20 + 3, 9 << 20}
	// want[i][v-1] is version v of size i; hashes likewise.
	want := make([][2][]byte, len(sizes))
	hashes := make([][2]uint64, len(sizes))
	for i, n := range sizes {
		for j := range want[i] {
			want[i][j] = apiPattern(uint64(n)<<1|uint64(j), n)
			hashes[i][j] = crc.Payload(want[i][j])
		}
	}
	for _, o := range []struct {
		name string
		opts *Options
	}{{"default", nil}, {"workers=1", &Options{Workers: 1, NoPrefault: true}}} {
		t.Run(o.name, func(t *testing.T) {
			path := apiPath(t)
			f := apiOpen(t, path, o.opts)
			regions := make([][]byte, len(sizes))
			cs := make([]*Checkpoint, len(sizes))
			for i, n := range sizes {
				regions[i] = slices.Clone(want[i][0])
				cs[i] = apiReg(t, f, fmt.Sprintf("size-%d", n), regions[i])
			}
			apiNoErr(t, f.SaveAll(), "SaveAll") // version 1
			for i, n := range sizes {
				copy(regions[i], want[i][1])
				apiNoErr(t, cs[i].Save(), fmt.Sprintf("Save size %d", n)) // version 2
			}
			apiNoErr(t, f.Close(), "Close")

			f = apiOpen(t, path, o.opts)
			for i, n := range sizes {
				regions[i] = make([]byte, n)
				cs[i] = apiReg(t, f, fmt.Sprintf("size-%d", n), regions[i])
				vs := cs[i].Versions()
				if len(vs) != 2 {
					t.Fatalf("size %d: %d versions after reopen", n, len(vs))
				}
				for j, v := range vs {
					if v.Size != int64(n) || v.Hash != hashes[i][j] {
						t.Errorf("size %d v%d: info %+v, want size %d hash %#x", n, v.Version, v, n, hashes[i][j])
					}
				}
			}
			for _, v := range []int{1, 2} {
				for i, n := range sizes {
					apiNoErr(t, cs[i].Restore(v), fmt.Sprintf("size %d Restore(%d)", n, v))
					apiSame(t, regions[i], want[i][v-1], fmt.Sprintf("size %d Restore(%d)", n, v))
				}
			}
			for _, v := range []int{-1, 0} {
				for i := range regions {
					clear(regions[i])
				}
				apiNoErr(t, f.RestoreAll(v), fmt.Sprintf("RestoreAll(%d)", v))
				for i, n := range sizes {
					apiSame(t, regions[i], want[i][1+v], fmt.Sprintf("size %d RestoreAll(%d)", n, v))
				}
			}
		})
	}
}
