package remote

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/ckp-go/ckp/internal/base"
)

// Restarting a rank: RestoreJob's half in the tier (Join), the job's restart point as a
// rank sees it (JobVersion), and the versions a restore may take from the store.

// Restart is where a rank restarts: the job's restart point and, when it is a version,
// for each registered checkpoint what to restore.
type Restart struct {
	// Version is the version every rank restarts from; 0 to start over.
	Version uint64
	// Life is the life of the job this process is now a member of.
	Life uint64
	// In holds, for each name given to Join and in that order, the version to restore
	// (its Hash tells a local copy with the same bytes).
	In []Incoming
}

// Join begins a new session of this rank in the job (RestoreJob): it abandons the
// queued uploads of any earlier session of this process, joins the job's current life
// (sealing the newest one and beginning the next when this rank was already a member of
// it: docs/REMOTE.md, "The job protocol"), and returns the life's base: the version to
// restore every registered checkpoint (names, sorted) from. It fails with ErrCorrupt
// when the rank's version record of the base does not name every registered
// checkpoint (the checkpoints registered differ from those saved), and with ErrRemote
// when the store fails.
func (t *Tier) Join(ctx context.Context, names []string) (Restart, error) {
	ctx, cancel := context.WithTimeout(t.callerCtx(ctx), t.cfg.timeout)
	defer cancel()
	if err := t.jobMu.lock(ctx); err != nil {
		return Restart{}, t.joinErr(err)
	}
	defer t.jobMu.Unlock()
	j := &t.job
	old := *j
	*j = jobState{g: j.g, nonce: newNonce(), rpRec: j.rpRec, cleaned: j.cleaned, cleanOK: j.cleanOK}
	if err := t.join(ctx); err != nil {
		// Nothing changes here: the queued uploads go on in the life they were in (a
		// failure after the store changed shows in that life's records).
		*j = old
		return Restart{}, t.joinErr(err)
	}
	// The earlier session's uploads are abandoned while jobMu is held: one waiting for
	// its life sees the mark before it could commit in the new one.
	t.mu.Lock()
	for _, it := range t.open {
		it.abandoned = true
	}
	clear(t.commits)
	clear(t.required)
	clear(t.dedup)
	clear(t.lastMan)
	t.signal()
	t.mu.Unlock()
	j.restored = true
	r := Restart{Version: j.base.v, Life: j.life}
	if j.base.v == 0 {
		return r, nil
	}
	rec, err := t.versionRecord(ctx, j.base, t.cfg.rank)
	if err != nil {
		return Restart{}, t.joinErr(err)
	}
	// Each name's manifest, read and checked several at once (a new node's restart
	// waits for each round trip; without background workers, one after another).
	ms := make([]*manifest, len(names))
	err = t.parallel(ctx, len(names), lookupWorkers, func(ctx context.Context, i int) error {
		name := names[i]
		c, ok := rec.lookup(name)
		if !ok {
			return base.Errf(base.ErrCorrupt, "%s: rank %d saved no checkpoint %q at the job's restart point (%v): register the checkpoints that were saved",
				t.st, t.cfg.rank, name, j.base)
		}
		m, err := t.cachedManifest(ctx, c.manifest)
		if err != nil {
			return t.joinErr(err)
		}
		if m.Name != name || m.Version != j.base.v || m.Life != j.base.life || m.Hash != c.hash {
			return base.Errf(base.ErrCorrupt, "%s: manifest %s does not describe version %d of %q of life %d", t.st, c.manifest, j.base.v, name, j.base.life)
		}
		ms[i] = m
		return nil
	})
	if err != nil {
		return Restart{}, t.joinErr(err)
	}
	for _, m := range ms {
		r.In = append(r.In, t.incoming(m))
	}
	return r, nil
}

// joinErr wraps a failure of the job protocol's requests in ErrRemote.
func (t *Tier) joinErr(err error) error {
	if errors.Is(err, base.ErrRemote) || errors.Is(err, base.ErrInvalid) || errors.Is(err, base.ErrCorrupt) {
		return err
	}
	return remoteErr(t.st, err, "join the job")
}

