package remote

import (
	"encoding/binary"
	"sort"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/internal/base"
)

// Versions stored by blocks (differential saves). Such a version uploads only the
// blocks whose hashes differ from those of the checkpoint's newest version committed in
// the store (its base), as one data object named by the hash of their hashes and their
// length (content-addressed: a retried upload is idempotent). Its manifest maps every
// block to bytes of a data object: the new object for the changed blocks, the objects
// the base's manifest names for the others. So a manifest stands alone (a restore reads
// no chain of manifests), and an object is deleted only when no committed manifest
// names it. When the base's manifest names more than maxManifestObjects objects, every
// block is uploaded again (the objects of old versions would otherwise live on for a
// few of their blocks).

// maxManifestObjects bounds the data objects a blocks manifest names.
const maxManifestObjects = 64

// uploadBlocks sends the blocks of the version of it that its base in the store lacks,
// and prepares its manifest (it.table, it.extents, it.keys). The caller waited for the
// checkpoint's earlier uploads to commit.
func (t *Tier) uploadBlocks(it *item) error {
	table, src, err := t.blocks(it)
	if err != nil {
		return err
	}
	v := &it.v
	n := v.Length
	bs := int64(1) << v.Shift
	nb := int64(len(table))
	base := t.baseManifest(it, nb)
	// The blocks to send, and the object they go to.
	var segs []segment
	var total int64
	for b := int64(0); b < nb; b++ {
		if base != nil && binary.LittleEndian.Uint64(base.Table[8*b:]) == table[b] {
			continue
		}
		l := blockLen(b, v.Shift, n)
		segs = append(segs, segment{b: b, src: src[b], at: total, n: l, hash: table[b]})
		total += l
	}
	it.table = tableBytes(table)
	key := ""
	if total > 0 {
		hs := make([]byte, 0, 8*len(segs))
		for _, sg := range segs {
			hs = binary.LittleEndian.AppendUint64(hs, sg.hash)
		}
		key = dataKey(t.cfg.rank, it.life, it.num, xxhash.Sum64(hs), total)
	}
	// The extents: the new object for the blocks sent, the base's objects for the rest.
	var ex []extentRef
	si := 0
	for b := int64(0); b < nb; b++ {
		off, l := b*bs, blockLen(b, v.Shift, n)
		var k string
		var objOff int64
		if si < len(segs) && segs[si].b == b {
			k, objOff = key, segs[si].at
			si++
		} else {
			e := base.extentAt(off)
			k, objOff = e.Key, e.ObjOff+(off-e.Off)
		}
		if j := len(ex) - 1; j >= 0 && ex[j].Key == k && ex[j].ObjOff+ex[j].Len == objOff {
			ex[j].Len += l
			continue
		}
		ex = append(ex, extentRef{Off: off, Len: l, ObjOff: objOff, Key: k})
	}
	keys := map[string]bool{}
	for i := range ex {
		e := &ex[i]
		e.Hash = tableHash(it.table, e.Off/bs, (e.Off+e.Len+bs-1)/bs)
		keys[e.Key] = true
	}
	// The objects the manifest will name stay until it is committed.
	t.mu.Lock()
	for k := range keys {
		it.keys = append(it.keys, k)
		t.inUse[k]++
	}
	t.mu.Unlock()
	sort.Strings(it.keys)
	it.extents = ex
	if total == 0 {
		return nil
	}
	if committed, err := t.needObject(key); committed || err != nil {
		return err // identical blocks are committed already: nothing to send
	}
	return t.send(it, key, segs, total)
}

// blockLen is the length of block b of n bytes in blocks of 1<<shift.
func blockLen(b int64, shift uint8, n int64) int64 { return base.BlockLen(b, shift, n) }

// baseManifest returns the manifest of the checkpoint's newest version committed in
// this life when its blocks can serve this one's (stored by blocks of the same size
// over the same length, naming few enough objects), or nil: the first version a process
// uploads in a life sends every block.
func (t *Tier) baseManifest(it *item, nb int64) *manifest {
	t.mu.Lock()
	m := t.lastMan[it.seg]
	t.mu.Unlock()
	if m == nil || m.Life != it.life || m.Version >= it.num {
		return nil
	}
	if m.Shift != it.v.Shift || m.Length != it.v.Length || int64(len(m.Table)) != 8*nb {
		return nil
	}
	objs := map[string]bool{}
	for _, e := range m.Extents {
		objs[e.Key] = true
	}
	if len(objs) >= maxManifestObjects {
		return nil
	}
	return m
}

// extentAt returns the extent that holds payload offset off.
func (m *manifest) extentAt(off int64) *extentRef {
	i := sort.Search(len(m.Extents), func(i int) bool { return m.Extents[i].Off+m.Extents[i].Len > off })
	return &m.Extents[i]
}
