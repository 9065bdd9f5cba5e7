package remote_test

import (
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/bench"
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
