// Package storetest is the conformance suite every store.Store passes.
//
// An implementation's test calls Run with a function that returns a new, empty store
// for each subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := store.Dir(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckp-go/ckp/store"
)

// LargeSize is the size of the suite's large object: past S3 clients' 16 MiB part
// size, so that S3 stores upload it in several parts.
const LargeSize = 40 << 20

// Run runs the conformance suite on the stores newStore returns; each call must
// return a new store with no objects in it.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		f    func(*testing.T, store.Store)
	}{
		{"CreateIfAbsent", testCreateIfAbsent},
		{"CreateRace", testCreateRace},
		{"PutReplaces", testPutReplaces},
		{"PutAtomic", testPutAtomic},
		{"GetRanges", testGetRanges},
		{"ZeroSize", testZeroSize},
		{"Large", testLarge},
		{"List", testList},
		{"Delete", testDelete},
		{"NotExist", testNotExist},
		{"InvalidKeys", testInvalidKeys},
		{"ValidKeys", testValidKeys},
		{"BodySize", testBodySize},
		{"Cancelled", testCancelled},
		{"String", testString},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.f(t, newStore(t))
		})
	}
}

// pattern returns n bytes that differ for each seed and position.
func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 0x636b70))
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// onlyReader hides every method of a reader but Read, as a network body would.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func put(t *testing.T, s store.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func create(t *testing.T, s store.Store, key string, data []byte) {
	t.Helper()
	if err := s.Create(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Create(%q, %d bytes): %v", key, len(data), err)
	}
}

// get reads n bytes from off of an object.
func get(ctx context.Context, s store.Store, key string, off, n int64) ([]byte, error) {
	rc, err := s.Get(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return data, err
}

func mustGet(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	data, err := get(t.Context(), s, key, 0, -1)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return data
}

func mustEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes (sha256 %x), want %d bytes (sha256 %x)",
			what, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

func mustNotExist(t *testing.T, s store.Store, key string) {
	t.Helper()
	if _, err := get(t.Context(), s, key, 0, -1); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Get(%q) = %v, want ErrNotExist", key, err)
	}
}

func list(t *testing.T, s store.Store, prefix string) []store.Object {
	t.Helper()
	objs, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return objs
}

func keys(objs []store.Object) []string {
	ks := make([]string, len(objs))
	for i, o := range objs {
		ks[i] = o.Key
	}
	return ks
}

func testCreateIfAbsent(t *testing.T, s store.Store) {
	ctx := t.Context()
	one, two := []byte("first object"), []byte("second, longer object")
	create(t, s, "run/ckp/1", one)
	err := s.Create(ctx, "run/ckp/1", bytes.NewReader(two), int64(len(two)))
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	if !store.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = false", err)
	}
	mustEqual(t, "after a failed Create", mustGet(t, s, "run/ckp/1"), one)
	if objs := list(t, s, ""); len(objs) != 1 || objs[0].Size != int64(len(one)) {
		t.Fatalf("List after a failed Create = %+v, want one object of %d bytes", objs, len(one))
	}
}

// RetryCreate calls Create until it returns nil or a permanent error, waiting a little
// longer each time, as a caller that retries transient errors (S3's 409 conflicts, a
// connection a server broke while refusing the request) does. A retry that gets
// ErrExists compares the object with data, as the Store documentation asks: an
// earlier attempt may have won without its caller hearing of it.
func RetryCreate(ctx context.Context, s store.Store, key string, data []byte) error {
	var err error
	for try := range 8 {
		err = s.Create(ctx, key, onlyReader{bytes.NewReader(data)}, int64(len(data)))
		if try > 0 && errors.Is(err, store.ErrExists) {
			if got, gerr := get(ctx, s, key, 0, -1); gerr == nil && bytes.Equal(got, data) {
				return nil
			}
		}
		if err == nil || store.IsPermanent(err) {
			return err
		}
		time.Sleep(time.Duration(try+1) * 20 * time.Millisecond)
	}
	return err
}

