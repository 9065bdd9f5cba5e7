package remote_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/internal/pattern"
	"github.com/ckp-go/ckp/internal/s3test"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/s3"
)

// Kill tests of the remote tier: real child processes (this test binary, re-executed)
// saving through a real store, killed with SIGKILL.

// storeSpec says how a child reaches the parent's store (through the environment).
type storeSpec struct {
	kind                             string // "dir" or "s3"
	dir                              string
	endpoint, bucket, prefix, ak, sk string
}

func (s storeSpec) env() []string {
	return []string{"CKP_RS_KIND=" + s.kind, "CKP_RS_DIR=" + s.dir, "CKP_RS_ENDPOINT=" + s.endpoint,
		"CKP_RS_BUCKET=" + s.bucket, "CKP_RS_PREFIX=" + s.prefix, "CKP_RS_AK=" + s.ak, "CKP_RS_SK=" + s.sk}
}

func storeSpecFromEnv() (storeSpec, bool) {
	s := storeSpec{kind: os.Getenv("CKP_RS_KIND"), dir: os.Getenv("CKP_RS_DIR"), endpoint: os.Getenv("CKP_RS_ENDPOINT"),
		bucket: os.Getenv("CKP_RS_BUCKET"), prefix: os.Getenv("CKP_RS_PREFIX"), ak: os.Getenv("CKP_RS_AK"), sk: os.Getenv("CKP_RS_SK")}
	return s, s.kind != ""
}

func (s storeSpec) open() (store.Store, error) {
	if s.kind == "dir" {
		return store.Dir(s.dir)
	}
	return s3.New(s3.Config{Endpoint: s.endpoint, Bucket: s.bucket, Prefix: s.prefix, AccessKey: s.ak, SecretKey: s.sk, Insecure: true})
}

func (s storeSpec) mustOpen(t testing.TB) store.Store {
	t.Helper()
	st, err := s.open()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func s3Spec(t *testing.T) storeSpec {
	srv := s3test.Start(t)
	return storeSpec{kind: "s3", endpoint: srv.Endpoint, bucket: srv.NewBucket(t), prefix: "job", ak: srv.AccessKey, sk: srv.SecretKey}
}

// child is a running child process speaking lines on stdout.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startChild(t *testing.T, test string, env []string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, lines: make(chan string, 4096)}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			c.lines <- s.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() { c.kill() })
	return c
}

// expect waits for a line starting with prefix and returns the rest; "error ..." lines
// and the end of output fail the test.
func (c *child) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(120 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited while waiting for %q: %v", prefix, c.cmd.Wait())
			}
			if strings.HasPrefix(l, "error") {
				t.Fatalf("child: %s", l)
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest)
			}
		case <-timeout:
			t.Fatalf("child gave no %q within 120 s", prefix)
		}
	}
}

func (c *child) send(t *testing.T, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		t.Fatalf("send %q: %v", line, err)
	}
}

