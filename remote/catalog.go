package remote

import (
	"context"
	"errors"
	"sort"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// The catalog: what this rank has committed in the store, in every life, known from a
// listing at Open and kept up to date by this process's commits and deletions. It
// names, per committed version, the data objects its manifest names (read lazily for
// versions committed before this process), so that no data object is deleted while a
// kept manifest or an unfinished upload names it.

// storeCkpt is what this rank has committed in the store for one checkpoint.
type storeCkpt struct {
	name string     // "" until known (a hashed key segment whose manifest was not read)
	seg  string     // the key segment
	vers []storeVer // committed versions, by life then number
}

type storeVer struct {
	life, num uint64
	keys      []string // the data objects its manifest names; nil until known
}

func (v storeVer) point() point { return point{v.life, v.num} }

func pointLess(a, b point) bool { return a.life < b.life || a.life == b.life && a.v < b.v }

// find returns the index of version p, or -1.
func (c *storeCkpt) find(p point) int {
	i := sort.Search(len(c.vers), func(i int) bool { return !pointLess(c.vers[i].point(), p) })
	if i < len(c.vers) && c.vers[i].point() == p {
		return i
	}
	return -1
}

func sortVers(vs []storeVer) {
	sort.Slice(vs, func(i, j int) bool { return pointLess(vs[i].point(), vs[j].point()) })
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

// add records a committed version (replacing one of the same life and number). Caller
// holds t.mu.
func (t *Tier) add(c *storeCkpt, v storeVer) {
	i := sort.Search(len(c.vers), func(i int) bool { return !pointLess(c.vers[i].point(), v.point()) })
	if i < len(c.vers) && c.vers[i].point() == v.point() {
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

// remove forgets a committed version. Caller holds t.mu.
func (t *Tier) remove(c *storeCkpt, p point) []string {
	i := c.find(p)
	if i < 0 {
		return nil
	}
	keys := c.vers[i].keys
	c.vers = append(c.vers[:i], c.vers[i+1:]...)
	t.unref(keys)
	return keys
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

// visible returns the committed versions of c that a restart may use, ascending by
// number: those on the lineage (see lineage), one per number.
func (c *storeCkpt) visible(caps lineage) []storeVer {
	var out []storeVer
	for _, v := range c.vers {
		if caps == nil || v.num <= caps[v.life] {
			out = append(out, v)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].num < out[j].num })
	k := 0
	for i, v := range out {
		if k > 0 && out[k-1].num == v.num {
			if v.life > out[k-1].life {
				out[k-1] = out[i] // the newest life's
			}
			continue
		}
		out[k] = v
		k++
	}
	return out[:k]
}

// storeManifest returns the manifest of this rank's committed version p of the
// checkpoint called name, or an error wrapping ErrVersion when the store holds none.
func (t *Tier) storeManifest(ctx context.Context, name string, p point) (*manifest, error) {
	seg := nameSegment(name)
	m, err := readManifest(ctx, t.st, manifestKey(t.cfg.rank, p.life, seg, p.v))
	if errors.Is(err, store.ErrNotExist) {
		return nil, base.Errf(base.ErrVersion, "version %d of %q is no longer in %s", p.v, name, t.st)
	}
	if err != nil {
		return nil, remoteErr(t.st, err, "read the manifest of version %d of %q", p.v, name)
	}
	if m.Name != name || m.Version != p.v || m.Life != p.life {
		return nil, base.Errf(base.ErrCorrupt, "%s: manifest of %v of %q names version %d of life %d of %q", t.st, p, name, m.Version, m.Life, m.Name)
	}
	return m, nil
}
