package engine

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ckp-go/ckp/store"
)

// Retention in the store. A pass deletes, for each checkpoint of this rank, the
// committed versions older than the newest Keep, except the job version and anything
// newer: a rank that runs ahead of a dead one keeps the version the job will restart
// from. The job version is computed afresh from a listing; a stale one is only lower,
// and so only keeps more. A version is deleted manifest first (it is then no longer
// committed), then its data objects, once no committed or queued version names them.

// victim is a committed version a pass may delete.
type victim struct {
	seg string
	num uint64
}

// retain runs one retention pass.
func (rm *remote) retain(ctx context.Context) error {
	rm.retainMu.Lock()
	defer rm.retainMu.Unlock()
	rm.lastPass.Store(time.Now().UnixNano())
	keep := rm.cfg.keep
	if keep <= 0 {
		return nil
	}
	rm.mu.Lock()
	var vs []victim
	for _, c := range rm.ckpts {
		if n := len(c.vers); n > keep {
			for _, v := range c.vers[:n-keep] {
				vs = append(vs, victim{c.seg, v.num})
			}
		}
	}
	gc := !rm.gcDone
	rm.mu.Unlock()
	if len(vs) > 0 {
		jv, ok, err := rm.jobVersion(ctx)
		if err != nil {
			return err
		}
		k := 0
		for _, v := range vs {
			if ok && v.num < jv {
				vs[k] = v
				k++
			}
		}
		vs = vs[:k]
	}
	if len(vs) == 0 && !gc {
		return nil
	}
	if err := rm.loadKeys(ctx); err != nil {
		return err
	}
	for _, v := range vs {
		if err := rm.deleteVersion(ctx, v.seg, v.num); err != nil {
			return err
		}
	}
	if gc {
		return rm.collectOrphans(ctx)
	}
	return nil
}

// jobVersion returns the job version as the store shows it now: for a job of one,
// from what this rank committed (known here); otherwise from a listing of every rank.
func (rm *remote) jobVersion(ctx context.Context) (uint64, bool, error) {
	if rm.cfg.ranks <= 1 {
		rm.mu.Lock()
		own := rankListing{}
		known := map[manifestRef]uint32{}
		for seg, c := range rm.ckpts {
			for _, v := range c.vers {
				own[seg] = append(own[seg], v.num)
				if v.members > 0 {
					known[manifestRef{rm.cfg.rank, seg, v.num}] = v.members
				}
			}
		}
		rm.mu.Unlock()
		return newestComplete(ctx, rm.st, rm.cfg.rank, own, known)
	}
	job, err := listJob(ctx, rm.st)
	if err != nil {
		return 0, false, err
	}
	return jobVersionOf(ctx, job, rm.cfg.ranks, storeMembers(rm.st, nil))
}

// loadKeys reads the manifests of this rank's committed versions whose data objects
// are not known yet (committed before this File opened), so that no data object is
// deleted while a committed version names it.
func (rm *remote) loadKeys(ctx context.Context) error {
	rm.mu.Lock()
	var todo []victim
	for _, c := range rm.ckpts {
		for _, v := range c.vers {
			if v.keys == nil {
				todo = append(todo, victim{c.seg, v.num})
			}
		}
	}
	rm.mu.Unlock()
	return parallel(ctx, len(todo), 8, func(ctx context.Context, i int) error {
		t := todo[i]
		m, err := readManifest(ctx, rm.st, manifestKey(rm.cfg.rank, t.seg, t.num))
		rm.mu.Lock()
		defer rm.mu.Unlock()
		c := rm.ckpts[t.seg]
		j := -1
		if c != nil {
			j = c.find(t.num)
		}
		switch {
		case j < 0 || c.vers[j].keys != nil:
			return nil // deleted or loaded meanwhile
		case errors.Is(err, store.ErrNotExist):
			c.vers = append(c.vers[:j], c.vers[j+1:]...)
			return nil
		case err != nil:
			return err
		}
		keys := make([]string, 0, len(m.Extents))
		for _, e := range m.Extents {
			keys = append(keys, e.Key)
		}
		if c.name == "" {
			c.name = m.Name
		}
		rm.add(c, storeVer{num: t.num, keys: keys, members: m.Members})
		return nil
	})
}

