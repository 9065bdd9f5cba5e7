package remote_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/mem"
)

// The store requests each rank makes per operation, whatever the number of ranks
// (docs/REMOTE.md, "Requests").
//
//	go test ./remote -run TestRequestsPerRankDoNotGrow -ranks-count 8,64,1000 -v

var ranksCount = flag.String("ranks-count", "", "TestRequestsPerRankDoNotGrow: print the requests per rank for these numbers of ranks (comma-separated)")

// reqTally counts requests by kind, and the keys listings returned.
type reqTally struct {
	n      map[string]int
	listed int
}

func (t *reqTally) total() int {
	n := 0
	for _, c := range t.n {
		n += c
	}
	return n
}

// callerKey marks the context of a call the test makes: a Flush's requests under it
// are its retention pass (and the job state it reads); those under the tier's own
// context are the commits of the versions it uploads.
type callerKey struct{}

// countingStore counts one rank's requests under the operation the test says is
// running.
type countingStore struct {
	store.Store
	mu     sync.Mutex
	op     string
	tally  map[string]*reqTally
	retain string // the label of a Flush's requests under the caller's context
}

func (s *countingStore) count(ctx context.Context, kind string, listed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	label := s.op
	if s.retain != "" && ctx.Value(callerKey{}) != nil {
		label = s.retain
	}
	if label == "" {
		return
	}
	t := s.tally[label]
	if t == nil {
		t = &reqTally{n: map[string]int{}}
		s.tally[label] = t
	}
	t.n[kind]++
	t.listed += listed
}

func (s *countingStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	s.count(ctx, "create", 0)
	return s.Store.Create(ctx, key, r, size)
}

func (s *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	s.count(ctx, "put", 0)
	return s.Store.Put(ctx, key, r, size)
}

func (s *countingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.count(ctx, "get", 0)
	return s.Store.Get(ctx, key, off, n)
}

func (s *countingStore) List(ctx context.Context, prefix string) ([]store.Object, error) {
	objs, err := s.Store.List(ctx, prefix)
	s.count(ctx, "list", len(objs))
	return objs, err
}

func (s *countingStore) Delete(ctx context.Context, key string) error {
	s.count(ctx, "delete", 0)
	return s.Store.Delete(ctx, key)
}

// reqMeans are the mean requests (and keys listed) per rank of each operation.
type reqMeans map[string]struct{ requests, listed float64 }

// The operations counted.
const (
	opCommit   = "commit of one version"
	opRetain   = "retention pass"
	opJob      = "JobVersion"
	opRestore1 = "RestoreJob, empty store"
	opRestore2 = "RestoreJob, version 6"
)

