package s3test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestVersion(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		gomod, want string
	}{
		{"module x\n\ntool " + Package + "\n\nrequire " + Module + " v1.8.0 // indirect\n", "v1.8.0"},
		{"module x\n\nrequire (\n\tgithub.com/a/b v1.0.0\n\t" + Module + " v1.9.1\n)\n", "v1.9.1"},
		{"module x\n", ""},
	}
	for _, tc := range tests {
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(tc.gomod), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := Version(dir)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("Version(%q) = %q, %v; want %q", tc.gomod, got, err, tc.want)
		}
	}
	tools, err := ToolsDir()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := Version(tools); err != nil || v == "" {
		t.Fatalf("Version(tools) = %q, %v", v, err)
	}
}

// TestServer starts a server, writes an object, stops the server (operations fail),
// restarts it (the object is still there) and checks that it is stopped at the end.
func TestServer(t *testing.T) {
	srv := Start(t)
	ctx := context.Background()
	c := srv.Client()
	data := []byte("hello, versitygw")
	if _, err := c.PutObject(ctx, srv.Bucket(), "a/b", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	other := srv.NewBucket(t)
	if other == srv.Bucket() {
		t.Fatal("NewBucket returned the default bucket")
	}
	srv.Stop()
	srv.Stop() // twice: no effect
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := c.StatObject(short, srv.Bucket(), "a/b", minio.StatObjectOptions{}); err == nil {
		t.Fatal("StatObject on a stopped server succeeded")
	}
	srv.Restart()
	obj, err := c.GetObject(ctx, srv.Bucket(), "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after Restart: %q, %v", got, err)
	}
	srv.Restart() // while it runs
	if _, err := c.StatObject(ctx, srv.Bucket(), "a/b", minio.StatObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestStopAtCleanup checks that the server of a finished test is gone.
func TestStopAtCleanup(t *testing.T) {
	var pid int
	t.Run("server", func(t *testing.T) {
		srv := Start(t)
		pid = srv.cmd.Process.Pid
	})
	if pid == 0 {
		t.Skip("no server")
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Fatalf("versitygw (pid %d) still runs after its test ended", pid)
	}
}
