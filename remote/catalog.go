package remote

import (
	"context"
	"errors"
	"sort"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// The catalog: what this rank has committed in the store, known from a listing at Open
// and kept up to date by commits and deletions. It names, per committed version, the
// data objects its manifest names (read lazily for versions committed before this
// File opened), so that no data object is deleted while a committed version or an
// unfinished upload names it.

// storeCkpt is what this rank has committed in the store for one checkpoint.
type storeCkpt struct {
	name string     // "" until known (a hashed key segment whose manifest was not read)
	seg  string     // the key segment
	vers []storeVer // committed versions, oldest first
}

type storeVer struct {
	num     uint64
	keys    []string // the data objects its manifest names; nil until known
	members uint32   // its manifest's Members; 0 until known
}

// newest returns the newest committed version, or 0.
func (c *storeCkpt) newest() uint64 {
	if len(c.vers) == 0 {
		return 0
	}
	return c.vers[len(c.vers)-1].num
}

// find returns the index of version v, or -1.
func (c *storeCkpt) find(v uint64) int {
	i := sort.Search(len(c.vers), func(i int) bool { return c.vers[i].num >= v })
	if i < len(c.vers) && c.vers[i].num == v {
		return i
	}
	return -1
}

func sortVers(vs []storeVer) {
	sort.Slice(vs, func(i, j int) bool { return vs[i].num < vs[j].num })
}

// ckpt returns this rank's store state of seg, creating it. Caller holds t.mu.
func (t *Tier) ckpt(seg, name string) *storeCkpt {
	c := t.ckpts[seg]
	if c == nil {
		c = &storeCkpt{seg: seg}
		t.ckpts[seg] = c
	}
	if c.name == "" {
		c.name = name
	}
	return c
}

// add records a committed version (replacing one of the same number). Caller holds
// t.mu.
func (t *Tier) add(c *storeCkpt, v storeVer) {
	i := sort.Search(len(c.vers), func(i int) bool { return c.vers[i].num >= v.num })
	if i < len(c.vers) && c.vers[i].num == v.num {
		t.unref(c.vers[i].keys)
		c.vers[i] = v
	} else {
		c.vers = append(c.vers, storeVer{})
		copy(c.vers[i+1:], c.vers[i:])
		c.vers[i] = v
	}
	for _, k := range v.keys {
		t.refs[k]++
	}
}

func (t *Tier) unref(keys []string) {
	for _, k := range keys {
		if t.refs[k]--; t.refs[k] <= 0 {
			delete(t.refs, k)
		}
	}
}

// manifestKeys returns the data objects a manifest names.
func manifestKeys(m *manifest) []string {
	keys := make([]string, 0, len(m.Extents))
	for _, e := range m.Extents {
		keys = append(keys, e.Key)
	}
	return keys
}

// loadKeys reads the manifests of this rank's committed versions whose data objects
// are not known yet (committed before this File opened), so that no data object is
// deleted while a committed version names it.
func (t *Tier) loadKeys(ctx context.Context) error {
	t.mu.Lock()
	var todo []victim
	for _, c := range t.ckpts {
		for _, v := range c.vers {
			if v.keys == nil {
				todo = append(todo, victim{c.seg, v.num})
			}
		}
	}
	t.mu.Unlock()
	return parallel(ctx, len(todo), 8, func(ctx context.Context, i int) error {
		v := todo[i]
		m, err := readManifest(ctx, t.st, manifestKey(t.cfg.rank, v.seg, v.num))
		t.mu.Lock()
		defer t.mu.Unlock()
		c := t.ckpts[v.seg]
		j := -1
		if c != nil {
			j = c.find(v.num)
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
		if c.name == "" {
			c.name = m.Name
		}
		t.add(c, storeVer{num: v.num, keys: manifestKeys(m), members: m.Members})
		return nil
	})
}

// keysKnown reports whether the data objects of every committed version are known.
// Caller holds t.mu.
func (t *Tier) keysKnown() bool {
	for _, c := range t.ckpts {
		for _, v := range c.vers {
			if v.keys == nil {
				return false
			}
		}
	}
	return true
}

// storeManifest returns the manifest of this rank's committed version v of the
// checkpoint called name, or an error wrapping ErrVersion when the store holds none.
func (t *Tier) storeManifest(ctx context.Context, name string, v uint64) (*manifest, error) {
	t.mu.Lock()
	seg := nameSegment(name)
	c := t.ckpts[seg]
	ok := c != nil && c.find(v) >= 0
	t.mu.Unlock()
	if !ok {
		return nil, base.Errf(base.ErrVersion, "version %d of %q is not committed in %s", v, name, t.st)
	}
	m, err := readManifest(ctx, t.st, manifestKey(t.cfg.rank, seg, v))
	if errors.Is(err, store.ErrNotExist) {
		return nil, base.Errf(base.ErrVersion, "version %d of %q is no longer in %s", v, name, t.st)
	}
	if err != nil {
		return nil, remoteErr(t.st, err, "read the manifest of version %d of %q", v, name)
	}
	if m.Name != name || m.Version != v {
		return nil, base.Errf(base.ErrCorrupt, "%s: manifest of version %d of %q names version %d of %q", t.st, v, name, m.Version, m.Name)
	}
	return m, nil
}