// JobVersion returns the job's restart point: the newest version complete on every rank
// in the job's current life, or, when none is yet, the version the life began from (0:
// the start). It reads the store (a few requests, whatever the number of ranks).
func (t *Tier) JobVersion(ctx context.Context) (v, life uint64, err error) {
	ctx = t.callerCtx(ctx)
	p, n, err := t.restartPoint(ctx)
	if err != nil {
		return 0, 0, t.joinErr(err)
	}
	return p.v, n, nil
}

// restartPoint is the job's restart point: from this process's life's log when it is
// still the newest life, else as a tool reads it.
func (t *Tier) restartPoint(ctx context.Context) (point, uint64, error) {
	if err := t.jobMu.lock(ctx); err != nil {
		return point{}, 0, err
	}
	if t.job.life != 0 && t.job.restart == nil {
		h, newer, err := t.state(ctx)
		life := t.job.life
		t.jobMu.Unlock()
		if err != nil {
			return point{}, 0, err
		}
		if !newer {
			return h.rp, life, nil
		}
	} else {
		t.jobMu.Unlock()
	}
	return restartPoint(ctx, t.st)
}

// Restorable is what a restore may take from the store, as one reading of the job's
// lineage judged it: the versions on the lineage of this process's life (of the job's
// newest life before the process joined one). A restore of several checkpoints asks
// one Restorable, so that every checkpoint is judged against the same lineage, which
// is read once (a new node's restart pays for its round trips).
type Restorable struct {
	t     *Tier
	caps  lineage
	ahead *Ahead // manifests read ahead (Use)
}

// Restorable reads the lineage a restore judges versions by (see Restorable).
func (t *Tier) Restorable(ctx context.Context) (*Restorable, error) {
	ctx = t.callerCtx(ctx)
	if err := t.jobMu.lock(ctx); err != nil {
		return nil, t.joinErr(err)
	}
	life := t.job.life
	t.jobMu.Unlock()
	var caps lineage
	var err error
	if life != 0 {
		caps, err = t.lineageOf(ctx, life)
	} else {
		caps, err = t.storeLineage(ctx)
	}
	if err != nil {
		return nil, t.joinErr(err)
	}
	return &Restorable{t: t, caps: caps}, nil
}

// Seen returns a Restorable judged by the lineage of the newest life this process has
// seen, without a request, for reading manifests ahead (Ahead) while Restorable reads
// the lineage again: nil when that read needs no request (the process is a member of
// a life), when no life was seen, or in a tier without background workers.
func (t *Tier) Seen(ctx context.Context) *Restorable {
	if t.cfg.workers <= 0 {
		return nil
	}
	if err := t.jobMu.lock(ctx); err != nil {
		return nil
	}
	life := t.job.life
	t.jobMu.Unlock()
	if life != 0 {
		return nil
	}
	t.mu.Lock()
	n := t.newestSeen
	t.mu.Unlock()
	if n == 0 {
		return nil
	}
	caps, err := lineageIn(ctx, n, func(_ context.Context, n uint64) (*lifeRec, error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if L := t.lives[n]; L != nil {
			return L, nil
		}
		return nil, errNotSeen
	})
	if err != nil {
		return nil
	}
	return &Restorable{t: t, caps: caps}
}

// errNotSeen is Seen's: a life record this process has not read.
var errNotSeen = errors.New("remote: life record not read yet")

// Ahead is manifests read ahead of a restore's lookups (Restorable.Ahead).
type Ahead struct {
	reads map[aheadKey]*aheadRead
	wg    sync.WaitGroup
}

type aheadKey struct {
	name string
	at   point
}

type aheadRead struct {
	done chan struct{}
	m    *manifest
	err  error
}

