package remote

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"time"

	"github.com/ckp-go/ckp/store"
)

// Retention in the store. A pass deletes this rank's versions that no restart can use:
// those off the lineage of this process's life (abandoned lives' versions above the
// point their successor began from), and those on it older than the job's restart
// point that are not among the newest Keep on the lineage; never anything of a newer
// life (another process's). What
// stays is decided without any listing: the restart point, read from the log (its
// version record names its manifests), and this life's versions, which this process
// alone wrote. Listings only find what to delete, so a stale listing only delays a
// deletion. A version goes version record first (it is then no longer complete on this
// rank), then the tree nodes this rank leads, its manifests, and the data objects that
// no kept manifest and no unfinished upload names. A pass also deletes this rank's share
// of what dead lives left (their logs and join trees).

// victim is a committed version a pass may delete.
type victim struct {
	seg string
	at  point
}

// gcEvery: a pass lists this rank's data objects (to find what uploads cut short left)
// once in this many passes, and in the first.
const gcEvery = 8

// retain runs one retention pass.
func (t *Tier) retain(ctx context.Context) error {
	if err := t.retainMu.lock(ctx); err != nil {
		return err
	}
	defer t.retainMu.Unlock()
	t.lastPass.Store(time.Now().UnixNano())
	if err := t.jobMu.lock(ctx); err != nil {
		return err
	}
	if t.job.life == 0 || t.job.restart != nil {
		t.jobMu.Unlock()
		return nil
	}
	h, newer, err := t.state(ctx)
	if err == nil && (newer || h.sealed) {
		err = t.moveOn(ctx)
		t.jobMu.Unlock()
		return err
	}
	life, rp, g := t.job.life, h.rp, t.job.g
	t.jobMu.Unlock()
	if err != nil {
		return err
	}
	t.passes++
	if err := t.dropOld(ctx, life, rp, t.cfg.keep); err != nil {
		return err
	}
	return t.cleanDead(ctx, life, g)
}