// keysKnown reports whether the data objects of every committed version are known.
// Caller holds rm.mu.
func (rm *remote) keysKnown() bool {
	for _, c := range rm.ckpts {
		for _, v := range c.vers {
			if v.keys == nil {
				return false
			}
		}
	}
	return true
}

// deleteVersion uncommits a version (deletes its manifest), then deletes the data
// objects that nothing else names.
func (rm *remote) deleteVersion(ctx context.Context, seg string, num uint64) error {
	key := manifestKey(rm.cfg.rank, seg, num)
	if err := retry(ctx, 0, func(ctx context.Context) error { return rm.st.Delete(ctx, key) }); err != nil {
		return err
	}
	rm.mu.Lock()
	c := rm.ckpts[seg]
	var keys []string
	if c != nil {
		if i := c.find(num); i >= 0 {
			keys = c.vers[i].keys
			c.vers = append(c.vers[:i], c.vers[i+1:]...)
			rm.unref(keys)
		}
	}
	rm.mu.Unlock()
	return rm.deleteData(ctx, keys)
}

// deleteData deletes the data objects among keys that no committed version and no
// unfinished upload names. An upload of the same bytes that starts meanwhile waits
// for the deletion (uploadData).
func (rm *remote) deleteData(ctx context.Context, keys []string) error {
	for _, k := range keys {
		rm.mu.Lock()
		if rm.refs[k] > 0 || rm.inUse[k] > 0 || rm.deleting[k] != nil || !rm.keysKnown() {
			rm.mu.Unlock()
			continue
		}
		ch := make(chan struct{})
		rm.deleting[k] = ch
		rm.mu.Unlock()
		err := retry(ctx, 0, func(ctx context.Context) error { return rm.st.Delete(ctx, k) })
		rm.mu.Lock()
		delete(rm.deleting, k)
		close(ch)
		rm.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// collectOrphans deletes this rank's data objects that no committed version and no
// unfinished upload names: what writers killed between an upload and its manifest,
// or during a deletion, left behind.
func (rm *remote) collectOrphans(ctx context.Context) error {
	var objs []store.Object
	prefix := dataDir + rankPrefix(rm.cfg.rank)
	err := retry(ctx, 0, func(ctx context.Context) error {
		var err error
		objs, err = rm.st.List(ctx, prefix)
		return err
	})
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	if err := rm.deleteData(ctx, keys); err != nil {
		return err
	}
	rm.mu.Lock()
	rm.gcDone = true
	rm.mu.Unlock()
	return nil
}

func rankPrefix(rank int) string { return strings.TrimPrefix(rankManifests(rank), manifestDir) }

// deleteAbove deletes this rank's committed versions of seg numbered above v (a
// rewind abandoned them).
func (rm *remote) deleteAbove(ctx context.Context, seg string, v uint64) error {
	if err := rm.loadKeys(ctx); err != nil {
		return err
	}
	rm.mu.Lock()
	var above []uint64
	if c := rm.ckpts[seg]; c != nil {
		for _, x := range c.vers {
			if x.num > v {
				above = append(above, x.num)
			}
		}
	}
	rm.mu.Unlock()
	for i := len(above) - 1; i >= 0; i-- {
		if err := rm.deleteVersion(ctx, seg, above[i]); err != nil {
			return err
		}
	}
	return nil
}

// Listing a job, and which versions are complete.
//
// A version v is complete on a rank when at least as many of the rank's checkpoints
// have v committed as the transaction (Save or SaveAll) that wrote v uploaded with
// that number: its manifests' Members. So a SaveAll whose uploads were cut short by a
// crash is not complete, while checkpoints saved by separate Saves each are. The job
// version is the newest version complete on every rank.

// rankListing is what one rank committed: key segment → versions, ascending.
type rankListing map[string][]uint64

// jobListing is what every rank committed, by rank.
type jobListing map[int]rankListing

// listJob lists the manifests of every rank.
func listJob(ctx context.Context, st store.Store) (jobListing, error) {
	return listManifests(ctx, st, manifestDir)
}

// listManifests lists the manifests under prefix.
func listManifests(ctx context.Context, st store.Store, prefix string) (jobListing, error) {
	var objs []store.Object
	err := retry(ctx, 0, func(ctx context.Context) error {
		var err error
		objs, err = st.List(ctx, prefix)
		return err
	})
	if err != nil {
		return nil, err
	}
	job := jobListing{}
	for _, o := range objs {
		r, ok := parseManifestKey(o.Key)
		if !ok {
			continue
		}
		if job[r.rank] == nil {
			job[r.rank] = rankListing{}
		}
		job[r.rank][r.seg] = append(job[r.rank][r.seg], r.ver)
	}
	for _, segs := range job {
		for _, vs := range segs {
			sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
		}
	}
	return job, nil
}

// membersFunc returns the Members of the manifest of version v of seg of rank; 0
// when it is gone.
type membersFunc func(ctx context.Context, rank int, seg string, v uint64) (uint32, error)

// storeMembers reads Members from the manifests in st, remembering them for the
// call; those in known are used without reading.
func storeMembers(st store.Store, known map[manifestRef]uint32) membersFunc {
	cache := map[manifestRef]uint32{}
	return func(ctx context.Context, rank int, seg string, v uint64) (uint32, error) {
		ref := manifestRef{rank, seg, v}
		if m, ok := known[ref]; ok {
			return m, nil
		}
		if m, ok := cache[ref]; ok {
			return m, nil
		}
		m, err := readManifest(ctx, st, manifestKey(rank, seg, v))
		switch {
		case errors.Is(err, store.ErrNotExist):
			cache[ref] = 0
			return 0, nil
		case err != nil:
			return 0, err
		}
		cache[ref] = m.Members
		return m.Members, nil
	}
}

// presence is how many checkpoints of a rank have a version committed, and one of them.
type presence struct {
	n   int
	seg string
}

func presenceOf(r rankListing) map[uint64]presence {
	segs := make([]string, 0, len(r))
	for seg := range r {
		segs = append(segs, seg)
	}
	sort.Strings(segs)
	p := map[uint64]presence{}
	for _, seg := range segs {
		for _, v := range r[seg] {
			x, ok := p[v]
			if !ok {
				x.seg = seg
			}
			x.n++
			p[v] = x
		}
	}
	return p
}

// jobVersionOf returns the newest version complete on every rank 0..ranks-1 of job.
func jobVersionOf(ctx context.Context, job jobListing, ranks int, members membersFunc) (uint64, bool, error) {
	if ranks <= 0 {
		return 0, false, nil
	}
	pres := make([]map[uint64]presence, ranks)
	for r := range pres {
		pres[r] = presenceOf(job[r])
	}
	var cands []uint64
	for v := range pres[0] {
		all := true
		for r := 1; r < ranks && all; r++ {
			_, all = pres[r][v]
		}
		if all {
			cands = append(cands, v)
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i] > cands[j] })
	for _, v := range cands {
		ok := true
		for r := 0; r < ranks && ok; r++ {
			p := pres[r][v]
			m, err := members(ctx, r, p.seg, v)
			if err != nil {
				return 0, false, err
			}
			ok = m > 0 && p.n >= int(m)
		}
		if ok {
			return v, true, nil
		}
	}
	return 0, false, nil
}

// newestComplete returns the newest version complete on one rank, from its listing.
func newestComplete(ctx context.Context, st store.Store, rank int, r rankListing, known map[manifestRef]uint32) (uint64, bool, error) {
	m := storeMembers(st, known)
	return jobVersionOf(ctx, jobListing{0: r}, 1, func(ctx context.Context, _ int, seg string, v uint64) (uint32, error) {
		return m(ctx, rank, seg, v)
	})
}

// parallel runs fn(0..n-1) on up to k goroutines; the first error cancels the rest.
func parallel(ctx context.Context, n, k int, fn func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	for range min(n, k) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { ferr = err; cancel(err) })
					return
				}
			}
		})
	}
	wg.Wait()
	return ferr
}
