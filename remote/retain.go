package remote

import (
	"context"
	"strings"
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
func (t *Tier) retain(ctx context.Context) error {
	t.retainMu.Lock()
	defer t.retainMu.Unlock()
	t.lastPass.Store(time.Now().UnixNano())
	keep := t.cfg.keep
	if keep <= 0 {
		return nil
	}
	t.mu.Lock()
	var vs []victim
	for _, c := range t.ckpts {
		if n := len(c.vers); n > keep {
			for _, v := range c.vers[:n-keep] {
				vs = append(vs, victim{c.seg, v.num})
			}
		}
	}
	gc := !t.gcDone
	t.mu.Unlock()
	if len(vs) > 0 {
		jv, ok, err := t.jobVersion(ctx)
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
	if err := t.loadKeys(ctx); err != nil {
		return err
	}
	for _, v := range vs {
		if err := t.deleteVersion(ctx, v.seg, v.num); err != nil {
			return err
		}
	}
	if gc {
		return t.collectOrphans(ctx)
	}
	return nil
}

// jobVersion returns the job version as the store shows it now: for a job of one,
// from what this rank committed (known here); otherwise from a listing of every rank.
func (t *Tier) jobVersion(ctx context.Context) (uint64, bool, error) {
	if t.cfg.ranks <= 1 {
		t.mu.Lock()
		own := rankListing{}
		known := map[manifestRef]uint32{}
		for seg, c := range t.ckpts {
			for _, v := range c.vers {
				own[seg] = append(own[seg], v.num)
				if v.members > 0 {
					known[manifestRef{t.cfg.rank, seg, v.num}] = v.members
				}
			}
		}
		t.mu.Unlock()
		return newestComplete(ctx, t.st, t.cfg.rank, own, known)
	}
	job, err := listJob(ctx, t.st)
	if err != nil {
		return 0, false, err
	}
	return jobVersionOf(ctx, job, t.cfg.ranks, storeMembers(t.st, nil))
}

// deleteVersion uncommits a version (deletes its manifest), then deletes the data
// objects that nothing else names.
func (t *Tier) deleteVersion(ctx context.Context, seg string, num uint64) error {
	key := manifestKey(t.cfg.rank, seg, num)
	if err := retry(ctx, 0, func(ctx context.Context) error { return t.st.Delete(ctx, key) }); err != nil {
		return err
	}
	t.mu.Lock()
	c := t.ckpts[seg]
	var keys []string
	if c != nil {
		if i := c.find(num); i >= 0 {
			keys = c.vers[i].keys
			c.vers = append(c.vers[:i], c.vers[i+1:]...)
			t.unref(keys)
		}
	}
	t.mu.Unlock()
	return t.deleteData(ctx, keys)
}

// deleteData deletes the data objects among keys that no committed version and no
// unfinished upload names. An upload of the same bytes that starts meanwhile waits
// for the deletion (uploadData).
func (t *Tier) deleteData(ctx context.Context, keys []string) error {
	for _, k := range keys {
		t.mu.Lock()
		if t.refs[k] > 0 || t.inUse[k] > 0 || t.deleting[k] != nil || !t.keysKnown() {
			t.mu.Unlock()
			continue
		}
		ch := make(chan struct{})
		t.deleting[k] = ch
		t.mu.Unlock()
		err := retry(ctx, 0, func(ctx context.Context) error { return t.st.Delete(ctx, k) })
		t.mu.Lock()
		delete(t.deleting, k)
		close(ch)
		t.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// collectOrphans deletes this rank's data objects that no committed version and no
// unfinished upload names: what writers killed between an upload and its manifest,
// or during a deletion, left behind.
func (t *Tier) collectOrphans(ctx context.Context) error {
	var objs []store.Object
	prefix := dataDir + rankPrefix(t.cfg.rank)
	err := retry(ctx, 0, func(ctx context.Context) error {
		var err error
		objs, err = t.st.List(ctx, prefix)
		return err
	})
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	if err := t.deleteData(ctx, keys); err != nil {
		return err
	}
	t.mu.Lock()
	t.gcDone = true
	t.mu.Unlock()
	return nil
}

func rankPrefix(rank int) string { return strings.TrimPrefix(rankManifests(rank), manifestDir) }

// deleteAbove deletes this rank's committed versions of seg numbered above v (a
// rewind abandoned them).
func (t *Tier) deleteAbove(ctx context.Context, seg string, v uint64) error {
	if err := t.loadKeys(ctx); err != nil {
		return err
	}
	t.mu.Lock()
	var above []uint64
	if c := t.ckpts[seg]; c != nil {
		for _, x := range c.vers {
			if x.num > v {
				above = append(above, x.num)
			}
		}
	}
	t.mu.Unlock()
	for i := len(above) - 1; i >= 0; i-- {
		if err := t.deleteVersion(ctx, seg, above[i]); err != nil {
			return err
		}
	}
	return nil
}
