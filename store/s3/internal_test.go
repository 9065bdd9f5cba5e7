package s3

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/ckp-go/ckp/internal/s3test"
	"github.com/ckp-go/ckp/store"
)

func newInternal(t *testing.T, srv *s3test.Server, prefix string) *s3Store {
	t.Helper()
	st, err := New(Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket(), Prefix: prefix, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return st.(*s3Store)
}

// plain hides every method of a reader but Read.
type plain struct{ r io.Reader }

func (p plain) Read(b []byte) (int, error) { return p.r.Read(b) }

// TestCompleteConditional checks the condition on CompleteMultipartUpload alone,
// without the HEAD that Create asks after a failure: completing an upload onto an
// existing key fails with ErrExists, leaves the object as it was and no upload behind,
// with signed and with unsigned parts.
func TestCompleteConditional(t *testing.T) {
	srv := s3test.Start(t)
	s := newInternal(t, srv, "c")
	s.partSz = 5 << 20
	ctx := t.Context()
	const size = 11 << 20 // three parts
	first := bytes.Repeat([]byte{'1'}, size)
	for i, r := range []io.Reader{bytes.NewReader(first), plain{bytes.NewReader(first)}, bytes.NewReader(first)} {
		unsigned := i == 2
		name := fmt.Sprintf("k%T-%v", r, unsigned)
		if err := s.createMultipart(ctx, name, r, size, unsigned); err != nil {
			t.Fatalf("first upload: %v", err)
		}
		second := bytes.Repeat([]byte{'2'}, size)
		err := s.createMultipart(ctx, name, bytes.NewReader(second), size, unsigned)
		if err = s.fail(ctx, "create", name, err); !errors.Is(err, store.ErrExists) {
			t.Fatalf("second upload = %v, want ErrExists", err)
		}
		rc, err := s.Get(ctx, name, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, first) {
			t.Fatalf("object after a refused upload: %d bytes, %v", len(got), err)
		}
	}
	for u := range srv.Client().ListIncompleteUploads(ctx, srv.Bucket(), "c/", true) {
		t.Errorf("upload left behind: %+v", u)
	}
}

// TestStreamSizeAtPartBoundary checks bodies one byte too long or too short for a
// size that is a whole number of parts, streamed (neither seekable nor readable at
// offsets), through Put (minio-go's multipart upload) and Create (this package's).
func TestStreamSizeAtPartBoundary(t *testing.T) {
	srv := s3test.Start(t)
	s := newInternal(t, srv, "b")
	s.partSz, s.single = 5<<20, 5<<20
	ctx := t.Context()
	const size = 10 << 20
	data := bytes.Repeat([]byte{'x'}, size+1)
	for _, tc := range []struct {
		name string
		body []byte
	}{{"long", data}, {"short", data[:size-1]}} {
		for _, op := range []string{"put", "create"} {
			key := tc.name + "-" + op
			f := s.Put
			if op == "create" {
				f = s.Create
			}
			if err := f(ctx, key, plain{bytes.NewReader(tc.body)}, size); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("%s of a %s body = %v, want ErrInvalid", op, tc.name, err)
			}
			if _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, store.ErrNotExist) {
				t.Errorf("%s of a %s body: Get = %v, want ErrNotExist", op, tc.name, err)
			}
		}
	}
	// And the exact size works both ways.
	for _, f := range []func() error{
		func() error { return s.Put(ctx, "exact-put", plain{bytes.NewReader(data[:size])}, size) },
		func() error { return s.Create(ctx, "exact-create", plain{bytes.NewReader(data[:size])}, size) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	for u := range srv.Client().ListIncompleteUploads(ctx, srv.Bucket(), "b/", true) {
		t.Errorf("upload left behind: %+v", u)
	}
	info, err := srv.Client().StatObject(ctx, srv.Bucket(), "b/exact-create", minio.StatObjectOptions{})
	if err != nil || info.Size != size || !strings.Contains(info.ETag, "-2") {
		t.Fatalf("exact-create: %+v, %v; want %d bytes in 2 parts", info, err, size)
	}
}

// TestListPages checks that List pages through every answer of the server, with
// pages much smaller than the objects listed.
func TestListPages(t *testing.T) {
	srv := s3test.Start(t)
	s := newInternal(t, srv, "p")
	s.pageSize = 3
	ctx := t.Context()
	const n = 25
	for i := range n {
		if err := s.Put(ctx, fmt.Sprintf("k/%03d", i), strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := s.List(ctx, "k/")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != n {
		t.Fatalf("List returned %d objects, want %d", len(objs), n)
	}
	for i, o := range objs {
		if want := fmt.Sprintf("k/%03d", i); o.Key != want {
			t.Fatalf("object %d is %q, want %q", i, o.Key, want)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		h                  string
		first, last, total int64
		ok                 bool
	}{
		{"bytes 0-9/100", 0, 9, 100, true},
		{"bytes 99-99/100", 99, 99, 100, true},
		{"bytes */100", 0, 0, 0, false},
		{"", 0, 0, 0, false},
		{"items 0-9/100", 0, 0, 0, false},
		{"bytes 0-9/*", 0, 0, 0, false},
	}
	for _, tc := range tests {
		f, l, tot, ok := parseContentRange(tc.h)
		if f != tc.first || l != tc.last || tot != tc.total || ok != tc.ok {
			t.Errorf("parseContentRange(%q) = %d, %d, %d, %v", tc.h, f, l, tot, ok)
		}
	}
}

// TestMinioGoDropsMultipartCondition is a canary for the reason createMultipart
// exists: minio-go v7.4.1's PutObject sends If-None-Match with a single PUT but not
// with CompleteMultipartUpload, so a large conditional PutObject replaces an existing
// object. If this test fails, minio-go has fixed it, and Create could use PutObject.
func TestMinioGoDropsMultipartCondition(t *testing.T) {
	srv := s3test.Start(t)
	ctx := t.Context()
	c := srv.Client()
	const size = 11 << 20
	put := func(b byte) error {
		opts := minio.PutObjectOptions{PartSize: 5 << 20}
		opts.SetMatchETagExcept("*")
		_, err := c.PutObject(ctx, srv.Bucket(), "canary", plain{bytes.NewReader(bytes.Repeat([]byte{b}, size))}, size, opts)
		return err
	}
	if err := put('1'); err != nil {
		t.Fatal(err)
	}
	if err := put('2'); err != nil {
		t.Fatalf("minio-go now sends the condition with multipart uploads (%v): Create may use PutObject for large objects", err)
	}
}