// Ahead starts reading the manifests of version nums[i] of the checkpoint called
// names[i], for every i that r judges restorable, and returns at once. A Restorable
// read later uses them (Use) where it judges the same version of the same life the one
// to restore: a manifest never changes, so a new node's restore reads the lineage and
// the manifests at once, and no manifest twice. The reads end with ctx; Wait waits
// for them.
func (r *Restorable) Ahead(ctx context.Context, names []string, nums []uint64) *Ahead {
	if r == nil {
		return nil
	}
	ctx = r.t.callerCtx(ctx)
	a := &Ahead{reads: map[aheadKey]*aheadRead{}}
	for i, name := range names {
		vs := r.visible(name)
		k := sort.Search(len(vs), func(k int) bool { return vs[k].num >= nums[i] })
		if k == len(vs) || vs[k].num != nums[i] {
			continue
		}
		key := aheadKey{name, vs[k].point()}
		if a.reads[key] != nil {
			continue
		}
		rd := &aheadRead{done: make(chan struct{})}
		a.reads[key] = rd
		a.wg.Go(func() {
			defer close(rd.done)
			rd.m, rd.err = r.t.storeManifest(ctx, name, key.at)
		})
	}
	return a
}

// Wait waits for the reads a started.
func (a *Ahead) Wait() {
	if a != nil {
		a.wg.Wait()
	}
}

// Use makes r's lookups take the manifests a read ahead.
func (r *Restorable) Use(a *Ahead) { r.ahead = a }

// read returns the manifest of version at of the checkpoint called name if a read it
// ahead (successfully), waiting for the read.
func (a *Ahead) read(ctx context.Context, name string, at point) (*manifest, bool) {
	if a == nil {
		return nil, false
	}
	rd := a.reads[aheadKey{name, at}]
	if rd == nil {
		return nil, false
	}
	select {
	case <-rd.done:
		return rd.m, rd.err == nil
	case <-ctx.Done():
		return nil, false
	}
}

// visible returns the versions of the checkpoint called name on r's lineage.
func (r *Restorable) visible(name string) []storeVer {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.ckpts[nameSegment(name)]
	if c == nil {
		return nil
	}
	return c.visible(r.caps)
}

// Committed returns the numbers of the versions of the checkpoint called name that a
// restore may take from the store, ascending.
func (r *Restorable) Committed(name string) []uint64 {
	vs := r.visible(name)
	out := make([]uint64, len(vs))
	for i, v := range vs {
		out[i] = v.num
	}
	return out
}

// LookupAll looks up version nums[i] of the checkpoint called names[i] for every i,
// several at once (a new node's restart waits for each round trip): ins[i] and errs[i]
// are Lookup's.
func (r *Restorable) LookupAll(ctx context.Context, names []string, nums []uint64) (ins []Incoming, errs []error) {
	ins, errs = make([]Incoming, len(names)), make([]error, len(names))
	ran := make([]bool, len(names))
	_ = r.t.parallel(ctx, len(names), lookupWorkers, func(ctx context.Context, i int) error {
		ins[i], errs[i] = r.Lookup(ctx, names[i], nums[i])
		ran[i] = true
		return nil
	})
	for i := range names {
		if !ran[i] { // ctx ended first: Lookup says how
			ins[i], errs[i] = r.Lookup(ctx, names[i], nums[i])
		}
	}
	return ins, errs
}

// lookupWorkers is the number of manifests LookupAll reads at once.
const lookupWorkers = 8

// Lookup returns version v of the checkpoint called name as this rank committed it,
// for a restore that falls back to the store: an error wrapping ErrVersion when the
// store holds no version v a restore may use.
func (r *Restorable) Lookup(ctx context.Context, name string, v uint64) (Incoming, error) {
	t := r.t
	ctx = t.callerCtx(ctx)
	vs := r.visible(name)
	i := sort.Search(len(vs), func(i int) bool { return vs[i].num >= v })
	if i == len(vs) || vs[i].num != v {
		return Incoming{}, base.Errf(base.ErrVersion, "version %d of %q is not committed in %s", v, name, t.st)
	}
	if m, ok := r.ahead.read(ctx, name, vs[i].point()); ok {
		return t.incoming(m), nil
	}
	m, err := t.storeManifest(ctx, name, vs[i].point())
	if err != nil {
		return Incoming{}, err
	}
	return t.incoming(m), nil
}
