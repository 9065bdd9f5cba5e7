package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
)

// The live test: a helper process (this test binary, re-executed with writerEnv set)
// saves in a loop while the command reads the file.

const writerEnv = "CKP_TEST_WRITER"

var liveSizes = []int{4096, 200_000, 1<<20 + 5}

// writerMain registers len(liveSizes) regions and saves them with SaveAll, version v
// holding fill(i, v), until path.stop exists; path.ready appears after the first save.
// It exits 0 after a clean Close, 3 on any error.
func writerMain() int {
	path := os.Getenv(writerEnv)
	f, err := engine.Open(path, &engine.Options{KeepVersions: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		return 3
	}
	regs := make([][]byte, len(liveSizes))
	for i, n := range liveSizes {
		regs[i] = make([]byte, n)
		if _, err := f.Register(fmt.Sprintf("w%d", i), regs[i]); err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			return 3
		}
	}
	saves := 0
	for v := 1; ; v++ {
		if _, err := os.Stat(path + ".stop"); err == nil {
			break
		}
		for i := range regs {
			fill(regs[i], i, v)
		}
		if err := f.SaveAll(); err != nil {
			fmt.Fprintln(os.Stderr, "writer: save:", err)
			return 3
		}
		saves = v
		if v == 1 {
			if err := os.WriteFile(path+".ready", nil, 0o600); err != nil {
				fmt.Fprintln(os.Stderr, "writer:", err)
				return 3
			}
		}
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "writer: close:", err)
		return 3
	}
	fmt.Println(saves)
	return 0
}

func TestLiveWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "live.ckp")
	w := exec.Command(os.Args[0], "-test.run=^$")
	w.Env = append(os.Environ(), writerEnv+"="+path)
	var wout, werr bytes.Buffer
	w.Stdout, w.Stderr = &wout, &werr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		os.WriteFile(path+".stop", nil, 0o600)
		done := make(chan error, 1)
		go func() { done <- w.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer: %v\n%s", err, werr.String())
			}
		case <-time.After(20 * time.Second):
			w.Process.Kill()
			t.Fatalf("writer did not stop\n%s", werr.String())
		}
	}
	defer stop()
	waitFor(t, "the writer's first save", 20*time.Second, func() bool {
		_, err := os.Stat(path + ".ready")
		return err == nil
	})

	last := func() int {
		t.Helper()
		r := mustRun(t, 0, dir, "ls", "--json", "live.ckp")
		var ls struct {
			Checkpoints []lsCheckpointJSON `json:"checkpoints"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &ls); err != nil {
			t.Fatal(err)
		}
		if len(ls.Checkpoints) != len(liveSizes) {
			t.Fatalf("ls lists %d checkpoints: %s", len(ls.Checkpoints), r.stdout)
		}
		l := ls.Checkpoints[0].Last
		for i, c := range ls.Checkpoints {
			// SaveAll is atomic: every name has the same newest version, and retention
			// keeps the newest two.
			if c.Name != fmt.Sprintf("w%d", i) || c.Last != l || c.First != max(1, l-1) || c.Kept != c.Last-c.First+1 ||
				c.Size != int64(liveSizes[i]) {
				t.Fatalf("inconsistent listing: %s", r.stdout)
			}
		}
		return l
	}

	seen := 0
	for round := 0; round < 5; round++ {
		l := last()
		if l < seen {
			t.Fatalf("newest version went back from %d to %d", seen, l)
		}
		seen = l

		r := mustRun(t, 0, dir, "verify", "--json", "live.ckp")
		var vr verifyJSON
		if err := json.Unmarshal([]byte(r.stdout), &vr); err != nil {
			t.Fatal(err)
		}
		if !vr.OK || !vr.WriterActive || vr.Checkpoints != len(liveSizes) || len(vr.Damaged) != 0 {
			t.Fatalf("verify while saving: %s", r.stdout)
		}
		// In process too, where the race detector watches.
		var stdout, stderr bytes.Buffer
		if code := run([]string{"verify", path}, &stdout, &stderr); code != 0 {
			t.Fatalf("verify in process: exit %d\n%s%s", code, stdout.String(), stderr.String())
		}
		r = mustRun(t, 0, dir, "verify", "live.ckp")
		if !strings.Contains(r.stdout, ": OK: ") {
			t.Fatalf("verify while saving: %s", r)
		}

		// One consistent, verified version of every name, from one view.
		out := fmt.Sprintf("out%d", round)
		r = mustRun(t, 0, dir, "export", "--json", "live.ckp", out)
		var ex struct {
			Files []exportJSON `json:"files"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &ex); err != nil {
			t.Fatal(err)
		}
		for i, f := range ex.Files {
			b, err := os.ReadFile(filepath.Join(dir, f.File))
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, liveSizes[i])
			fill(want, i, f.Version)
			if !bytes.Equal(b, want) {
				t.Fatalf("export of %s@%d differs from what the writer saved", f.Name, f.Version)
			}
		}

		// cat of an older version (which retention drops soon) never returns wrong bytes.
		r = ckp(t, dir, "cat", "live.ckp", "w2@-1")
		if r.code == 0 {
			if len(r.stdout) != liveSizes[2] {
				t.Fatalf("cat w2@-1: %d bytes", len(r.stdout))
			}
		} else {
			// Only when the writer dropped it meanwhile; never as damage.
			oneErrorLine(t, r, "dropped by the writer")
		}

		r = mustRun(t, 0, dir, "info", "--json", "live.ckp")
		// (PID 0: the engine's compaction drops the writer's pid from the index.)
		var info infoJSON
		if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
			t.Fatal(err)
		}
		if !info.WriterActive || info.LastWriter == nil || info.LastWriter.KeepVersions != 2 || (info.LastWriter.PID != w.Process.Pid && info.LastWriter.PID != 0) {
			t.Fatalf("info while saving: %s", r.stdout)
		}
	}

	// repair needs the lock: it refuses while the writer runs; a dry run does not.
	oneErrorLine(t, mustRun(t, 2, dir, "repair", "live.ckp"), "a writer holds live.ckp")
	mustRun(t, 0, dir, "repair", "--dry-run", "live.ckp")

	// The writer is still saving after all that.
	waitFor(t, "the writer to save again", 20*time.Second, func() bool { return last() > seen })
	stop()
	t.Logf("writer saved %s times", strings.TrimSpace(wout.String()))

	// Closed cleanly: no torn tail, nothing damaged.
	r := mustRun(t, 0, dir, "verify", "live.ckp")
	if strings.Contains(r.stdout, "note:") {
		t.Fatalf("verify after the writer closed: %s", r)
	}
	r = mustRun(t, 0, dir, "info", "live.ckp")
	if !regexp.MustCompile(`(?m)^writer active: +no$`).MatchString(r.stdout) {
		t.Fatalf("info after the writer closed: %s", r)
	}
}