func testCreateRace(t *testing.T, s store.Store) {
	const writers = 16
	const size = 256 << 10
	ctx := t.Context()
	errs := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			data := pattern(size, uint64(i))
			<-start
			errs[i] = RetryCreate(ctx, s, "race/key", data)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both created the object", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrExists):
			t.Errorf("writer %d: Create = %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer created the object")
	}
	mustEqual(t, fmt.Sprintf("object (winner %d)", winner), mustGet(t, s, "race/key"), pattern(size, uint64(winner)))
}

func testPutReplaces(t *testing.T, s store.Store) {
	ctx := t.Context()
	put(t, s, "p/x", []byte("old"))
	put(t, s, "p/x", []byte("the new one"))
	mustEqual(t, "after the second Put", mustGet(t, s, "p/x"), []byte("the new one"))
	put(t, s, "p/x", []byte("s"))
	mustEqual(t, "after a shorter Put", mustGet(t, s, "p/x"), []byte("s"))

	// Put replaces what Create made; Create refuses what Put made.
	create(t, s, "p/c", []byte("created"))
	put(t, s, "p/c", []byte("replaced"))
	mustEqual(t, "Put over Create", mustGet(t, s, "p/c"), []byte("replaced"))
	if err := s.Create(ctx, "p/x", strings.NewReader("z"), 1); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Create over Put = %v, want ErrExists", err)
	}
	if objs := list(t, s, "p/"); len(objs) != 2 {
		t.Fatalf("List = %v, want 2 objects", keys(objs))
	}
}

// testPutAtomic checks that a reader racing with Puts sees one whole version.
func testPutAtomic(t *testing.T, s store.Store) {
	const size = 128 << 10
	versions := [][]byte{bytes.Repeat([]byte{'a'}, size), bytes.Repeat([]byte{'b'}, size/2)}
	put(t, s, "atomic", versions[0])
	ctx := t.Context()
	done := make(chan error, 1)
	go func() {
		for i := range 20 {
			v := versions[(i+1)%2]
			if err := s.Put(ctx, "atomic", bytes.NewReader(v), int64(len(v))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for reading := true; reading; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			reading = false
		default:
		}
		got, err := get(ctx, s, "atomic", 0, -1)
		if err != nil {
			t.Fatalf("Get during Puts: %v", err)
		}
		if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
			t.Fatalf("Get during Puts returned %d bytes that are neither version", len(got))
		}
	}
}

func testGetRanges(t *testing.T, s store.Store) {
	const size = 1000
	data := pattern(size, 7)
	put(t, s, "r/obj", data)
	tests := []struct {
		name   string
		off, n int64
		err    error // nil: want data[off:off+n]
	}{
		{"whole", 0, -1, nil},
		{"whole exactly", 0, size, nil},
		{"head", 0, 10, nil},
		{"middle", 500, 100, nil},
		{"last byte", size - 1, 1, nil},
		{"tail", size - 1, -1, nil},
		{"from middle to end", 300, -1, nil},
		{"empty at start", 0, 0, nil},
		{"empty in middle", 10, 0, nil},
		{"empty at end", size, 0, nil},
		{"empty to end", size, -1, nil},
		{"n past end", 990, 20, store.ErrRange},
		{"n past end from 0", 0, size + 1, store.ErrRange},
		{"off past end", size + 1, -1, store.ErrRange},
		{"off far past end", 2 * size, 5, store.ErrRange},
		{"off past end, n 0", size + 1, 0, store.ErrRange},
		{"negative off", -1, 5, store.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := get(t.Context(), s, "r/obj", tc.off, tc.n)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Get(%d, %d) = %d bytes, %v; want %v", tc.off, tc.n, len(got), err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%d, %d): %v", tc.off, tc.n, err)
			}
			end := int64(size)
			if tc.n >= 0 {
				end = tc.off + tc.n
			}
			mustEqual(t, fmt.Sprintf("Get(%d, %d)", tc.off, tc.n), got, data[tc.off:end])
		})
	}
}

