package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ckp-go/ckp/internal/s3test"
)

// TestS3 runs testdata/s3_test.c against a real S3 server (versitygw on loopback)
// through the C interface: remote=s3://... endpoint= insecure=1 region= with the keys
// in the environment; every remote call; the server stopped and started again under
// it (max_pending= and timeout= then bound the waits, EREMOTEIO says so); a restart
// from the store alone; a missing bucket; and wrong keys.
func TestS3(t *testing.T) {
	exe := compileC(t, false, "s3_test.c", "-std=c11")
	srv := s3test.Start(t)
	args := func(mode string) []string {
		return []string{mode, t.TempDir(), srv.Endpoint, srv.Bucket(), srv.Region}
	}
	env := func(secret string) []string {
		var env []string
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "AWS_") {
				env = append(env, e)
			}
		}
		return append(env, "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+secret)
	}

	t.Run("denied", func(t *testing.T) {
		cmd := exec.Command(exe, args("denied")...)
		cmd.Env = env(srv.SecretKey + "x")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("s3_test denied: %v\n%s", err, out)
		}
	})

	cmd := exec.Command(exe, args("run")...)
	cmd.Env = env(srv.SecretKey)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		l := sc.Text()
		lines = append(lines, l)
		switch l {
		case "pause stop":
			srv.Stop()
		case "pause start":
			srv.Restart()
		default:
			continue
		}
		if _, err := io.WriteString(stdin, "go on\n"); err != nil {
			t.Fatal(err)
		}
	}
	err = cmd.Wait()
	if err != nil || !strings.HasSuffix(lastOf(lines), "checks, 0 failed") {
		var fails []string
		for _, l := range lines {
			if !strings.HasPrefix(l, "ok ") {
				fails = append(fails, l)
			}
		}
		t.Fatalf("s3_test run: %v\n%s", err, strings.Join(fails, "\n"))
	}
	t.Log(lastOf(lines))

	// The store holds what the program committed: manifests of versions 2, 3 and 4
	// (keep_remote=3) of checkpoint "a" of rank 0, all of the job's first life (the
	// restart on another node began the second at version 4 and saved nothing).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got []string
	for o := range srv.Client().ListObjects(ctx, srv.Bucket(), minio.ListObjectsOptions{Prefix: "run/m/0/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		got = append(got, o.Key)
	}
	var want []string
	for v := 2; v <= 4; v++ {
		want = append(want, fmt.Sprintf("run/m/0/%020d/a/%020d", 1, v))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("manifests in the bucket: %v, want %v", got, want)
	}
}

func lastOf(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}