// kill kills the child with SIGKILL and reaps it; it reports whether it died of it.
func (c *child) kill() bool {
	if c.cmd.ProcessState != nil {
		return false
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	for range c.lines {
	}
	err := c.cmd.Wait()
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
}

// The single-writer kill test.

var remoteKillSizes = []int{4 << 10, 1 << 20, 6<<20 + 4096}

// TestRemoteKillChild is the child of TestRemoteKill.
func TestRemoteKillChild(t *testing.T) {
	path := os.Getenv("CKP_RK_PATH")
	spec, ok := storeSpecFromEnv()
	if path == "" || !ok {
		t.Skip("helper process for TestRemoteKill")
	}
	err := func() error {
		st, err := spec.open()
		if err != nil {
			return err
		}
		f, err := engine.Open(path, &engine.Options{KeepVersions: 2, Remote: &engine.Remote{Store: st, Keep: 3, MaxPending: 64 << 20}})
		if err != nil {
			return err
		}
		regions := make([][]byte, len(remoteKillSizes))
		next := 1
		for i, n := range remoteKillSizes {
			regions[i] = make([]byte, n)
			c, err := f.Register(fmt.Sprintf("r%d", i), regions[i])
			if err != nil {
				return err
			}
			if vs := c.Versions(); len(vs) > 0 {
				next = vs[len(vs)-1].Version + 1
			}
		}
		fmt.Println("ready", next)
		for v := next; ; v++ {
			for i := range regions {
				pattern.Fill(regions[i], i, v)
			}
			if err := f.SaveAll(); err != nil {
				return err
			}
			fmt.Println("acked", v)
		}
	}()
	fmt.Println("error", err)
	os.Exit(3)
}

// TestRemoteKill kills a writer at random moments while its uploads are in flight,
// many times. After each kill: every version the store shows committed is whole
// (its data objects exist and match its hashes); a new node (a fresh directory)
// restores the newest version committed for every checkpoint, byte-exact, and never an
// older one than after the previous kill; and the next writer resumes on the old
// directory, uploading what the killed one had not.
func TestRemoteKill(t *testing.T) {
	kills := 12
	if testing.Short() {
		kills = 4
	}
	for _, spec := range []storeSpec{{kind: "dir", dir: t.TempDir()}, s3Spec(t)} {
		t.Run(spec.kind, func(t *testing.T) {
			st := spec.mustOpen(t)
			path := filepath.Join(t.TempDir(), "w.ckp")
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
			prevTop := 0
			for k := 0; k < kills; k++ {
				c := startChild(t, "TestRemoteKillChild", append(spec.env(), "CKP_RK_PATH="+path))
				c.expect(t, "ready")
				time.Sleep(time.Duration(r.IntN(400)) * time.Millisecond)
				acked := 0
			drain:
				for {
					select {
					case l, ok := <-c.lines:
						if !ok {
							t.Fatalf("kill %d: the child exited before it was killed: %v", k, c.cmd.Wait())
						}
						if strings.HasPrefix(l, "error") {
							t.Fatalf("kill %d: child: %s", k, l)
						}
						if v, ok := strings.CutPrefix(l, "acked "); ok {
							acked, _ = strconv.Atoi(v)
						}
					default:
						break drain
					}
				}
				if !c.kill() {
					t.Fatal("child did not die of SIGKILL")
				}
				top := checkStoreWhole(t, st, 0)
				if top < prevTop {
					t.Fatalf("kill %d: newest complete version went back from %d to %d", k, prevTop, top)
				}
				if top > 0 {
					restoreOnNewNode(t, st, top)
				}
				t.Logf("kill %d: acked %d, newest committed for every checkpoint %d", k, acked, top)
				prevTop = top
			}
			// The last writer on the old node catches up and flushes.
			w := openRemoteWriter(t, path, engine.Options{KeepVersions: 2, Remote: &engine.Remote{Store: st, Keep: 3}}, remoteKillSizes...)
			newest := versionsOf(t, w.cks[0])
			if err := w.f.Close(); err != nil {
				t.Fatal(err)
			}
			if top := checkStoreWhole(t, st, 0); top != newest[len(newest)-1] {
				t.Fatalf("after a clean close the store's newest complete version is %d, the file's %d", top, newest[len(newest)-1])
			}
		})
	}
}

// checkStoreWhole checks that every version rank committed in st is whole and holds
// the pattern of its version, and returns the newest version committed for every
// checkpoint.
func checkStoreWhole(t *testing.T, st store.Store, rank int) int {
	t.Helper()
	rep, err := engine.VerifyStore(t.Context(), st, rank, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("store damaged: %+v", rep.Damaged)
	}
	vs, err := engine.StoreVersions(t.Context(), st, rank)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if !v.Restorable {
			continue // an abandoned life's: whole (VerifyStore) but never restored
		}
		i, _ := strconv.Atoi(strings.TrimPrefix(v.Name, "r"))
		b, _, err := engine.ReadStoreVersion(t.Context(), st, rank, v.Name, v.Version)
		if err != nil {
			t.Fatal(err)
		}
		if err := pattern.Check(b, i, v.Version); err != nil {
			t.Fatalf("committed %s@%d: %v", v.Name, v.Version, err)
		}
	}
	js, err := engine.InspectJob(t.Context(), st, rank+1)
	if err != nil {
		t.Fatal(err)
	}
	return js.Version
}

