package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/s3test"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/s3"
)

// The store commands, against a directory store and a real S3 server, on what the
// engine's remote tier wrote.

// ckpEnv runs the command in dir with extra environment variables.
func ckpEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(ckpBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "TZ=UTC"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ckp %q: %v", args, err)
	}
	return r
}

// remoteJob writes, through the remote tier, versions 1..n of two checkpoints of each
// of ranks ranks to st: checkpoint "a" of rank r at version v holds "rank r version v",
// "b" 3 MiB of the byte v+r.
func remoteJob(t *testing.T, st store.Store, ranks, n int) {
	t.Helper()
	fs := make([]*engine.File, ranks)
	as, bs := make([][]byte, ranks), make([][]byte, ranks)
	for r := 0; r < ranks; r++ { // the job starts: every rank joins it
		f, err := engine.Open(filepath.Join(t.TempDir(), "w.ckp"), &engine.Options{Remote: &engine.Remote{Store: st, Rank: r, Ranks: ranks}})
		if err != nil {
			t.Fatal(err)
		}
		as[r], bs[r] = make([]byte, 32), make([]byte, 3<<20)
		if _, err := f.Register("a", as[r]); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Register("b", bs[r]); err != nil {
			t.Fatal(err)
		}
		if _, err := f.RestoreJob(t.Context()); err != nil {
			t.Fatal(err)
		}
		fs[r] = f
	}
	for r, f := range fs {
		a, b := as[r], bs[r]
		for v := 1; v <= n-r; v++ { // rank r is r versions behind rank 0
			clear(a)
			copy(a, fmt.Sprintf("rank %d version %d", r, v))
			for i := range b {
				b[i] = byte(v + r)
			}
			if err := f.SaveAll(); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStoreCommands(t *testing.T) {
	type loc struct {
		name string
		st   store.Store
		arg  string
		env  []string
		flag []string
	}
	locs := []func(t *testing.T) loc{
		func(t *testing.T) loc {
			dir := t.TempDir()
			ds, err := store.Dir(dir)
			if err != nil {
				t.Fatal(err)
			}
			return loc{"dir", ds, dir, nil, nil}
		},
		func(t *testing.T) loc {
			srv := s3test.Start(t)
			ss, err := s3.New(s3.Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket(), Prefix: "run/1", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true})
			if err != nil {
				t.Fatal(err)
			}
			return loc{"s3", ss, "s3://" + srv.Bucket() + "/run/1",
				[]string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey},
				[]string{"--endpoint", srv.Endpoint, "--insecure"}}
		},
	}
	for i, mk := range locs {
		t.Run([]string{"dir", "s3"}[i], func(t *testing.T) {
			l := mk(t)
			remoteJob(t, l.st, 3, 5)
			work := t.TempDir()
			run := func(args ...string) result {
				t.Helper()
				return ckpEnv(t, work, l.env, append(args, l.flag...)...)
			}

			r := run("job", l.arg)
			if r.code != 0 {
				t.Fatal(r)
			}
			for _, want := range []string{"life 1 (began at the start), started", "0     yes     5       10", "1     yes     4       8", "2     yes     3       6", "job version: 3"} {
				if !strings.Contains(r.stdout, want) {
					t.Fatalf("job: want %q in\n%s", want, r)
				}
			}
			r = run("job", "--json", l.arg)
			var js struct {
				JobVersion int `json:"job_version"`
				Ranks      []struct{ Rank, Newest, Committed int }
			}
			if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || js.JobVersion != 3 || len(js.Ranks) != 3 {
				t.Fatalf("job --json: %v %+v\n%s", err, js, r)
			}

			r = run("ls", l.arg, "--rank", "1")
			if r.code != 0 || !strings.Contains(r.stdout, "a     1..4      4          32 B") || !strings.Contains(r.stdout, "b     1..4      4          3.0 MiB") {
				t.Fatalf("ls: %s", r)
			}
			r = run("ls", l.arg, "a", "--rank", "2")
			if r.code != 0 || strings.Count(r.stdout, "\n") != 4 || !strings.Contains(r.stdout, "d/2/") {
				t.Fatalf("ls NAME: %s", r)
			}
			r = run("cat", l.arg, "a@-1", "--rank", "1")
			if r.code != 0 || !strings.HasPrefix(r.stdout, "rank 1 version 3\x00") {
				t.Fatalf("cat a@-1: %s", r)
			}
			r = run("cat", l.arg, "b@2")
			if r.code != 0 || len(r.stdout) != 3<<20 || r.stdout[0] != 2 {
				t.Fatalf("cat b@2: exit %d, %d bytes, %s", r.code, len(r.stdout), r.stderr)
			}
			r = run("cat", l.arg, "a@9")
			if r.code != 2 || !strings.Contains(r.stderr, "not committed") {
				t.Fatalf("cat of a version not committed: %s", r)
			}
			r = run("verify", l.arg, "--rank", "2")
			if r.code != 0 || !strings.Contains(r.stdout, "OK: 6 version(s) of rank 2") {
				t.Fatalf("verify: %s", r)
			}

			r = run("pull", l.arg, "pulled.ckp", "--rank", "1")
			if r.code != 0 || !strings.Contains(r.stdout, "pulled version 4 of 2 checkpoint(s) of rank 1") {
				t.Fatalf("pull: %s", r)
			}
			r = ckp(t, work, "cat", "pulled.ckp", "a@4")
			if r.code != 0 || !strings.HasPrefix(r.stdout, "rank 1 version 4\x00") {
				t.Fatalf("cat of the pulled file: %s", r)
			}
			r = run("pull", l.arg, "pulled.ckp", "--rank", "1")
			if r.code != 2 || !strings.Contains(r.stderr, "exists") {
				t.Fatalf("pull into an existing file: %s", r)
			}
			r = run("pull", l.arg, "old.ckp", "--rank", "0", "--version", "2")
			if r.code != 0 || !strings.Contains(r.stdout, "pulled version 2") {
				t.Fatalf("pull --version: %s", r)
			}

			// Damage a data object of rank 0: verify says which version, exit 1.
			vs, err := engine.StoreVersions(t.Context(), l.st, 0)
			if err != nil {
				t.Fatal(err)
			}
			var victim engine.StoreVersion
			for _, v := range vs {
				if v.Name == "b" && v.Version == 4 {
					victim = v
				}
			}
			if err := l.st.Put(t.Context(), victim.Objects[0], bytes.NewReader(make([]byte, 3<<20)), 3<<20); err != nil {
				t.Fatal(err)
			}
			r = run("verify", l.arg)
			if r.code != 1 || !strings.Contains(r.stdout, "damaged: b@4") || !strings.Contains(r.stdout, "DAMAGED: 1 damaged version(s)") {
				t.Fatalf("verify of a damaged store: %s", r)
			}
			r = run("cat", l.arg, "b@4")
			if r.code != 2 || !strings.Contains(r.stderr, "does not match its hash") || r.stdout != "" {
				t.Fatalf("cat of a damaged version: exit %d, %d bytes, %s", r.code, len(r.stdout), r.stderr)
			}
		})
	}
}

func TestStoreCommandErrors(t *testing.T) {
	work := t.TempDir()
	r := ckp(t, work, "job", "gs://bucket/x")
	if r.code != 2 || !strings.Contains(r.stderr, "only s3:// and directories") {
		t.Fatalf("job of an unknown scheme: %s", r)
	}
	r = ckp(t, work, "ls", work, "--rank", "-1")
	if r.code != 2 || !strings.Contains(r.stderr, "negative") {
		t.Fatalf("ls --rank -1: %s", r)
	}
	r = ckp(t, work, "job", work)
	if r.code != 0 || !strings.Contains(r.stdout, "holds no job") {
		t.Fatalf("job of an empty store: %s", r)
	}
	r = ckp(t, work, "pull", work, "x.ckp")
	if r.code != 2 || !strings.Contains(r.stderr, "no version committed") {
		t.Fatalf("pull from an empty store: %s", r)
	}
	if _, err := os.Stat(filepath.Join(work, "x.ckp")); !os.IsNotExist(err) {
		t.Fatalf("a failed pull left x.ckp: %v", err)
	}
}

// TestStoreTimeoutFlag: --timeout bounds a command on a store that never answers (a
// server that accepts connections and says nothing): it fails with exit code 2 soon
// after the timeout instead of waiting for the store forever.
func TestStoreTimeoutFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }() // read the request, never answer
		}
	}()
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	work := t.TempDir()
	for _, args := range [][]string{
		{"ls", "s3://bucket/run"},
		{"cat", "s3://bucket/run", "grid@1"},
		{"verify", "s3://bucket/run"},
		{"job", "s3://bucket/run"},
	} {
		start := time.Now()
		r := ckp(t, work, append(args, "--endpoint", ln.Addr().String(), "--insecure", "--timeout", "1s")...)
		if r.code != 2 || time.Since(start) > 30*time.Second || !strings.Contains(r.stderr, "deadline exceeded") {
			t.Fatalf("ckp %q with --timeout 1s on a silent store: %s after %v", args, r, time.Since(start))
		}
	}
}