// countRequests runs a job of ranks ranks (2 checkpoints each, Keep 2): RestoreJob,
// six SaveAll + Flush rounds (each rank's Flushes in a shuffled order), JobVersion
// on every rank, then a relaunch (half the ranks on new nodes) that restores version 6.
// It returns the mean requests per rank of each operation.
func countRequests(t *testing.T, ranks int) (reqMeans, string) {
	base := mem.New(fmt.Sprintf("count%d", ranks))
	dir := simTempDir(t)
	cs := make([]*countingStore, ranks)
	for r := range cs {
		cs[r] = &countingStore{Store: base, tally: map[string]*reqTally{}}
	}
	ctx := context.WithValue(context.Background(), callerKey{}, true)
	open := func(r int, node string) *remoteWriter {
		if err := os.MkdirAll(filepath.Join(dir, node), 0o700); err != nil {
			t.Fatal(err)
		}
		return openRemoteWriter(t, filepath.Join(dir, node, "r.ckp"), engine.Options{KeepVersions: 2, NoPrefault: true, NoHugePages: true,
			ChunkSize: 1 << 16, Workers: 1, Remote: &engine.Remote{Store: cs[r], Rank: r, Ranks: ranks, Keep: 2, Workers: -1,
				Backoff: time.Microsecond}}, 4096, 100)
	}
	do := func(r int, label string, fn func() error) {
		cs[r].op = label
		defer func() { cs[r].op = "" }()
		if err := fn(); err != nil {
			t.Fatalf("rank %d: %s: %v", r, label, err)
		}
	}
	ws := make([]*remoteWriter, ranks)
	for r := range ranks {
		ws[r] = open(r, "a"+strconv.Itoa(r))
		do(r, opRestore1, func() error { _, err := ws[r].f.RestoreJob(ctx); return err })
	}
	rng := rand.New(rand.NewPCG(uint64(ranks), 1))
	const versions = 6
	for v := 1; v <= versions; v++ {
		for _, w := range ws {
			w.saveAll(t, v)
		}
		for _, r := range rng.Perm(ranks) {
			cs[r].retain = opRetain
			do(r, opCommit, func() error { return ws[r].f.Flush(ctx) })
			cs[r].retain = ""
		}
	}
	for r := range ranks {
		do(r, opJob, func() error {
			v, err := ws[r].f.JobVersion(ctx)
			if err == nil && v != versions {
				err = fmt.Errorf("job version %d, want %d", v, versions)
			}
			return err
		})
		if err := ws[r].f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rng.Perm(ranks) {
		node := "a" + strconv.Itoa(r)
		if r%2 == 1 {
			node = "b" + strconv.Itoa(r) // a new node: the version comes from the store
		}
		ws[r] = open(r, node)
		do(r, opRestore2, func() error {
			v, err := ws[r].f.RestoreJob(ctx)
			if err == nil && v != versions {
				err = fmt.Errorf("restored %d, want %d", v, versions)
			}
			return err
		})
	}
	for _, w := range ws {
		if err := w.f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Means per rank and operation.
	calls := map[string]int{opCommit: ranks * versions, opRetain: ranks * versions, opJob: ranks, opRestore1: ranks, opRestore2: ranks}
	sum := map[string]*reqTally{}
	for _, c := range cs {
		for label, tl := range c.tally {
			s := sum[label]
			if s == nil {
				s = &reqTally{n: map[string]int{}}
				sum[label] = s
			}
			for k, n := range tl.n {
				s.n[k] += n
			}
			s.listed += tl.listed
		}
	}
	means := reqMeans{}
	var b strings.Builder
	for _, label := range []string{opCommit, opRetain, opJob, opRestore1, opRestore2} {
		s := sum[label]
		if s == nil {
			s = &reqTally{n: map[string]int{}}
		}
		n := float64(calls[label])
		means[label] = struct{ requests, listed float64 }{float64(s.total()) / n, float64(s.listed) / n}
		var kinds []string
		for k, c := range s.n {
			kinds = append(kinds, fmt.Sprintf("%s %.2f", k, float64(c)/n))
		}
		sort.Strings(kinds)
		fmt.Fprintf(&b, "%5d ranks, %-24s requests per rank %6.2f, keys listed %6.2f (%s)\n",
			ranks, label, means[label].requests, means[label].listed, strings.Join(kinds, ", "))
	}
	return means, b.String()
}

// TestRequestsPerRankDoNotGrow: what each operation costs a rank in store requests does
// not grow with the job: a job of 64 ranks costs each rank at most twice what one of 8
// does, for a version's commit, a retention pass, JobVersion and RestoreJob.
func TestRequestsPerRankDoNotGrow(t *testing.T) {
	counts := []int{8, 64}
	if *ranksCount != "" {
		counts = nil
		for _, f := range strings.Split(*ranksCount, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("-ranks-count: %q", f)
			}
			counts = append(counts, n)
		}
	}
	byRanks := map[int]reqMeans{}
	for _, n := range counts {
		m, table := countRequests(t, n)
		byRanks[n] = m
		t.Logf("\n%s", table)
	}
	small, large := byRanks[8], byRanks[64]
	if small == nil || large == nil {
		return
	}
	for _, label := range []string{opCommit, opRetain, opJob, opRestore2} {
		if s, l := small[label].requests, large[label].requests; l > 2*s {
			t.Errorf("%s: %.2f requests per rank with 64 ranks, %.2f with 8: grows with the job", label, l, s)
		}
	}
}