// restoreOnNewNode opens a fresh directory with the store and checks that RestoreAll(0)
// restores one version of every checkpoint, byte-exact, and not an older one than
// want, the job's restart point (a version committed for every checkpoint after it may
// be newer: its completion was cut short).
func restoreOnNewNode(t *testing.T, st store.Store, want int) {
	t.Helper()
	n := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), engine.Options{Remote: &engine.Remote{Store: st, Keep: 3}}, remoteKillSizes...)
	defer n.f.Close()
	if err := n.f.RestoreAll(0); err != nil {
		t.Fatal(err)
	}
	got := int(binary.LittleEndian.Uint64(n.regions[0]) >> 24 & (1<<32 - 1)) // the pattern's tag
	if got < want {
		t.Fatalf("new node: restored version %d, older than the restart point %d", got, want)
	}
	for i := range n.regions {
		if err := pattern.Check(n.regions[i], i, got); err != nil {
			t.Fatalf("new node: %v", err)
		}
	}
}

// The job test: four ranks in lockstep.

const jobRanks = 4

// TestRemoteRankChild is one rank of TestRemoteRanks. It reads commands on stdin:
// "save S" saves step S (and checks that the version saved is S), "quit" closes.
func TestRemoteRankChild(t *testing.T) {
	path := os.Getenv("CKP_RR_PATH")
	spec, ok := storeSpecFromEnv()
	if path == "" || !ok {
		t.Skip("helper process for TestRemoteRanks")
	}
	rank, _ := strconv.Atoi(os.Getenv("CKP_RR_RANK"))
	err := func() error {
		st, err := spec.open()
		if err != nil {
			return err
		}
		f, err := engine.Open(path, &engine.Options{KeepVersions: 2, Remote: &engine.Remote{Store: st, Keep: 2, Rank: rank, Ranks: jobRanks}})
		if err != nil {
			return err
		}
		grid := make([]byte, 256<<10+8)
		var step [8]byte
		if _, err := f.Register("grid", grid); err != nil {
			return err
		}
		stepCk, err := f.Register("step", step[:])
		if err != nil {
			return err
		}
		at := 0
		jv, err := f.RestoreJob(t.Context())
		if err != nil {
			return err
		}
		if jv > 0 {
			at = int(binary.LittleEndian.Uint64(step[:]))
			if err := pattern.Check(grid, rank, at); err != nil {
				return fmt.Errorf("restored job version %d: %v", jv, err)
			}
		}
		fmt.Println("restored", jv, at)
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			cmd := strings.Fields(in.Text())
			switch cmd[0] {
			case "save":
				s, _ := strconv.Atoi(cmd[1])
				pattern.Fill(grid, rank, s)
				binary.LittleEndian.PutUint64(step[:], uint64(s))
				if err := f.SaveAll(); err != nil {
					return err
				}
				vs := stepCk.Versions()
				if v := vs[len(vs)-1].Version; v != s {
					return fmt.Errorf("step %d saved as version %d", s, v)
				}
				fmt.Println("acked", s)
			case "quit":
				return f.Close()
			}
		}
		return in.Err()
	}()
	fmt.Println("error", err)
	os.Exit(3)
}

