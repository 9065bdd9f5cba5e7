package remote

import (
	"context"
	"errors"
	"math"
	"sort"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// reconcile brings the local file and the store in line when a writer opens the file
// with a remote tier:
//
//   - it lists what this rank committed, and finds the newest version committed for
//     every checkpoint of the rank (S);
//   - every checkpoint whose local newest version is older than S gets version S from
//     the store (the local files are missing or behind: a restart elsewhere);
//   - committed versions newer than S and than the local copy are what a writer left
//     that died in the middle of a SaveAll's uploads: no restart can use them, and the
//     next saves will take their numbers, so they are deleted;
//   - in a job of one, local versions newer than what the store holds are queued for
//     upload (a restart on the same node after a crash).
//
// Caller is Open, alone with the tier.
func (t *Tier) reconcile(ctx context.Context) error {
	st, rank := t.st, t.cfg.rank
	keys, err := rankKeys(ctx, st, rank)
	if err != nil {
		return err
	}
	for _, k := range keys {
		r, _ := parseManifestKey(k)
		c := t.ckpt(r.seg, "")
		c.vers = append(c.vers, storeVer{num: r.ver})
	}
	own := rankListing{}
	var hashed []*storeCkpt
	for seg, c := range t.ckpts {
		sortVers(c.vers)
		for _, v := range c.vers {
			own[seg] = append(own[seg], v.num)
		}
		if name, ok := segmentName(seg); ok {
			c.name = name
		} else {
			hashed = append(hashed, c)
		}
	}
	// Names hidden behind hashed segments are in their manifests.
	err = parallel(ctx, len(hashed), 8, func(ctx context.Context, i int) error {
		c := hashed[i]
		m, err := readManifest(ctx, st, manifestKey(rank, c.seg, c.newest()))
		if err != nil {
			return err
		}
		c.name = m.Name
		return nil
	})
	if err != nil {
		return remoteErr(st, err, "read a manifest")
	}
	local := map[string]uint64{} // the local newest version of each checkpoint
	for _, v := range t.h.Versions() {
		local[v.Name] = max(local[v.Name], v.Num)
	}

	// Restart elsewhere: the store is ahead. A version that does not check out (its
	// manifest or its data damaged, or gone) is skipped for the newest older one that
	// does: Recovered says which.
	var top uint64
	for below := uint64(math.MaxUint64); ; {
		var err error
		top, _, err = newestComplete(ctx, st, rank, own.below(below), nil)
		if err != nil {
			return remoteErr(st, err, "read the manifests of rank %d", rank)
		}
		var want []*storeCkpt
		for _, c := range t.ckpts {
			if top > 0 && local[c.name] < top && c.find(top) >= 0 {
				want = append(want, c)
			}
		}
		if len(want) == 0 {
			break
		}
		err = t.importVersions(ctx, want, top)
		if err == nil {
			break
		}
		if !errors.Is(err, base.ErrCorrupt) && !errors.Is(err, store.ErrNotExist) {
			return err
		}
		t.skipped = append(t.skipped, StoreDamage{Manifest: manifestKey(rank, want[0].seg, top), Name: want[0].name, Version: int(top), Reason: err.Error()})
		below = top
	}

	// What a dead writer left above S.
	for _, c := range t.ckpts {
		for i := len(c.vers) - 1; i >= 0; i-- {
			v := c.vers[i].num
			if v <= top || v <= local[c.name] {
				break
			}
			if err := t.deleteVersion(ctx, c.seg, v); err != nil {
				return remoteErr(st, err, "delete version %d of %q, which no restart can use", v, c.name)
			}
		}
	}

	// A job of one: upload what the local file holds beyond the store.
	if t.cfg.ranks <= 1 {
		t.catchUp()
	}
	return nil
}

// below returns the listing without the versions from v on.
func (r rankListing) below(v uint64) rankListing {
	out := rankListing{}
	for seg, vs := range r {
		i := sort.Search(len(vs), func(i int) bool { return vs[i] >= v })
		if i > 0 {
			out[seg] = vs[:i]
		}
	}
	return out
}

// Skipped returns the committed versions Open could not bring in on a new node
// because they do not check out in the store (damaged or gone), newest first; it
// brought in the newest version that did.
func (t *Tier) Skipped() []StoreDamage { return t.skipped }

// importVersions brings version v of every checkpoint in cs into the local file, as
// one transaction, keeping the version numbers.
func (t *Tier) importVersions(ctx context.Context, cs []*storeCkpt, v uint64) error {
	st, rank := t.st, t.cfg.rank
	ms := make([]*manifest, len(cs))
	err := parallel(ctx, len(cs), 8, func(ctx context.Context, i int) error {
		m, err := readManifest(ctx, st, manifestKey(rank, cs[i].seg, v))
		if err != nil {
			return err
		}
		if m.Version != v || (cs[i].name != "" && m.Name != cs[i].name) {
			return base.Errf(base.ErrCorrupt, "manifest of version %d of %q names version %d of %q", v, cs[i].name, m.Version, m.Name)
		}
		ms[i] = m
		return nil
	})
	if err != nil {
		return remoteErr(st, err, "read the manifests of version %d", v)
	}
	in := make([]Incoming, len(ms))
	for i, m := range ms {
		in[i] = t.incoming(m)
	}
	if err := t.h.Import(ctx, in); err != nil {
		return remoteErr(st, err, "fetch version %d", v)
	}
	t.mu.Lock()
	for i, m := range ms {
		c := cs[i]
		if j := c.find(v); j >= 0 && c.vers[j].keys == nil {
			t.add(c, storeVer{num: v, keys: manifestKeys(m), members: m.Members})
		}
	}
	t.mu.Unlock()
	return nil
}

// catchUp queues the local versions newer than what this rank committed (under the
// Every rule; with retention in the store, only the newest Keep of them). Caller is
// reconcile.
func (t *Tier) catchUp() {
	vs := t.h.Versions()
	// Members: how many kept versions share each version's transaction and number.
	type txnNum struct{ txn, num uint64 }
	members := map[txnNum]uint32{}
	for _, v := range vs {
		if t.cfg.Selected(v.Num) {
			members[txnNum{v.Txn, v.Num}]++
		}
	}
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
	for i, v := range vs {
		if i > 0 && vs[i-1].Name != v.Name {
			flush()
		}
		var have uint64
		t.mu.Lock()
		if c := t.ckpts[nameSegment(v.Name)]; c != nil {
			have = c.newest()
		}
		t.mu.Unlock()
		if v.Num > have && t.cfg.Selected(v.Num) {
			todo = append(todo, v)
		}
	}
	flush()
	t.mu.Lock()
	t.signal()
	t.mu.Unlock()
}
