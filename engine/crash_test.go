package engine

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ckp-go/ckp/store"
)

// The kill test: a child process (this test binary, re-executed) runs a SaveAll loop of
// patterned regions under a sync policy and prints "acked N" after each SaveAll
// returns; the parent kills it with SIGKILL at a random moment, reopens the file and
// checks that every acknowledged SaveAll is there, that all regions hold the same
// versions, and that every kept version restores byte-exact. The next child resumes
// the file and appends.

var crashSizes = []int{4 << 10, 1 << 20, 8 << 20}

type crashConfig struct {
	name   string
	policy string // as parsed by crashPolicy
	keep   int
	kills  int
	diff   bool // Options.Differential, with the sparse pattern
	remote bool // with a remote tier in a directory (store.Dir)
}

func crashPolicy(s string) SyncPolicy {
	switch {
	case s == "none":
		return SyncNone
	case s == "async":
		return SyncAsync
	case s == "always":
		return SyncAlways
	case strings.HasPrefix(s, "every"):
		n, _ := strconv.Atoi(s[len("every"):])
		return SyncEvery(n)
	case strings.HasPrefix(s, "interval"):
		d, _ := time.ParseDuration(s[len("interval"):])
		return SyncInterval(d)
	}
	panic("bad policy " + s)
}

// TestKillChild is the child's body; it does nothing unless run by TestKill.
func TestKillChild(t *testing.T) {
	path := os.Getenv("CKP_KILL_PATH")
	if path == "" {
		t.Skip("helper process for TestKill")
	}
	keep, _ := strconv.Atoi(os.Getenv("CKP_KILL_KEEP"))
	err := crashChild(path, crashPolicy(os.Getenv("CKP_KILL_POLICY")), keep, os.Getenv("CKP_KILL_DIFF") == "1", os.Getenv("CKP_KILL_REMOTE"))
	fmt.Println("error", err)
	os.Exit(3)
}

func crashChild(path string, p SyncPolicy, keep int, diff bool, remote string) error {
	opts := &Options{Sync: p, KeepVersions: keep, Differential: diff}
	if remote != "" {
		st, err := store.Dir(remote)
		if err != nil {
			return err
		}
		opts.Remote = &Remote{Store: st}
	}
	f, err := Open(path, opts)
	if err != nil {
		return err
	}
	regions := make([][]byte, len(crashSizes))
	cks := make([]*Checkpoint, len(crashSizes))
	for i, n := range crashSizes {
		regions[i] = make([]byte, n)
		if cks[i], err = f.Register(fmt.Sprintf("region-%d", i), regions[i]); err != nil {
			return err
		}
	}
	next := 1
	if vs := cks[0].Versions(); len(vs) > 0 {
		next = vs[len(vs)-1].Version + 1
	}
	fmt.Println("ready", next)
	for v := next; ; v++ {
		for i := range regions {
			if diff {
				// Only the blocks that change; the first time, all of them.
				from := v - 1
				if v == next {
					from = 0
				}
				crashFillSparse(regions[i], i, v, from)
				continue
			}
			crashFill(regions[i], i, v)
		}
		if err := f.SaveAll(); err != nil {
			return err
		}
		fmt.Println("acked", v)
	}
}

