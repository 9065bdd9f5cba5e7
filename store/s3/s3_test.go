package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ckp-go/ckp/internal/s3test"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/s3"
	"github.com/ckp-go/ckp/store/storetest"
)

// config returns the configuration of a store on srv in bucket under prefix.
func config(srv *s3test.Server, bucket, prefix string) s3.Config {
	return s3.Config{
		Endpoint:  srv.Endpoint,
		Bucket:    bucket,
		Prefix:    prefix,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		Insecure:  true,
	}
}

func mustNew(t testing.TB, cfg s3.Config) store.Store {
	t.Helper()
	s, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	t.Run("prefix", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return mustNew(t, config(srv, srv.NewBucket(t), "/runs/42/"))
		})
	})
	t.Run("bucket root", func(t *testing.T) {
		if testing.Short() {
			t.Skip("the suite once more, without a prefix")
		}
		storetest.Run(t, func(t *testing.T) store.Store {
			return mustNew(t, config(srv, srv.NewBucket(t), ""))
		})
	})
}

// TestPrefixesApart checks that stores with different prefixes in one bucket see
// only their own objects, and that the objects are where the package says.
func TestPrefixesApart(t *testing.T) {
	srv := s3test.Start(t)
	ctx := t.Context()
	a := mustNew(t, config(srv, srv.Bucket(), "a"))
	ab := mustNew(t, config(srv, srv.Bucket(), "a/b"))
	if err := a.Put(ctx, "x", strings.NewReader("in a"), 4); err != nil {
		t.Fatal(err)
	}
	if err := ab.Put(ctx, "y", strings.NewReader("in a/b"), 6); err != nil {
		t.Fatal(err)
	}
	objs, err := ab.List(ctx, "")
	if err != nil || len(objs) != 1 || objs[0].Key != "y" {
		t.Fatalf("List of a/b = %+v, %v", objs, err)
	}
	if _, err := srv.Client().StatObject(ctx, srv.Bucket(), "a/b/y", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("object a/b/y: %v", err)
	}
	if got, want := ab.String(), "s3://"+srv.Bucket()+"/a/b (http://"+srv.Endpoint+")"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestLargeCreateRace checks that If-None-Match holds for multipart uploads: of
// several concurrent Creates of a key, each uploaded in parts, exactly one wins.
func TestLargeCreateRace(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 3 x 20 MiB")
	}
	srv := s3test.Start(t)
	s := mustNew(t, config(srv, srv.Bucket(), "p"))
	s3.SetSizes(s, 5<<20, 5<<20)
	ctx := t.Context()
	const writers, size = 3, 20 << 20
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			data := bytes.Repeat([]byte{byte('a' + i)}, size)
			errs[i] = storetest.RetryCreate(ctx, s, "big", data)
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both created the object", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	info, err := srv.Client().StatObject(ctx, srv.Bucket(), "p/big", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info.ETag, "-") {
		t.Errorf("ETag %q is not a multipart upload's", info.ETag)
	}
	rc, err := s.Get(ctx, "big", size-3, -1)
	if err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(rc)
	rc.Close()
	if want := bytes.Repeat([]byte{byte('a' + winner)}, 3); !bytes.Equal(tail, want) {
		t.Fatalf("object ends %q, want the winner's %q", tail, want)
	}
	// No upload is left behind by the losers.
	for u := range srv.Client().ListIncompleteUploads(ctx, srv.Bucket(), "p/", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Errorf("incomplete upload left: %s %s", u.Key, u.UploadID)
	}
}

// ops runs every operation of s once and returns their errors by name.
func ops(ctx context.Context, s store.Store) map[string]error {
	errs := map[string]error{}
	errs["Create"] = s.Create(ctx, "k/create", strings.NewReader("x"), 1)
	errs["Put"] = s.Put(ctx, "k/put", strings.NewReader("x"), 1)
	rc, err := s.Get(ctx, "k/put", 0, -1)
	if err == nil {
		rc.Close()
	}
	errs["Get"] = err
	_, errs["List"] = s.List(ctx, "k/")
	errs["Delete"] = s.Delete(ctx, "k/put")
	return errs
}

