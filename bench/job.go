package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store/mem"
)

// The operations JobRequests counts.
const (
	OpCommit   = "commit of one version"
	OpRetain   = "retention pass"
	OpJob      = "JobVersion"
	OpRestore1 = "RestoreJob, empty store"
	OpRestore2 = "RestoreJob, version 6"
)

// JobOps are the operations JobRequests counts, in the order it reports them.
var JobOps = []string{OpCommit, OpRetain, OpJob, OpRestore1, OpRestore2}

// JobOp is what one operation costs a rank in store requests, on average over every
// rank and every time it ran.
type JobOp struct {
	Requests float64            // requests per rank and operation
	Listed   float64            // keys the listings returned, per rank and operation
	Kinds    map[string]float64 // requests per rank and operation, by kind
}

// JobRequests runs a job of ranks ranks, each a real File in its own directory under
// dir over one in-memory store (2 checkpoints, KeepVersions 2, Keep 2, uploads run by
// the calls, Workers -1), and counts each rank's store requests by operation:
// RestoreJob on an empty store, six rounds of SaveAll then Flush on every rank (the
// Flushes in a shuffled order; the requests under the tier's own context are the
// version's commit, those under the Flush's context its retention pass), JobVersion,
// and after every rank closed, a relaunch (half the ranks on new nodes) whose
// RestoreJob restores version 6. docs/REMOTE.md ("Requests") gives the figures.
func JobRequests(dir string, ranks int) (map[string]JobOp, error) {
	base := mem.New(fmt.Sprintf("job%d", ranks))
	cs := make([]*mem.Counter, ranks)
	for r := range cs {
		cs[r] = mem.NewCounter(base)
	}
	type rankFile struct {
		f       *engine.File
		regions [][]byte
	}
	open := func(r int, node string) (*rankFile, error) {
		d := filepath.Join(dir, node)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		f, err := engine.Open(filepath.Join(d, "r.ckp"), &engine.Options{KeepVersions: 2, NoPrefault: true, NoHugePages: true,
			ChunkSize: 1 << 16, Workers: 1, Remote: &engine.Remote{Store: cs[r], Rank: r, Ranks: ranks, Keep: 2, Workers: -1,
				Backoff: time.Microsecond}})
		if err != nil {
			return nil, err
		}
		rf := &rankFile{f: f, regions: [][]byte{make([]byte, 4096), make([]byte, 100)}}
		for i, reg := range rf.regions {
			if _, err := f.Register("r"+strconv.Itoa(i), reg); err != nil {
				f.Close()
				return nil, err
			}
		}
		return rf, nil
	}
	ctx := context.Background()
	do := func(r int, label string, fn func() error) error {
		cs[r].SetLabel(label)
		defer cs[r].SetLabel("")
		if err := fn(); err != nil {
			return fmt.Errorf("rank %d: %s: %w", r, label, err)
		}
		return nil
	}
	ws := make([]*rankFile, ranks)
	defer func() {
		for _, w := range ws {
			if w != nil {
				w.f.Close()
			}
		}
	}()
	for r := range ranks {
		w, err := open(r, "a"+strconv.Itoa(r))
		if err != nil {
			return nil, err
		}
		ws[r] = w
		if err := do(r, OpRestore1, func() error { _, err := w.f.RestoreJob(ctx); return err }); err != nil {
			return nil, err
		}
	}
	rng := rand.New(rand.NewPCG(uint64(ranks), 1))
	const versions = 6
	for v := 1; v <= versions; v++ {
		for r, w := range ws {
			for i, reg := range w.regions {
				fillRegion(reg, 10*r+i, v)
			}
			if err := w.f.SaveAll(); err != nil {
				return nil, fmt.Errorf("rank %d: SaveAll %d: %w", r, v, err)
			}
		}
		for _, r := range rng.Perm(ranks) {
			if err := do(r, OpCommit, func() error { return ws[r].f.Flush(mem.WithLabel(ctx, OpRetain)) }); err != nil {
				return nil, err
			}
		}
	}
	for r := range ranks {
		err := do(r, OpJob, func() error {
			v, err := ws[r].f.JobVersion(ctx)
			if err == nil && v != versions {
				err = fmt.Errorf("job version %d, want %d", v, versions)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if err := ws[r].f.Close(); err != nil {
			return nil, err
		}
		ws[r] = nil
	}
	for _, r := range rng.Perm(ranks) {
		node := "a" + strconv.Itoa(r)
		if r%2 == 1 {
			node = "b" + strconv.Itoa(r) // a new node: the version comes from the store
		}
		w, err := open(r, node)
		if err != nil {
			return nil, err
		}
		ws[r] = w
		err = do(r, OpRestore2, func() error {
			v, err := w.f.RestoreJob(ctx)
			if err == nil && v != versions {
				err = fmt.Errorf("restored %d, want %d", v, versions)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	calls := map[string]int{OpCommit: ranks * versions, OpRetain: ranks * versions, OpJob: ranks, OpRestore1: ranks, OpRestore2: ranks}
	out := map[string]JobOp{}
	for _, op := range JobOps {
		n := float64(calls[op])
		o := JobOp{Kinds: map[string]float64{}}
		for _, c := range cs {
			cnt := c.Counts()[op]
			o.Requests += float64(cnt.Total()) / n
			o.Listed += float64(cnt.Listed) / n
			for k, x := range cnt.Requests {
				o.Kinds[k] += float64(x) / n
			}
		}
		out[op] = o
	}
	return out, nil
}