// crashVerify reopens the file and checks it against the newest acknowledged version.
// It returns the newest version found.
func crashVerify(t *testing.T, path string, acked, keep int, diff bool) int {
	t.Helper()
	f, err := Open(path, nil)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer f.Close()
	regions := make([][]byte, len(crashSizes))
	cks := make([]*Checkpoint, len(crashSizes))
	for i, n := range crashSizes {
		regions[i] = make([]byte, n)
		if cks[i], err = f.Register(fmt.Sprintf("region-%d", i), regions[i]); err != nil {
			t.Fatal(err)
		}
	}
	vs0 := cks[0].Versions()
	for i := 1; i < len(cks); i++ {
		vs := cks[i].Versions()
		if len(vs) != len(vs0) {
			t.Fatalf("region %d has %d versions, region 0 has %d", i, len(vs), len(vs0))
		}
		for j := range vs {
			if vs[j].Version != vs0[j].Version || vs[j].Txn != vs0[j].Txn {
				t.Fatalf("region %d version list differs from region 0 at %d: %v vs %v", i, j, vs[j], vs0[j])
			}
		}
	}
	newest := 0
	if len(vs0) > 0 {
		newest = vs0[len(vs0)-1].Version
	}
	if newest < acked {
		t.Fatalf("acknowledged version %d lost: newest is %d (recovery %+v)", acked, newest, f.Recovered())
	}
	if keep > 0 && len(vs0) > keep {
		t.Fatalf("%d versions kept, KeepVersions is %d", len(vs0), keep)
	}
	if keep == 0 && len(vs0) != newest {
		t.Fatalf("keep-all file has %d versions, newest is %d", len(vs0), newest)
	}
	check := crashCheck
	if diff {
		check = crashCheckSparse
	}
	for _, vi := range vs0 {
		for i, c := range cks {
			if err := c.Restore(vi.Version); err != nil {
				t.Fatalf("restore region %d version %d: %v", i, vi.Version, err)
			}
			if err := check(regions[i], i, vi.Version); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rep, err := f.Verify(nil); err != nil || !rep.OK() {
		t.Fatalf("Verify after kill: %v %+v", err, rep)
	}
	if newest > 0 {
		if err := f.RestoreAll(0); err != nil {
			t.Fatal(err)
		}
		for i := range regions {
			if err := check(regions[i], i, newest); err != nil {
				t.Fatalf("RestoreAll(0): %v", err)
			}
		}
	}
	return newest
}

func TestKill(t *testing.T) {
	// Every policy with KeepVersions 0 (keep all), 1 and 3: 15 mixes, 4 kills each.
	var configs []crashConfig
	for _, p := range []string{"none", "async", "always", "every4", "interval5ms"} {
		for _, k := range []int{0, 1, 3} {
			configs = append(configs, crashConfig{name: fmt.Sprintf("%s-keep%d", p, k), policy: p, keep: k, kills: 4})
		}
	}
	// Differential saves (deltas, pinned chains, tracking) under the policies that
	// flush differently.
	for _, p := range []string{"none", "always", "every4"} {
		for _, k := range []int{0, 2} {
			configs = append(configs, crashConfig{name: fmt.Sprintf("diff-%s-keep%d", p, k), policy: p, keep: k, kills: 4, diff: true})
		}
	}
	// The same with a remote tier in a directory: its uploads run while the writer dies.
	configs = append(configs, crashConfig{name: "none-keep1-remote", policy: "none", keep: 1, kills: 4, remote: true},
		crashConfig{name: "always-keep3-remote", policy: "always", keep: 3, kills: 4, remote: true},
		crashConfig{name: "every4-keep0-remote", policy: "every4", keep: 0, kills: 4, remote: true})
	if testing.Short() {
		for i := range configs {
			configs[i].kills = 2
		}
	}
	var total atomic.Int64
	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kill.ckp")
			var remote string
			if cfg.remote {
				remote = t.TempDir()
			}
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			prev := 0
			for k := 0; k < cfg.kills; k++ {
				acked, killedAt := crashRunAndKill(t, path, cfg, r, remote)
				// Nothing acknowledged in an earlier run may be lost either.
				newest := crashVerify(t, path, max(acked, prev), cfg.keep, cfg.diff)
				if remote != "" {
					crashVerifyStore(t, remote, newest)
				}
				prev = newest
				total.Add(1)
				t.Logf("kill %d after %v: acked %d, found %d", k, killedAt, acked, newest)
			}
		})
	}
	t.Logf("%d kills", total.Load())
}

// crashRunAndKill starts a child on path and kills it at a random moment after it is
// ready. It returns the newest acknowledged version.
func crashRunAndKill(t *testing.T, path string, cfg crashConfig, r *rand.Rand, remote string) (int, time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"CKP_KILL_PATH="+path,
		"CKP_KILL_POLICY="+cfg.policy,
		"CKP_KILL_KEEP="+strconv.Itoa(cfg.keep),
		"CKP_KILL_DIFF="+map[bool]string{true: "1", false: "0"}[cfg.diff],
		"CKP_KILL_REMOTE="+remote)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	acked := 0
	ready := false
	var failure string
	deadline := time.After(60 * time.Second)
	var kill <-chan time.Time
	delay := time.Duration(r.IntN(60)) * time.Millisecond
	start := time.Now()
	for kill == nil || lines != nil {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil
				if kill == nil {
					kill = time.After(0)
				}
				continue
			}
			switch {
			case strings.HasPrefix(l, "ready"):
				ready = true
				start = time.Now()
				kill = time.After(delay)
			case strings.HasPrefix(l, "acked "):
				acked, _ = strconv.Atoi(l[len("acked "):])
			case strings.HasPrefix(l, "error"):
				failure = l
			}
		case <-kill:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			kill = make(chan time.Time) // never again
			if lines == nil {
				goto done
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatal("child did not get ready or die within 60 s")
		}
	}
done:
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v (%s)", err, failure)
	}
	if !ready {
		t.Fatalf("child was killed before it was ready (%s)", failure)
	}
	return acked, time.Since(start)
}

// crashVerifyStore checks the remote tier's store after a kill: every committed version a
// restart may use is whole and holds its pattern, and the newest version committed for every
// region is not newer than the local file's.
func crashVerifyStore(t *testing.T, dir string, newest int) {
	t.Helper()
	st, err := store.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyStore(t.Context(), st, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("store damaged after a kill: %+v", rep.Damaged)
	}
	js, err := InspectJob(t.Context(), st, 1)
	if err != nil {
		t.Fatal(err)
	}
	if js.Newest[0] > newest {
		t.Fatalf("the store's newest complete version %d is newer than the local file's %d", js.Newest[0], newest)
	}
	vs, err := StoreVersions(t.Context(), st, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range crashSizes {
		name := fmt.Sprintf("region-%d", i)
		for _, v := range vs {
			// Versions of a life the restart abandoned (saved after the point the
			// next life restarted from) are no longer readable: retention deletes them.
			if v.Name != name || !v.Restorable {
				continue
			}
			b, _, err := ReadStoreVersion(t.Context(), st, 0, name, v.Version)
			if err != nil {
				t.Fatal(err)
			}
			if err := crashCheck(b, i, v.Version); err != nil {
				t.Fatalf("committed %s@%d: %v", name, v.Version, err)
			}
		}
	}
}