// dropOld deletes what a pass in life life, with restart point rp, keeping keep
// versions (0: all), finds to delete: of this rank's versions in lives up to life,
// those off the lineage of life (abandoned), and those on it that are older than rp
// and not among the newest keep.
func (t *Tier) dropOld(ctx context.Context, life uint64, rp point, keep int) error {
	caps, err := t.lineageOf(ctx, life)
	if err != nil {
		return err
	}
	type stay struct {
		seg string
		v   storeVer
	}
	var stays []stay
	var drop []victim
	t.mu.Lock()
	for seg, c := range t.ckpts {
		var lin []storeVer // on the lineage, by number (numbers do not repeat on it)
		for _, v := range c.vers {
			if v.life <= life && v.num <= caps[v.life] {
				lin = append(lin, v)
			}
		}
		sort.Slice(lin, func(i, j int) bool { return lin[i].num < lin[j].num })
		newest := map[point]bool{}
		if keep > 0 {
			for _, v := range lin[max(0, len(lin)-keep):] {
				newest[v.point()] = true
			}
		}
		for _, v := range c.vers {
			p := v.point()
			switch {
			case v.life > life:
				// A newer life: not this process's to judge.
			case p == rp, keep <= 0 && v.num <= caps[v.life], newest[p],
				v.life == life && !(rp.life == life && v.num < rp.v):
				stays = append(stays, stay{seg, v})
			default:
				drop = append(drop, victim{seg, p})
			}
		}
	}
	t.mu.Unlock()
	// The data objects of the versions that stay. Those committed before this process
	// have their manifests read (once).
	named := map[string]bool{}
	for _, x := range stays {
		keys := x.v.keys
		if keys == nil {
			m, err := t.cachedManifest(ctx, manifestKey(t.cfg.rank, x.v.life, x.seg, x.v.num))
			if errors.Is(err, store.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			keys = manifestKeys(m)
			t.mu.Lock()
			if c := t.ckpts[x.seg]; c != nil && c.find(x.v.point()) >= 0 {
				t.add(c, storeVer{life: x.v.life, num: x.v.num, keys: keys})
			}
			t.mu.Unlock()
		}
		for _, k := range keys {
			named[k] = true
		}
	}
	if rp.v > 0 {
		// The restart point's objects stay whatever a listing showed: its version
		// record names its manifests.
		if err := t.jobMu.lock(ctx); err != nil {
			return err
		}
		rec, err := t.versionRecord(ctx, rp, t.cfg.rank)
		t.jobMu.Unlock()
		if err != nil {
			return err
		}
		for _, c := range rec.ckpts {
			m, err := t.cachedManifest(ctx, c.manifest)
			if err != nil {
				return err
			}
			for _, k := range manifestKeys(m) {
				named[k] = true
			}
		}
	}
	sort.Slice(drop, func(i, j int) bool {
		if drop[i].at != drop[j].at {
			return pointLess(drop[i].at, drop[j].at)
		}
		return drop[i].seg < drop[j].seg
	})
	g := t.geom()
	var last point
	for _, d := range drop {
		if d.at != last {
			// The version record first: the version is then no longer complete on
			// this rank. Then the tree nodes this rank leads.
			tree := doneTree(d.at.life, d.at.v)
			if err := t.del(ctx, g.nodeKey(tree, 0, t.cfg.rank)); err != nil {
				return err
			}
			for _, k := range g.led(tree, t.cfg.rank) {
				if err := t.del(ctx, k); err != nil {
					return err
				}
			}
			last = d.at
		}
		if err := t.deleteVersion(ctx, d.seg, d.at, named); err != nil {
			return err
		}
	}
	t.mu.Lock()
	for k, dk := range t.dedup {
		if !named[dk] && t.refs[dk] == 0 {
			delete(t.dedup, k) // dedup may reuse only objects that stay
		}
	}
	t.mu.Unlock()
	if t.passes%gcEvery == 1 {
		return t.collectOrphans(ctx, life, named)
	}
	return nil
}

// geom is the shape of the job's trees.
func (t *Tier) geom() geom { return geom{R: t.cfg.ranks, K: treeArity} }

// del deletes key, retrying transient errors.
func (t *Tier) del(ctx context.Context, key string) error {
	return retry(ctx, 0, func(ctx context.Context) error { return t.st.Delete(ctx, key) })
}

// cachedManifest reads the manifest under key once.
func (t *Tier) cachedManifest(ctx context.Context, key string) (*manifest, error) {
	t.mu.Lock()
	m := t.mcache[key]
	t.mu.Unlock()
	if m != nil {
		return m, nil
	}
	m, err := readManifest(ctx, t.st, key)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.mcache[key] = m
	t.mu.Unlock()
	return m, nil
}

// deleteVersion uncommits a version (deletes its manifest), then deletes the data
// objects it named that named does not hold, no kept version names and no unfinished
// upload uses.
func (t *Tier) deleteVersion(ctx context.Context, seg string, at point, named map[string]bool) error {
	key := manifestKey(t.cfg.rank, at.life, seg, at.v)
	t.mu.Lock()
	var keys []string
	if c := t.ckpts[seg]; c != nil {
		if i := c.find(at); i >= 0 {
			keys = c.vers[i].keys
		}
	}
	t.mu.Unlock()
	if keys == nil {
		m, err := t.cachedManifest(ctx, key)
		switch {
		case err == nil:
			keys = manifestKeys(m)
		case !errors.Is(err, store.ErrNotExist):
			return err
		}
	}
	if err := t.del(ctx, key); err != nil {
		return err
	}
	t.mu.Lock()
	if c := t.ckpts[seg]; c != nil {
		t.remove(c, at)
	}
	delete(t.mcache, key)
	t.mu.Unlock()
	return t.deleteData(ctx, keys, named)
}

// deleteData deletes the data objects among keys that named does not hold, no known
// committed version names and no unfinished upload uses. An upload of the same bytes
// that starts meanwhile waits for the deletion (needObject).
func (t *Tier) deleteData(ctx context.Context, keys []string, named map[string]bool) error {
	for _, k := range keys {
		t.mu.Lock()
		if named[k] || t.refs[k] > 0 || t.inUse[k] > 0 || t.deleting[k] != nil {
			t.mu.Unlock()
			continue
		}
		ch := make(chan struct{})
		t.deleting[k] = ch
		t.mu.Unlock()
		err := t.del(ctx, k)
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

// collectOrphans deletes this rank's data objects of lives up to life that no kept
// manifest and no unfinished upload names: what processes killed between an upload and
// its manifest, or during a deletion, left behind.
func (t *Tier) collectOrphans(ctx context.Context, life uint64, named map[string]bool) error {
	objs, err := t.listR(ctx, rankData(t.cfg.rank))
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		if l, ok := dataLife(t.cfg.rank, o.Key); ok && l <= life {
			keys = append(keys, o.Key)
		}
	}
	return t.deleteData(ctx, keys, named)
}

// cleanDead deletes this rank's share of the dead lives' shared objects: the log
// entries whose seq is the rank modulo the ranks, its join leaf and the join nodes it
// leads (rank 0 also the log's hint). Life x is dead once life x+1 exists; nothing
// reads x's log or join tree without checking that first.
func (t *Tier) cleanDead(ctx context.Context, newest uint64, g geom) error {
	if err := t.jobMu.lock(ctx); err != nil {
		return err
	}
	defer t.jobMu.Unlock()
	j := &t.job
	if !j.cleanOK {
		j.cleaned = 1
		b, err := t.getR(ctx, cleanKey(t.cfg.rank))
		switch {
		case err == nil:
			if n, derr := decodeClean(b); derr == nil {
				j.cleaned = max(n, 1)
			}
		case !errors.Is(err, store.ErrNotExist):
			return err
		}
		j.cleanOK = true
	}
	if j.cleaned >= newest {
		return nil
	}
	for x := j.cleaned; x < newest; x++ {
		next, err := readLife(ctx, t.st, x+1)
		if err != nil {
			return err
		}
		for s := uint64(1); s <= next.sealSeq; s++ {
			if int(s%uint64(g.R)) == t.cfg.rank%g.R {
				if err := t.del(ctx, logKey(x, s)); err != nil {
					return err
				}
			}
		}
		if t.cfg.rank == 0 {
			if err := t.del(ctx, logHintKey(x)); err != nil {
				return err
			}
		}
		tree := joinTree(x)
		if err := t.del(ctx, g.nodeKey(tree, 0, t.cfg.rank)); err != nil {
			return err
		}
		for _, k := range g.led(tree, t.cfg.rank) {
			if err := t.del(ctx, k); err != nil {
				return err
			}
		}
	}
	j.cleaned = newest
	b := cleanRecord(newest)
	return retry(ctx, 0, func(ctx context.Context) error {
		return t.st.Put(ctx, cleanKey(t.cfg.rank), bytes.NewReader(b), int64(len(b)))
	})
}