func testZeroSize(t *testing.T, s store.Store) {
	ctx := t.Context()
	put(t, s, "z/put", nil)
	create(t, s, "z/create", nil)
	for _, key := range []string{"z/put", "z/create"} {
		if got := mustGet(t, s, key); len(got) != 0 {
			t.Fatalf("Get(%q) = %d bytes, want 0", key, len(got))
		}
		if got, err := get(ctx, s, key, 0, 0); err != nil || len(got) != 0 {
			t.Fatalf("Get(%q, 0, 0) = %d bytes, %v", key, len(got), err)
		}
		if _, err := get(ctx, s, key, 0, 1); !errors.Is(err, store.ErrRange) {
			t.Fatalf("Get(%q, 0, 1) = %v, want ErrRange", key, err)
		}
		if _, err := get(ctx, s, key, 1, -1); !errors.Is(err, store.ErrRange) {
			t.Fatalf("Get(%q, 1, -1) = %v, want ErrRange", key, err)
		}
	}
	if err := s.Create(ctx, "z/create", bytes.NewReader(nil), 0); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create of an empty object = %v, want ErrExists", err)
	}
	objs := list(t, s, "z/")
	if len(objs) != 2 || objs[0].Size != 0 || objs[1].Size != 0 {
		t.Fatalf("List = %+v, want two empty objects", objs)
	}
}

func testLarge(t *testing.T, s store.Store) {
	if testing.Short() {
		t.Skip("a 40 MiB object: skipped in -short mode")
	}
	ctx := t.Context()
	data := pattern(LargeSize, 11)
	// A plain reader, as a network body would be, then a seekable one.
	if err := s.Create(ctx, "big/obj", onlyReader{bytes.NewReader(data)}, LargeSize); err != nil {
		t.Fatalf("Create of %d bytes: %v", LargeSize, err)
	}
	other := pattern(LargeSize, 12)
	if err := s.Create(ctx, "big/obj", bytes.NewReader(other), LargeSize); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create of %d bytes = %v, want ErrExists", LargeSize, err)
	}
	mustEqual(t, "large object", mustGet(t, s, "big/obj"), data)
	off := int64(16<<20 - 5) // across the first part boundary of an S3 upload
	got, err := get(ctx, s, "big/obj", off, 10)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "range across a part boundary", got, data[off:off+10])
	if objs := list(t, s, "big/"); len(objs) != 1 || objs[0].Size != LargeSize {
		t.Fatalf("List = %+v, want one object of %d bytes", objs, LargeSize)
	}
	put(t, s, "big/obj", other)
	mustEqual(t, "large object after Put", mustGet(t, s, "big/obj"), other)
}

func testList(t *testing.T, s store.Store) {
	before := time.Now().Add(-time.Minute)
	objects := map[string]int{
		"a/1":       1,
		"a/2":       2,
		"a/10":      10,
		"a-1":       3,
		"ab/1":      4,
		"b":         5,
		"c/d/e/f/g": 6,
	}
	for key, n := range objects {
		put(t, s, key, pattern(n, uint64(n)))
	}
	after := time.Now().Add(time.Minute)
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a-1", "a/1", "a/10", "a/2", "ab/1", "b", "c/d/e/f/g"}},
		{"a", []string{"a-1", "a/1", "a/10", "a/2", "ab/1"}},
		{"a/", []string{"a/1", "a/10", "a/2"}},
		{"a/1", []string{"a/1", "a/10"}},
		{"a/10", []string{"a/10"}},
		{"a/3", []string{}},
		{"b", []string{"b"}},
		{"b/", []string{}},
		{"c/d/", []string{"c/d/e/f/g"}},
		{"c/d/e/f/g", []string{"c/d/e/f/g"}},
		{"zz", []string{}},
		{"zz/y/", []string{}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.prefix), func(t *testing.T) {
			objs := list(t, s, tc.prefix)
			if got := keys(objs); !equalStrings(got, tc.want) {
				t.Fatalf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
			}
			for _, o := range objs {
				if o.Size != int64(objects[o.Key]) {
					t.Errorf("%s: size %d, want %d", o.Key, o.Size, objects[o.Key])
				}
				if o.Modified.Before(before) || o.Modified.After(after) {
					t.Errorf("%s: modified %v, want between %v and %v", o.Key, o.Modified, before, after)
				}
			}
		})
	}
	if _, err := s.List(t.Context(), "/a"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("List(%q) = %v, want ErrInvalid", "/a", err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	put(t, s, "d/x/1", []byte("one"))
	put(t, s, "d/x/2", []byte("two"))
	for range 2 { // the second time it is missing: no error
		if err := s.Delete(ctx, "d/x/1"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if err := s.Delete(ctx, "never/was"); err != nil {
		t.Fatalf("Delete of a key never written: %v", err)
	}
	mustNotExist(t, s, "d/x/1")
	if got := keys(list(t, s, "")); !equalStrings(got, []string{"d/x/2"}) {
		t.Fatalf("List after Delete = %q", got)
	}
	if err := s.Delete(ctx, "d/x/2"); err != nil {
		t.Fatal(err)
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("List after deleting all = %q", keys(got))
	}
	// The key is free again, and so is its directory.
	create(t, s, "d/x/1", []byte("again"))
	mustEqual(t, "created after Delete", mustGet(t, s, "d/x/1"), []byte("again"))
	if err := s.Delete(ctx, "d/x/1"); err != nil {
		t.Fatal(err)
	}
	put(t, s, "d/x", []byte("a key where a directory was"))
	mustEqual(t, "where a directory was", mustGet(t, s, "d/x"), []byte("a key where a directory was"))
	if err := s.Delete(ctx, "d/x"); err != nil {
		t.Fatal(err)
	}
}

func testNotExist(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustNotExist(t, s, "missing")
	mustNotExist(t, s, "deeply/nested/missing")
	put(t, s, "here/obj", []byte("x"))
	mustNotExist(t, s, "here/other")
	mustNotExist(t, s, "here") // a prefix of keys, not an object
	_, err := s.Get(ctx, "missing", 0, 1)
	if !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("ranged Get of a missing object = %v, want ErrNotExist", err)
	}
	if !store.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = false", err)
	}
	if _, err := s.Get(ctx, "missing", 0, 0); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("empty Get of a missing object = %v, want ErrNotExist", err)
	}
	if _, err := s.Get(ctx, "missing", 5, -1); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Get from offset 5 of a missing object = %v, want ErrNotExist", err)
	}
}

