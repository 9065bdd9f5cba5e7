package remote

import (
	"context"
	"errors"

	"github.com/ckp-go/ckp/internal/base"
)

// reconcile reads, when a writer opens its file with a remote tier, what this rank has
// committed in the store (every life), so that restores may fall back to the store and
// retention knows what to delete. It decides nothing about the job: a process joins
// the job with RestoreJob (Join), or, in a job of one rank, at its first upload. In a
// job of one, the local versions newer than what the store holds are queued for upload
// (a restart on the same node after a crash: the rank's history is its own).
//
// Caller is Open, alone with the tier.
func (t *Tier) reconcile(ctx context.Context) error {
	st := t.st
	// What this rank committed, and the job's newest life, are read at once: a new
	// node's restart waits for each round trip. The error of the read that failed first
	// is Open's. A tier without background workers reads them one after the other, the
	// rank's versions first, and stops at the first error.
	var (
		n uint64
		L *lifeRec
	)
	err := t.parallel(ctx, 2, 2, func(ctx context.Context, i int) error {
		if i == 0 {
			return t.readRank(ctx)
		}
		var err error
		if n, L, err = t.newestLife(ctx); err != nil {
			return remoteErr(st, err, "read the job's state")
		}
		return nil
	})
	if err != nil && !errors.Is(err, base.ErrRemote) {
		err = remoteErr(st, err, "read the job's state") // ctx ended before a read began
	}
	if err != nil {
		return err
	}
	caps, err := lineageIn(ctx, n, t.life)
	if err != nil {
		return remoteErr(st, err, "read the job's state")
	}
	for _, c := range t.ckpts {
		if vis := c.visible(caps); len(vis) > 0 && c.name != "" {
			t.newest[c.name] = vis[len(vis)-1].num
		}
	}
	if t.cfg.ranks > 1 {
		return nil
	}
	vs := t.h.Versions()
	if len(vs) == 0 {
		return nil // a new node: nothing to catch up with, no need to read the log
	}
	// This process's first upload will begin a new life at the newest life's restart
	// point (the rank was a member of it, in an earlier process): what the earlier
	// process committed above that point is abandoned then, and the local copies are
	// uploaded again.
	if n > 0 {
		h, err := logHead(ctx, st, L)
		if err != nil {
			return remoteErr(st, err, "read the job's state")
		}
		if caps, err = t.lineageAt(ctx, h.rp); err != nil {
			return remoteErr(st, err, "read the job's state")
		}
	}
	return t.catchUp(caps, vs)
}

// lineageAt is the lineage of a life that begins at p: the versions a restart there
// may use.
func (t *Tier) lineageAt(ctx context.Context, p point) (lineage, error) {
	if p.v == 0 {
		return lineage{}, nil // the start: nothing
	}
	caps, err := t.lineageOf(ctx, p.life)
	if err != nil {
		return nil, err
	}
	caps[p.life] = min(caps[p.life], p.v)
	return caps, nil
}

// NewestOf returns the newest version of the checkpoint called name that a restart may
// restore from the store, as Open found it (0: none): a checkpoint registered on a new
// node numbers its saves after it.
func (t *Tier) NewestOf(name string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.newest[name]
}

// catchUp queues the local versions newer than what this rank committed that a restore
// may use (under the Every rule; with retention in the store, only the newest Keep of
// them), of vs, the kept versions. Caller is reconcile.
func (t *Tier) catchUp(caps lineage, vs []Sealed) error {
	// Members: how many kept versions share each version's transaction and number.
	type txnNum struct{ txn, num uint64 }
	members := map[txnNum]uint32{}
	for _, v := range vs {
		if t.cfg.Selected(v.Num) {
			members[txnNum{v.Txn, v.Num}]++
		}
	}
	// The registered checkpoints are not known yet: a version needs those of the local
	// file that have it.
	var todo []Sealed
	flush := func() {
		if k := t.cfg.keep; k > 0 && len(todo) > k {
			todo = todo[len(todo)-k:]
		}
		for _, v := range todo {
			p, err := t.h.Pin(v.Name, v.Num)
			if err != nil {
				continue // dropped since: nothing to upload
			}
			t.mu.Lock()
			t.enqueueUpload(p, members[txnNum{v.Txn, v.Num}])
			t.mu.Unlock()
		}
		todo = todo[:0]
	}
	needs := map[uint64][]string{}
	for i, v := range vs {
		if i > 0 && vs[i-1].Name != v.Name {
			flush()
		}
		var have uint64
		t.mu.Lock()
		if c := t.ckpts[nameSegment(v.Name)]; c != nil {
			if vis := c.visible(caps); len(vis) > 0 {
				have = vis[len(vis)-1].num
			}
		}
		t.mu.Unlock()
		if v.Num > have && t.cfg.Selected(v.Num) {
			todo = append(todo, v)
			needs[v.Num] = append(needs[v.Num], v.Name)
		}
	}
	flush()
	t.mu.Lock()
	for num, names := range needs {
		t.required[num] = sortedCopy(names)
	}
	t.signal()
	t.mu.Unlock()
	return nil
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// readRank reads the versions this rank committed in the store (every life), and the
// names behind hashed segments from their newest manifests. It touches only t.ckpts,
// which nothing else reads while Open runs.
func (t *Tier) readRank(ctx context.Context) error {
	st, rank := t.st, t.cfg.rank
	keys, err := rankKeys(ctx, st, rank)
	if err != nil {
		return err
	}
	for _, k := range keys {
		r, _ := parseManifestKey(k)
		c := t.ckpt(r.seg, "")
		c.vers = append(c.vers, storeVer{life: r.life, num: r.ver})
	}
	var hashed []*storeCkpt
	for seg, c := range t.ckpts {
		sortVers(c.vers)
		if name, ok := segmentName(seg); ok {
			c.name = name
		} else {
			hashed = append(hashed, c)
		}
	}
	// Names hidden behind hashed segments are in their manifests.
	err = t.parallel(ctx, len(hashed), 8, func(ctx context.Context, i int) error {
		c := hashed[i]
		v := c.vers[len(c.vers)-1]
		m, err := readManifest(ctx, st, manifestKey(rank, v.life, c.seg, v.num))
		if err != nil {
			return err
		}
		c.name = m.Name
		return nil
	})
	if err != nil {
		return remoteErr(st, err, "read a manifest")
	}
	return nil
}