func TestWrongKeys(t *testing.T) {
	srv := s3test.Start(t)
	for _, tc := range []struct{ name, ak, sk string }{
		{"wrong secret", srv.AccessKey, "not-the-secret"},
		{"unknown access key", "nobody", srv.SecretKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(srv, srv.Bucket(), "p")
			cfg.AccessKey, cfg.SecretKey = tc.ak, tc.sk
			for op, err := range ops(t.Context(), mustNew(t, cfg)) {
				if !errors.Is(err, store.ErrDenied) || !store.IsPermanent(err) {
					t.Errorf("%s = %v, want ErrDenied", op, err)
				}
			}
		})
	}
}

func TestNoBucket(t *testing.T) {
	srv := s3test.Start(t)
	s := mustNew(t, config(srv, "no-such-bucket", "p"))
	for op, err := range ops(t.Context(), s) {
		if !errors.Is(err, store.ErrNoBucket) || !store.IsPermanent(err) {
			t.Errorf("%s = %v, want ErrNoBucket", op, err)
		}
	}
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachable(t *testing.T) {
	cfg := s3.Config{Endpoint: closedPort(t), Bucket: "bkt", AccessKey: "a", SecretKey: "s", Insecure: true}
	s := mustNew(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	for op, err := range ops(ctx, s) {
		if err == nil || store.IsPermanent(err) {
			t.Errorf("%s = %v, want a transient error", op, err)
		}
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the operations took %v: minio-go retried or waited", d)
	}
}

// TestDeadline checks that a server that accepts connections but never answers
// gives a transient error once the context's deadline passes.
func TestDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns sync.WaitGroup
	defer conns.Wait()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { io.Copy(io.Discard, c); c.Close() })
		}
	}()
	s := mustNew(t, s3.Config{Endpoint: l.Addr().String(), Bucket: "bkt", AccessKey: "a", SecretKey: "s", Insecure: true})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Put(ctx, "k", strings.NewReader("x"), 1)
	if err == nil || store.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put to a silent server = %v, want a transient deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Put returned after %v", d)
	}
	l.Close()
}

// TestRestart stops the server mid-run: operations fail with transient errors and
// work again once it is back.
func TestRestart(t *testing.T) {
	srv := s3test.Start(t)
	s := mustNew(t, config(srv, srv.Bucket(), "run"))
	ctx := t.Context()
	if err := s.Create(ctx, "before", strings.NewReader("kept"), 4); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	for op, err := range ops(dctx, s) {
		if err == nil || store.IsPermanent(err) {
			t.Errorf("server down: %s = %v, want a transient error", op, err)
		}
	}
	cancel()
	srv.Restart()
	for op, err := range ops(ctx, s) {
		if err != nil {
			t.Errorf("server back: %s = %v", op, err)
		}
	}
	rc, err := s.Get(ctx, "before", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "kept" {
		t.Fatalf("object written before the restart = %q", got)
	}
	if err := s.Create(ctx, "before", strings.NewReader("x"), 1); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Create after restart = %v, want ErrExists", err)
	}
}

// proxy puts a reverse proxy in front of srv whose responses modify may change.
func proxy(t *testing.T, srv *s3test.Server, modify func(*http.Response) error) string {
	return proxyWith(t, srv, func(*http.Request) {}, modify)
}

// requestProxy puts a reverse proxy in front of srv that hands every request to
// change before forwarding it.
func requestProxy(t *testing.T, srv *s3test.Server, change func(*http.Request)) string {
	return proxyWith(t, srv, change, nil)
}

