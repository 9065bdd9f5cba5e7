// Package s3test runs a real S3 server for tests: versitygw, built from the version
// pinned in tools/go.mod, serving a temporary directory on a loopback port.
//
//	srv := s3test.Start(t)
//	bucket := srv.NewBucket(t)
//	... s3.New(s3.Config{Endpoint: srv.Endpoint, Bucket: bucket, AccessKey: srv.AccessKey,
//	        SecretKey: srv.SecretKey, Insecure: true}) ...
//	srv.Stop()    // the server is down: operations fail
//	srv.Restart() // up again on the same port, with the same objects
//
// The binary is built once into a cache directory ($CKP_CACHE, or the user's cache
// directory's ckp/), guarded by a lock file so that test packages running in parallel
// build it once; .ci/s3-setup.sh builds it ahead of the tests. If it cannot be built,
// Start skips the test and says why, unless CKP_S3_REQUIRE=1, when it fails the test.
// The server is killed at the test's cleanup, and on Linux also when the test process
// dies.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Module is the Go module of the S3 server, and Package its command.
const (
	Module  = "github.com/versity/versitygw"
	Package = Module + "/cmd/versitygw"
)

// RequireEnv is the environment variable that, set to 1, turns a server that cannot
// be built from a skipped test into a failed one (CI sets it).
const RequireEnv = "CKP_S3_REQUIRE"

// Server is a running versitygw.
type Server struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string // the root user's access key
	SecretKey string // and secret key
	Dir       string // the directory the server keeps buckets and objects in
	Region    string // the region the server answers for

	tb      testing.TB
	bin     string
	logPath string
	bucket  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	client *minio.Client
}

// Start builds versitygw if it is not cached yet, starts it on a free loopback port
// with a new, empty directory and random root keys, creates the bucket Bucket returns,
// and stops the server at the end of the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("s3test: no S3 server (%s=1): %v", RequireEnv, err)
		}
		tb.Skipf("s3test: no S3 server, skipping (run .ci/s3-setup.sh, or set %s=1 to fail instead): %v", RequireEnv, err)
	}
	s := &Server{
		AccessKey: "ckp" + randomHex(8),
		SecretKey: randomHex(20),
		Dir:       tb.TempDir(),
		Region:    "us-east-1",
		tb:        tb,
		bin:       bin,
		logPath:   filepath.Join(tb.TempDir(), "versitygw.log"),
	}
	tb.Cleanup(s.Stop)
	// Another process may take the free port before the server binds it: try anew.
	for try := 1; ; try++ {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("s3test: %v", err)
		}
		s.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = s.start()
		if err == nil {
			break
		}
		if try == 3 {
			tb.Fatalf("s3test: %v", err)
		}
		tb.Logf("s3test: %v; trying another port", err)
	}
	s.bucket = s.NewBucket(tb)
	return s
}

// URL returns the server's address as a URL: "http://127.0.0.1:PORT".
func (s *Server) URL() string { return "http://" + s.Endpoint }

// Bucket returns the name of the bucket Start created.
func (s *Server) Bucket() string { return s.bucket }

var bucketSeq atomic.Int64

// NewBucket creates a new, empty bucket and returns its name.
func (s *Server) NewBucket(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("ckp-%d-%s", bucketSeq.Add(1), randomHex(4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client().MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		tb.Fatalf("s3test: make bucket %s: %v", name, err)
	}
	return name
}

// Client returns a minio-go client of the server with the root keys.
func (s *Server) Client() *minio.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		c, err := minio.New(s.Endpoint, &minio.Options{
			Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
			Region: s.Region,
		})
		if err != nil {
			s.tb.Fatalf("s3test: client: %v", err)
		}
		s.client = c
	}
	return s.client
}

// Stop kills the server, as a crash would, and waits until it has exited. The objects
// stay in Dir. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// Restart stops the server if it runs and starts it again on the same port and
// directory, waiting until it answers. It fails the test (the one given to Start) if
// the server does not come up; call it from that test's goroutine.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	var err error
	for range 20 { // the port may take a moment to be free again
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("s3test: restart: %v", err)
}

// start starts the server and waits until it answers HTTP.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- s3test: starting %s on %s\n", s.bin, s.Endpoint)
	cmd := exec.Command(s.bin, "--port", s.Endpoint, "--region", s.Region, "--quiet", "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := startLocked(cmd); err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("versitygw on %s exited at start: %s\n%s", s.Endpoint, cmd.ProcessState, s.logTail())
		default:
		}
		resp, err := client.Get(s.URL() + "/")
		if err == nil {
			resp.Body.Close()
			if resp.Header.Get("Server") == "VERSITYGW" {
				return nil
			}
			// Someone else answers on the port: ours cannot have bound it.
			s.Stop()
			return fmt.Errorf("another server (%q) answers on %s", resp.Header.Get("Server"), s.Endpoint)
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("versitygw on %s does not answer after 30 s: %v\n%s", s.Endpoint, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startLocked starts cmd from one goroutine that stays locked to its OS thread for the
// life of the process: Linux sends the parent-death signal when the thread that
// started a child exits, and this thread never does.
func startLocked(cmd *exec.Cmd) error {
	starterOnce.Do(func() {
		starter = make(chan startReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the goroutine and its thread live on
			for r := range starter {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	starter <- startReq{cmd, errc}
	return <-errc
}

type startReq struct {
	cmd  *exec.Cmd
	errc chan error
}

var (
	starterOnce sync.Once
	starter     chan startReq
)

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the versitygw binary of the version pinned in
// tools/go.mod, building it into the cache directory first if it is not there.
func Binary() (string, error) {
	binOnce.Do(func() { binPath, binErr = build() })
	return binPath, binErr
}

// ToolsDir returns the tools module's directory, found from this source file.
func ToolsDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot find the source directory")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", "tools")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("the tools module: %w", err)
	}
	return dir, nil
}

var versionRE = regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(Module) + `\s+(v\S+)`)

// Version returns the versitygw version that tools/go.mod pins.
func Version(toolsDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(toolsDir, "go.mod"))
	if err != nil {
		return "", err
	}
	m := versionRE.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s/go.mod does not require %s", toolsDir, Module)
	}
	return string(m[1]), nil
}

// CacheDir returns the directory the binary is cached in: $CKP_CACHE, or ckp/ in the
// user's cache directory.
func CacheDir() (string, error) {
	if d := os.Getenv("CKP_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "ckp"), nil
}

func build() (string, error) {
	tools, err := ToolsDir()
	if err != nil {
		return "", err
	}
	version, err := Version(tools)
	if err != nil {
		return "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	dir := filepath.Join(cache, "versitygw-"+version)
	bin := filepath.Join(dir, "versitygw")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExecutable(bin) { // built by another process while this one waited
		return bin, nil
	}
	goBin, err := goCommand()
	if err != nil {
		return "", err
	}
	tmp := bin + ".tmp" + strconv.Itoa(os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp, Package)
	cmd.Dir = tools
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build versitygw %s (go build in %s): %v\n%s", version, tools, err, strings.TrimSpace(out.String()))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "s3test: built versitygw %s in %.0f s into %s\n", version, time.Since(start).Seconds(), bin)
	return bin, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// lockFile takes an exclusive lock on path, waiting for it, and returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// goCommand finds the go command: on PATH, in $GOROOT/bin, or in /usr/local/go/bin.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	for _, p := range []string{filepath.Join(os.Getenv("GOROOT"), "bin", "go"), "/usr/local/go/bin/go"} {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", errors.New("no go command on PATH, in $GOROOT/bin or in /usr/local/go/bin")
}
