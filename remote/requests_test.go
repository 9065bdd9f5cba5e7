package remote_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ckp-go/ckp/bench"
	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
)

// The store requests each rank makes per operation, whatever the number of ranks
// (docs/REMOTE.md, "Requests").
//
//	go test ./remote -run TestRequestsPerRankDoNotGrow -ranks-count 8,64,1000 -v

var ranksCount = flag.String("ranks-count", "", "TestRequestsPerRankDoNotGrow: print the requests per rank for these numbers of ranks (comma-separated)")

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
	byRanks := map[int]map[string]bench.JobOp{}
	for _, n := range counts {
		m, err := bench.JobRequests(simTempDir(t), n)
		if err != nil {
			t.Fatal(err)
		}
		byRanks[n] = m
		var b strings.Builder
		for _, op := range bench.JobOps {
			var kinds []string
			for k, c := range m[op].Kinds {
				kinds = append(kinds, fmt.Sprintf("%s %.2f", k, c))
			}
			sort.Strings(kinds)
			fmt.Fprintf(&b, "%5d ranks, %-24s requests per rank %6.2f, keys listed %6.2f (%s)\n",
				n, op, m[op].Requests, m[op].Listed, strings.Join(kinds, ", "))
		}
		t.Logf("\n%s", b.String())
	}
	small, large := byRanks[8], byRanks[64]
	if small == nil || large == nil {
		return
	}
	for _, label := range []string{bench.OpCommit, bench.OpRetain, bench.OpJob, bench.OpRestore2} {
		if s, l := small[label].Requests, large[label].Requests; l > 2*s {
			t.Errorf("%s: %.2f requests per rank with 64 ranks, %.2f with 8: grows with the job", label, l, s)
		}
	}
}

// TestLifeHintWritesDoNotGrow: the hint of the newest life is one key every rank reads
// first; a restart writes it about once, whatever the number of ranks. Eight ranks
// open their files, then each joins with RestoreJob (the first seals the life and
// begins the next), saves and closes, three times: at most two writes of the hint per
// restart.
func TestLifeHintWritesDoNotGrow(t *testing.T) {
	const ranks = 8
	base, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hints := &hintWrites{Store: base}
	dirs := make([]string, ranks)
	for r := range dirs {
		dirs[r] = t.TempDir()
	}
	for round := 1; round <= 3; round++ {
		ws := make([]*remoteWriter, ranks)
		for r := range ranks {
			ws[r] = openRemoteWriter(t, filepath.Join(dirs[r], "r.ckp"), engine.Options{KeepVersions: 2,
				Remote: &engine.Remote{Store: hints, Rank: r, Ranks: ranks}}, 4096)
		}
		before := hints.n.Load()
		for r, w := range ws {
			if _, err := w.f.RestoreJob(t.Context()); err != nil {
				t.Fatalf("round %d, rank %d: RestoreJob: %v", round, r, err)
			}
		}
		if n := hints.n.Load() - before; n > 2 {
			t.Errorf("round %d: %d ranks' RestoreJob wrote the life hint %d times, want at most 2", round, ranks, n)
		}
		for _, w := range ws {
			w.saveAll(t, round)
			if err := w.f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// hintWrites counts the writes of the life hint.
type hintWrites struct {
	store.Store
	n atomic.Int32
}

func (h *hintWrites) Put(ctx context.Context, key string, body io.Reader, size int64) error {
	if key == "job/life/hint" {
		h.n.Add(1)
	}
	return h.Store.Put(ctx, key, body, size)
}