// TestRemoteRanks runs four processes as the four ranks of a job, saving in lockstep
// (each region holds its rank's step), and kills one of them at a random moment while
// the others carry on alone for a few steps, then the rest (the job aborts): many
// rounds. After each round the job version must be a version every rank committed for
// every checkpoint, holding that step; all ranks restart at it (some on new nodes, a
// fresh directory) and must agree, and their next saves must be numbered as the steps.
func TestRemoteRanks(t *testing.T) {
	rounds := 8
	if testing.Short() {
		rounds = 3
	}
	for _, spec := range []storeSpec{{kind: "dir", dir: t.TempDir()}, s3Spec(t)} {
		t.Run(spec.kind, func(t *testing.T) {
			st := spec.mustOpen(t)
			base := t.TempDir()
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
			prevJV := 0
			for round := 0; round < rounds; round++ {
				cs := make([]*child, jobRanks)
				for rank := range cs {
					dir := filepath.Join(base, fmt.Sprintf("node%d-%d", rank, round))
					if round == 0 || r.IntN(3) > 0 {
						dir = filepath.Join(base, fmt.Sprintf("node%d", rank)) // the same node
					}
					os.MkdirAll(dir, 0o755)
					cs[rank] = startChild(t, "TestRemoteRankChild", append(spec.env(),
						"CKP_RR_PATH="+filepath.Join(dir, "rank.ckp"), "CKP_RR_RANK="+strconv.Itoa(rank)))
				}
				at := -1
				for rank, c := range cs {
					f := strings.Fields(c.expect(t, "restored"))
					jv, _ := strconv.Atoi(f[0])
					step, _ := strconv.Atoi(f[1])
					if jv != step {
						t.Fatalf("round %d: rank %d restored job version %d holding step %d", round, rank, jv, step)
					}
					if at >= 0 && step != at {
						t.Fatalf("round %d: rank %d restored step %d, rank 0 step %d", round, rank, step, at)
					}
					at = step
				}
				if at < prevJV {
					t.Fatalf("round %d: restarted at %d, the job version was %d", round, at, prevJV)
				}
				// Lockstep steps; one rank dies at a random step, the others go on a few
				// steps without it, then the job is killed.
				steps := 3 + r.IntN(12)
				victim := r.IntN(jobRanks)
				alive := append([]*child(nil), cs...)
				s := at
				var killed sync.WaitGroup
				for i := 0; i < steps+3; i++ {
					s++
					for _, c := range alive {
						c.send(t, fmt.Sprintf("save %d", s))
					}
					if i == steps {
						alive = append(alive[:victim:victim], alive[victim+1:]...)
						d := time.Duration(r.IntN(30)) * time.Millisecond
						killed.Go(func() { time.Sleep(d); cs[victim].kill() })
					}
					for _, c := range alive {
						if got := c.expect(t, "acked"); got != strconv.Itoa(s) {
							t.Fatalf("acked %s, want %d", got, s)
						}
					}
				}
				killed.Wait()
				time.Sleep(time.Duration(r.IntN(50)) * time.Millisecond)
				for _, c := range cs {
					c.kill()
				}
				js, err := engine.InspectJob(t.Context(), st, jobRanks)
				if err != nil {
					t.Fatal(err)
				}
				checkJobVersion(t, st, js.Version)
				t.Logf("round %d: restarted at %d, rank %d killed after step %d, ranks reached %v, job version %d",
					round, at, victim, at+steps, js.Newest, js.Version)
				if js.Version < at {
					t.Fatalf("job version went back from %d to %d", at, js.Version)
				}
				prevJV = js.Version
			}
			// A clean end: every rank closes; the job version is the last step.
			cs := make([]*child, jobRanks)
			for rank := range cs {
				cs[rank] = startChild(t, "TestRemoteRankChild", append(spec.env(),
					"CKP_RR_PATH="+filepath.Join(base, fmt.Sprintf("node%d", rank), "rank.ckp"), "CKP_RR_RANK="+strconv.Itoa(rank)))
			}
			at := 0
			for _, c := range cs {
				f := strings.Fields(c.expect(t, "restored"))
				at, _ = strconv.Atoi(f[1])
			}
			for _, c := range cs {
				c.send(t, fmt.Sprintf("save %d", at+1))
				c.expect(t, "acked")
				c.send(t, "quit")
			}
			for _, c := range cs {
				for range c.lines {
				}
				if err := c.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
					t.Fatalf("rank did not quit cleanly: %v", err)
				}
			}
			js, err := engine.InspectJob(t.Context(), st, jobRanks)
			if err != nil {
				t.Fatal(err)
			}
			if js.Version != at+1 {
				t.Fatalf("after every rank closed, the job version is %d, want %d", js.Version, at+1)
			}
			checkJobVersion(t, st, js.Version)
		})
	}
}

// checkJobVersion checks that every rank committed version jv of every checkpoint and
// that it holds step jv.
func checkJobVersion(t *testing.T, st store.Store, jv int) {
	t.Helper()
	if jv == 0 {
		return
	}
	for rank := 0; rank < jobRanks; rank++ {
		g, _, err := engine.ReadStoreVersion(t.Context(), st, rank, "grid", jv)
		if err != nil {
			t.Fatalf("job version %d, rank %d: %v", jv, rank, err)
		}
		if err := pattern.Check(g, rank, jv); err != nil {
			t.Fatalf("job version %d, rank %d: %v", jv, rank, err)
		}
		s, _, err := engine.ReadStoreVersion(t.Context(), st, rank, "step", jv)
		if err != nil {
			t.Fatalf("job version %d, rank %d: %v", jv, rank, err)
		}
		if got := binary.LittleEndian.Uint64(s); got != uint64(jv) {
			t.Fatalf("job version %d, rank %d: step %d", jv, rank, got)
		}
	}
}