// proxyWith puts a reverse proxy in front of srv: change may change each request,
// modify (if not nil) each response.
func proxyWith(t *testing.T, srv *s3test.Server, change func(*http.Request), modify func(*http.Response) error) string {
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the signature covers the Host header
			change(r.Out)
		},
		ModifyResponse: modify,
	}
	ts := httptest.NewServer(rp)
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// TestIgnoresConditional puts a proxy in front of versitygw that makes it look like
// a server that accepts If-None-Match and ignores it: a 412 becomes a 200.
func TestIgnoresConditional(t *testing.T) {
	srv := s3test.Start(t)
	var mu sync.Mutex
	conditional := 0
	addr := proxy(t, srv, func(resp *http.Response) error {
		if resp.Request.Header.Get("If-None-Match") == "" {
			return nil
		}
		mu.Lock()
		conditional++
		mu.Unlock()
		if resp.StatusCode == http.StatusPreconditionFailed {
			resp.Body.Close()
			resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
			resp.Body = http.NoBody
			resp.ContentLength = 0
			resp.Header = http.Header{"Etag": {`"d41d8cd98f00b204e9800998ecf8427e"`}}
		}
		return nil
	})
	cfg := config(srv, srv.Bucket(), "p")
	cfg.Endpoint = addr
	s := mustNew(t, cfg)
	ctx := t.Context()
	for i := range 2 {
		err := s.Create(ctx, "k", strings.NewReader("x"), 1)
		if !errors.Is(err, store.ErrUnsupported) || !store.IsPermanent(err) || !strings.Contains(err.Error(), "ignores If-None-Match") {
			t.Fatalf("Create #%d = %v, want ErrUnsupported saying why", i+1, err)
		}
	}
	if conditional != 2 {
		t.Errorf("%d conditional requests, want 2: the probe runs once", conditional)
	}
	// The rest works, and the probe's scratch key is gone.
	if err := s.Put(ctx, "k", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	for obj := range srv.Client().ListObjects(ctx, srv.Bucket(), minio.ListObjectsOptions{Prefix: "p/", Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		if obj.Key != "p/k" {
			t.Errorf("object %q left in the bucket", obj.Key)
		}
	}
}

// TestNotImplemented: a server that refuses If-None-Match with 501.
func TestNotImplemented(t *testing.T) {
	srv := s3test.Start(t)
	addr := proxy(t, srv, func(resp *http.Response) error {
		if resp.Request.Header.Get("If-None-Match") != "" {
			resp.Body.Close()
			body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not implemented.</Message></Error>`
			resp.StatusCode, resp.Status = http.StatusNotImplemented, "501 Not Implemented"
			resp.Body = io.NopCloser(strings.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header = http.Header{"Content-Type": {"application/xml"}}
		}
		return nil
	})
	cfg := config(srv, srv.Bucket(), "p")
	cfg.Endpoint = "http://" + addr
	cfg.Insecure = false // the URL's scheme says plain HTTP
	s := mustNew(t, cfg)
	err := s.Create(t.Context(), "k", strings.NewReader("x"), 1)
	if !errors.Is(err, store.ErrUnsupported) {
		t.Fatalf("Create = %v, want ErrUnsupported", err)
	}
	if err := s.Put(t.Context(), "k", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
}

func TestNew(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	ok := s3.Config{Endpoint: "localhost:9000", Bucket: "bucket", AccessKey: "a", SecretKey: "s"}
	tests := []struct {
		name   string
		change func(*s3.Config)
		str    string // "": New fails with ErrInvalid
	}{
		{"host:port", func(*s3.Config) {}, "s3://bucket (https://localhost:9000)"},
		{"insecure", func(c *s3.Config) { c.Insecure = true }, "s3://bucket (http://localhost:9000)"},
		{"http URL", func(c *s3.Config) { c.Endpoint = "http://localhost:9000" }, "s3://bucket (http://localhost:9000)"},
		{"https URL", func(c *s3.Config) { c.Endpoint = "https://s3.example.com/" }, "s3://bucket (https://s3.example.com)"},
		{"default endpoint", func(c *s3.Config) { c.Endpoint = "" }, "s3://bucket (https://s3.amazonaws.com)"},
		{"prefix", func(c *s3.Config) { c.Prefix = "/a/b/" }, "s3://bucket/a/b (https://localhost:9000)"},
		{"https URL but insecure", func(c *s3.Config) { c.Endpoint = "https://h"; c.Insecure = true }, ""},
		{"URL with a path", func(c *s3.Config) { c.Endpoint = "http://h/path" }, ""},
		{"ftp URL", func(c *s3.Config) { c.Endpoint = "ftp://h" }, ""},
		{"host with a path", func(c *s3.Config) { c.Endpoint = "h:9000/x" }, ""},
		{"no bucket", func(c *s3.Config) { c.Bucket = "" }, ""},
		{"bad bucket", func(c *s3.Config) { c.Bucket = "Bad_Bucket" }, ""},
		{"bad prefix", func(c *s3.Config) { c.Prefix = "a//b" }, ""},
		{"reserved prefix", func(c *s3.Config) { c.Prefix = ".tmp-x" }, ""},
		{"no keys", func(c *s3.Config) { c.AccessKey, c.SecretKey = "", "" }, ""},
		{"no secret key", func(c *s3.Config) { c.SecretKey = "" }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.change(&cfg)
			s, err := s3.New(cfg)
			if tc.str == "" {
				if !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("New(%+v) = %v, want ErrInvalid", cfg, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.String() != tc.str {
				t.Fatalf("String() = %q, want %q", s.String(), tc.str)
			}
		})
	}
}

// TestEnvKeys checks that the keys come from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY when the configuration has none.
func TestEnvKeys(t *testing.T) {
	srv := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	s := mustNew(t, s3.Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket(), Insecure: true})
	if err := s.Put(t.Context(), "k", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	s = mustNew(t, s3.Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket(), Insecure: true})
	if err := s.Put(t.Context(), "k", strings.NewReader("x"), 1); !errors.Is(err, store.ErrDenied) {
		t.Fatalf("Put with a wrong secret from the environment = %v, want ErrDenied", err)
	}
}

func TestParseLocation(t *testing.T) {
	tests := []struct {
		loc, bucket, prefix string
		ok                  bool
	}{
		{"s3://bucket", "bucket", "", true},
		{"s3://bucket/", "bucket", "", true},
		{"s3://bucket/run/42", "bucket", "run/42", true},
		{"s3://bucket/run/42/", "bucket", "run/42", true},
		{"s3://my.bucket-1//a", "my.bucket-1", "a", true},
		{"s3://", "", "", false},
		{"s3:///prefix", "", "", false},
		{"bucket/prefix", "", "", false},
		{"S3://bucket", "", "", false},
		{"s3://Bad_Bucket/x", "", "", false},
		{"s3://bucket/a//b", "", "", false},
		{"s3://bucket/a/../b", "", "", false},
	}
	for _, tc := range tests {
		bucket, prefix, err := s3.ParseLocation(tc.loc)
		if !tc.ok {
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("ParseLocation(%q) = %q, %q, %v; want ErrInvalid", tc.loc, bucket, prefix, err)
			}
			continue
		}
		if err != nil || bucket != tc.bucket || prefix != tc.prefix {
			t.Errorf("ParseLocation(%q) = %q, %q, %v; want %q, %q", tc.loc, bucket, prefix, err, tc.bucket, tc.prefix)
		}
	}
}

// TestKeyConflictVersitygw: versitygw's posix backend, like Dir, cannot hold both "a"
// and "a/b"; the second write is a permanent ErrInvalid, not a retryable conflict.
func TestKeyConflictVersitygw(t *testing.T) {
	srv := s3test.Start(t)
	s := mustNew(t, config(srv, srv.Bucket(), "p"))
	ctx := t.Context()
	for _, k := range []string{"a/b", "f"} {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a", "f/g"} {
		if err := s.Put(ctx, k, strings.NewReader("y"), 1); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Put(%q) = %v, want ErrInvalid", k, err)
		}
		if err := s.Create(ctx, k, strings.NewReader("y"), 1); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Create(%q) = %v, want ErrInvalid", k, err)
		}
	}
}

// TestVerifiedContent: a Create whose context says the caller verifies the bytes
// (store.WithVerifiedContent) sends its payload unsigned, in one PUT or in parts,
// and is still a conditional create that stores exactly those bytes; without the
// hint, payloads are signed.
func TestVerifiedContent(t *testing.T) {
	srv := s3test.Start(t)
	var mu sync.Mutex
	var seen []string // the payload signature of each PUT with a body
	addr := requestProxy(t, srv, func(r *http.Request) {
		if r.Method == http.MethodPut && r.ContentLength != 0 {
			mu.Lock()
			seen = append(seen, r.Header.Get("X-Amz-Content-Sha256"))
			mu.Unlock()
		}
	})
	cfg := config(srv, srv.Bucket(), "v")
	cfg.Endpoint = addr
	s := mustNew(t, cfg)
	s3.SetSizes(s, 5<<20, 6<<20)
	vctx := store.WithVerifiedContent(t.Context())
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		size     int
		want     string // the signature of every request that sends the payload
		requests int
	}{
		{"signed", t.Context(), 3 << 20, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", 1},
		{"unsigned", vctx, 3 << 20, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", 1},
		{"unsigned parts", vctx, 11 << 20, "UNSIGNED-PAYLOAD", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := bytes.Repeat([]byte(tc.name), tc.size/len(tc.name)+1)[:tc.size]
			mu.Lock()
			seen = nil
			mu.Unlock()
			if err := s.Create(tc.ctx, tc.name, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			got := seen
			mu.Unlock()
			if len(got) != tc.requests {
				t.Errorf("%d PUTs with a body, want %d", len(got), tc.requests)
			}
			for _, g := range got {
				if g != tc.want {
					t.Errorf("payload sent as %q, want %q", g, tc.want)
				}
			}
			if err := s.Create(tc.ctx, tc.name, bytes.NewReader(data), int64(len(data))); !errors.Is(err, store.ErrExists) {
				t.Fatalf("second Create = %v, want ErrExists", err)
			}
			rc, err := s.Get(t.Context(), tc.name, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			back, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("read back %d bytes (%v), want the %d written", len(back), err, len(data))
			}
		})
	}
}

// TestVerifiedContentDamaged: bytes of an unsigned single PUT damaged on the way to
// the server fail its checksum: the Create fails (a transient error, which a retry
// cures) and no object appears.
func TestVerifiedContentDamaged(t *testing.T) {
	srv := s3test.Start(t)
	var damage atomic.Bool
	damage.Store(true)
	addr := requestProxy(t, srv, func(r *http.Request) {
		if r.Method == http.MethodPut && r.ContentLength > 1<<20 && damage.Load() {
			r.Body = &flipper{r: r.Body, at: 1 << 20}
		}
	})
	cfg := config(srv, srv.Bucket(), "d")
	cfg.Endpoint = addr
	s := mustNew(t, cfg)
	ctx := store.WithVerifiedContent(t.Context())
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<17) // 2 MiB
	err := s.Create(ctx, "k", bytes.NewReader(data), int64(len(data)))
	if err == nil || store.IsPermanent(err) {
		t.Fatalf("Create of damaged bytes = %v, want a transient error", err)
	}
	t.Logf("Create of damaged bytes: %v", err)
	if _, err := s.Get(t.Context(), "k", 0, -1); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Get after the damaged Create = %v, want ErrNotExist", err)
	}
	damage.Store(false)
	if err := s.Create(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Create again, undamaged: %v", err)
	}
}

// flipper flips one bit of the byte at offset at of the stream it reads.
type flipper struct {
	r   io.ReadCloser
	at  int64
	pos int64
}

func (f *flipper) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.pos && f.at < f.pos+int64(n) {
		p[f.at-f.pos] ^= 1
	}
	f.pos += int64(n)
	return n, err
}

func (f *flipper) Close() error { return f.r.Close() }

// TestPrepare: Prepare runs the probe of conditional creates ahead of the first
// Create, which then sends one conditional request, its own.
func TestPrepare(t *testing.T) {
	srv := s3test.Start(t)
	var conditional atomic.Int32
	addr := requestProxy(t, srv, func(r *http.Request) {
		if r.Header.Get("If-None-Match") != "" {
			conditional.Add(1)
		}
	})
	cfg := config(srv, srv.Bucket(), "p")
	cfg.Endpoint = addr
	s := mustNew(t, cfg)
	p, ok := s.(store.Preparer)
	if !ok {
		t.Fatal("the S3 store is not a store.Preparer")
	}
	if err := p.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := conditional.Load(); n != 2 {
		t.Fatalf("Prepare sent %d conditional requests, want the probe's 2", n)
	}
	if err := s.Create(t.Context(), "k", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if n := conditional.Load(); n != 3 {
		t.Fatalf("%d conditional requests after a Create, want 3: the probe runs once", n)
	}
}