// InvalidKeys are keys every store rejects with ErrInvalid.
var InvalidKeys = []string{
	"",
	"/a",
	"a/",
	"a//b",
	".",
	"..",
	"./a",
	"a/./b",
	"a/..",
	"../a",
	"a\x00b",
	"\xff\xfe",
	strings.Repeat("k", store.MaxKeyLen+1),
	strings.Repeat("s", store.MaxSegmentLen+1),
	".tmp-x",
	"a/.tmp-y/z",
}

func testInvalidKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, key := range InvalidKeys {
		name := fmt.Sprintf("%.20q", key)
		ops := map[string]func() error{
			"Create": func() error { return s.Create(ctx, key, strings.NewReader("x"), 1) },
			"Put":    func() error { return s.Put(ctx, key, strings.NewReader("x"), 1) },
			"Get":    func() error { _, err := s.Get(ctx, key, 0, -1); return err },
			"Delete": func() error { return s.Delete(ctx, key) },
		}
		for op, f := range ops {
			if err := f(); !errors.Is(err, store.ErrInvalid) || !store.IsPermanent(err) {
				t.Errorf("%s(%s) = %v, want ErrInvalid", op, name, err)
			}
		}
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("List after invalid writes = %q", keys(got))
	}
}

func testValidKeys(t *testing.T, s store.Store) {
	// Long segments, and a long key, if not the longest: a store with a prefix has
	// less than store.MaxKeyLen bytes for its keys.
	long := strings.Join([]string{
		strings.Repeat("a", store.MaxSegmentLen), strings.Repeat("b", store.MaxSegmentLen),
		strings.Repeat("c", store.MaxSegmentLen), strings.Repeat("d", 100),
	}, "/")
	for _, key := range []string{"x", "with space/and-dash_under.score", "ünïcödé/日本", "a.b/.hidden/..dots/...", long, "tmp-not-reserved/.tmp"} {
		data := []byte("value of " + key)
		put(t, s, key, data)
		mustEqual(t, fmt.Sprintf("Get(%.30q)", key), mustGet(t, s, key), data)
		if got := keys(list(t, s, key)); !equalStrings(got, []string{key}) {
			t.Fatalf("List(%.30q) = %.30q", key, got)
		}
		if err := s.Delete(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
}

func testBodySize(t *testing.T, s store.Store) {
	ctx := t.Context()
	data := pattern(100, 3)
	bodies := []struct {
		name string
		r    func() io.Reader
		size int64
	}{
		{"short plain", func() io.Reader { return onlyReader{bytes.NewReader(data[:50])} }, 100},
		{"short seekable", func() io.Reader { return bytes.NewReader(data[:50]) }, 100},
		{"long plain", func() io.Reader { return onlyReader{bytes.NewReader(data)} }, 60},
		{"long seekable", func() io.Reader { return bytes.NewReader(data) }, 60},
		{"empty but size 1", func() io.Reader { return onlyReader{bytes.NewReader(nil)} }, 1},
		{"one byte but size 0", func() io.Reader { return onlyReader{bytes.NewReader(data[:1])} }, 0},
		{"negative size", func() io.Reader { return bytes.NewReader(nil) }, -1},
	}
	ops := []struct {
		name string
		f    func(context.Context, string, io.Reader, int64) error
	}{{"Create", s.Create}, {"Put", s.Put}}
	for _, b := range bodies {
		for _, op := range ops {
			t.Run(b.name+"/"+op.name, func(t *testing.T) {
				key := "body/" + strings.ReplaceAll(b.name, " ", "-") + "-" + op.name
				if err := op.f(ctx, key, b.r(), b.size); err == nil {
					t.Fatalf("%s of a body that does not match size %d succeeded", op.name, b.size)
				}
				mustNotExist(t, s, key)
			})
		}
	}
	// A body that fails mid-way leaves nothing either, and the error says why.
	errBroken := errors.New("broken body")
	r := io.MultiReader(bytes.NewReader(data[:30]), errReader{errBroken})
	if err := s.Put(ctx, "body/broken", r, 100); err == nil {
		t.Fatal("Put of a failing body succeeded")
	}
	mustNotExist(t, s, "body/broken")
	// A failed Put leaves the old object.
	put(t, s, "body/kept", data)
	if err := s.Put(ctx, "body/kept", onlyReader{bytes.NewReader(data[:10])}, 100); err == nil {
		t.Fatal("short Put succeeded")
	}
	mustEqual(t, "after a failed Put", mustGet(t, s, "body/kept"), data)
	if got := keys(list(t, s, "")); !equalStrings(got, []string{"body/kept"}) {
		t.Fatalf("List = %q, want only body/kept", got)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func testCancelled(t *testing.T, s store.Store) {
	put(t, s, "c/exists", []byte("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ops := map[string]func() error{
		"Create": func() error { return s.Create(ctx, "c/new", strings.NewReader("x"), 1) },
		"Put":    func() error { return s.Put(ctx, "c/new", strings.NewReader("x"), 1) },
		"Get":    func() error { _, err := get(ctx, s, "c/exists", 0, -1); return err },
		"List":   func() error { _, err := s.List(ctx, ""); return err },
		"Delete": func() error { return s.Delete(ctx, "c/exists") },
	}
	for name, f := range ops {
		err := f()
		if err == nil {
			t.Errorf("%s with a cancelled context succeeded", name)
			continue
		}
		if !errors.Is(err, context.Canceled) || !store.IsPermanent(err) {
			t.Errorf("%s with a cancelled context = %v, want an error wrapping context.Canceled", name, err)
		}
	}
	mustNotExist(t, s, "c/new")
	mustEqual(t, "after cancelled Delete", mustGet(t, s, "c/exists"), []byte("x"))

	// A context cancelled while the body is being sent stops the write.
	ctx, cancel = context.WithCancel(t.Context())
	body := io.MultiReader(bytes.NewReader(pattern(1<<20, 5)), cancelReader{cancel}, bytes.NewReader(pattern(1<<20, 6)))
	if err := s.Put(ctx, "c/mid", body, 2<<20); err == nil {
		t.Fatal("Put cancelled mid-body succeeded")
	}
	mustNotExist(t, s, "c/mid")
}

// cancelReader cancels a context when read, and reads nothing.
type cancelReader struct{ cancel context.CancelFunc }

func (c cancelReader) Read([]byte) (int, error) {
	c.cancel()
	return 0, io.EOF
}

func testString(t *testing.T, s store.Store) {
	if str := s.String(); str == "" || !strings.Contains(str, ":") {
		t.Fatalf("String() = %q, want a location such as dir:/path", str)
	}
}