var importSizes = []int{24<<20 + 100, 4 << 10, 3 << 20}

// TestRemoteImportChild is the child of TestRemoteKillImport: it opens its file with
// the remote tier and, with CKP_RI_JOB set, registers the checkpoints and calls
// RestoreJob (which brings the store's versions in), then exits.
func TestRemoteImportChild(t *testing.T) {
	path := os.Getenv("CKP_RI_PATH")
	spec, ok := storeSpecFromEnv()
	if path == "" || !ok {
		t.Skip("helper process for TestRemoteKillImport")
	}
	err := func() error {
		st, err := spec.open()
		if err != nil {
			return err
		}
		f, err := engine.Open(path, &engine.Options{Remote: &engine.Remote{Store: st}})
		if err != nil {
			return err
		}
		fmt.Println("opened")
		if os.Getenv("CKP_RI_JOB") != "" {
			for i, n := range importSizes {
				if _, err := f.Register(fmt.Sprintf("r%d", i), make([]byte, n)); err != nil {
					return err
				}
			}
			if _, err := f.RestoreJob(context.Background()); err != nil {
				return err
			}
		}
		return f.Close()
	}()
	fmt.Println("error", err)
	os.Exit(3)
}

// TestRemoteKillImport kills a process while it brings versions from the store into a
// fresh local file (a restart on a new node: Open, or Open and RestoreJob, which
// fetches the versions and appends them to the index), many times: the local files
// always open (with or without the remote tier), hold the imported versions of every
// checkpoint or of none, byte-exact, and the next Open finishes the import.
func TestRemoteKillImport(t *testing.T) {
	kills := 10
	if testing.Short() {
		kills = 3
	}
	for _, tc := range []struct {
		spec storeSpec
		env  []string
	}{
		{storeSpec{kind: "dir", dir: t.TempDir()}, nil},
		{s3Spec(t), nil},
		{storeSpec{kind: "dir", dir: t.TempDir()}, []string{"CKP_RI_JOB=1"}},
	} {
		spec := tc.spec
		name := spec.kind
		if tc.env != nil {
			name += "/RestoreJob"
		}
		t.Run(name, func(t *testing.T) {
			st := spec.mustOpen(t)
			w := openRemoteWriter(t, filepath.Join(t.TempDir(), "src.ckp"), engine.Options{Remote: &engine.Remote{Store: st}}, importSizes...)
			for v := 1; v <= 2; v++ {
				w.saveAll(t, v)
			}
			if err := w.f.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "new.ckp")
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17))
			imported := 0
			for k := 0; k < kills; k++ {
				c := startChild(t, "TestRemoteImportChild", append(append(spec.env(), tc.env...), "CKP_RI_PATH="+path))
				time.Sleep(time.Duration(20+r.IntN(200)) * time.Millisecond)
				c.kill()
				l := openRemoteWriter(t, path, engine.Options{}, importSizes...)
				got := versionsOf(t, l.cks[0])
				for _, ck := range l.cks[1:] {
					if g := versionsOf(t, ck); fmt.Sprint(g) != fmt.Sprint(got) {
						t.Fatalf("kill %d: %s has versions %v, %s has %v", k, l.cks[0].Name(), got, ck.Name(), g)
					}
				}
				if len(got) > 0 {
					if fmt.Sprint(got) != "[2]" {
						t.Fatalf("kill %d: versions %v, want [2]", k, got)
					}
					l.check(t, 0, 2)
					imported++
				}
				if err := l.f.Close(); err != nil {
					t.Fatal(err)
				}
				if len(got) > 0 { // start again from nothing
					os.Remove(path)
					os.Remove(path + ".idx")
				}
			}
			t.Logf("%d kills, %d found the import done", kills, imported)
			n := openRemoteWriter(t, path, engine.Options{Remote: &engine.Remote{Store: st}}, importSizes...)
			defer n.f.Close()
			n.check(t, 0, 2)
		})
	}
}
