package engine

import (
	"context"
	"encoding/binary"
	"runtime/debug"
	"sort"

	"github.com/cespare/xxhash/v2"
)

// The remote tier for versions stored by blocks (differential saves). Such a version
// uploads only the blocks whose hashes differ from those of the checkpoint's newest
// version committed in the store (its base), as one data object named by the hash of
// their hashes and their length (content-addressed: a retried upload is idempotent).
// Its manifest maps every block to bytes of a data object: the new object for the
// changed blocks, the objects the base's manifest names for the others. So a manifest
// stands alone (a restore reads no chain of manifests), and an object is deleted only
// when no committed manifest names it. When the base's manifest names more than
// maxManifestObjects objects, every block is uploaded again (the objects of old
// versions would otherwise live on for a few of their blocks).
//
// A version queued for upload keeps its local chain: ckptState.upFloor holds the
// version its chain starts from, and release frees nothing from there on until the
// upload is over.

// maxManifestObjects bounds the data objects a blocks manifest names.
const maxManifestObjects = 64

// publishedBlocks fills in the upload of a version stored by blocks, just published:
// what it will send is found at upload time; here its chain is pinned. Caller holds
// f.mu (publish) and rm.mu.
func (rm *remote) publishedBlocks(it *upItem, c *Checkpoint) {
	f := rm.f
	s := c.st
	it.blocks, it.shift = true, c.slot.lay.Shift
	it.pend = c.slot.lay.Payload
	it.floor = it.ver
	if v, ok := s.newest(); ok && v.num == it.ver {
		if chain, err := f.chainLocked(s, &v); err == nil {
			it.floor = chain[0].num
		}
	}
	if s.upFloor == 0 || it.floor < s.upFloor {
		s.upFloor = it.floor
	}
}

// unpin ends an upload's hold on its version's chain: the checkpoint's floor becomes
// that of its oldest unfinished blocks upload, and what it no longer holds is freed as
// retention would have freed it.
func (rm *remote) unpin(it *upItem) {
	f := rm.f
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.pf.wake()
	s := f.byID[it.id]
	if s == nil {
		return
	}
	rm.mu.Lock()
	floor := uint64(0)
	for _, o := range rm.open {
		if o != it && o.id == it.id && o.kind == itemUpload && o.blocks && !o.sent && (floor == 0 || o.floor < floor) {
			floor = o.floor
		}
	}
	rm.mu.Unlock()
	s.upFloor = floor
	if f.closed.Load() && rm.unmapped {
		return
	}
	for _, rec := range s.release() {
		d := f.decodeVersion(rec, len(s.name))
		f.live -= recordsOf(d.blocks)
		f.liveBytes -= d.size
		if d.pos < f.log.durable {
			f.alloc.freeLater(d.slot(), f.log.records)
			f.releaseDurable()
		} else {
			f.alloc.free(d.slot())
		}
	}
}

// uploadBlocks sends the blocks of version it that its base in the store lacks, and
// prepares its manifest (it.table, it.extents, it.keys). The caller waited for the
// checkpoint's earlier uploads to commit.
func (rm *remote) uploadBlocks(it *upItem) error {
	table, src, err := rm.localTable(it)
	if err != nil {
		return err
	}
	n := it.length
	bs := int64(1) << it.shift
	nb := int64(len(table))
	base := rm.baseManifest(it, nb)
	// The blocks to send, and the object they go to.
	var segs []blockSeg
	var total int64
	for b := int64(0); b < nb; b++ {
		if base != nil && binary.LittleEndian.Uint64(base.Table[8*b:]) == table[b] {
			continue
		}
		l := blockLen(b, it.shift, n)
		segs = append(segs, blockSeg{b: b, src: src[b], at: total, n: l, hash: table[b]})
		total += l
	}
	tb := tableAsBytes(table)
	it.table = append([]byte(nil), tb...)
	key := ""
	if total > 0 {
		hs := make([]byte, 0, 8*len(segs))
		for _, sg := range segs {
			hs = binary.LittleEndian.AppendUint64(hs, sg.hash)
		}
		key = dataKey(rm.cfg.rank, xxhash.Sum64(hs), total)
	}
	// The extents: the new object for the blocks sent, the base's objects for the rest.
	var ex []extentRef
	si := 0
	for b := int64(0); b < nb; b++ {
		off, l := b*bs, blockLen(b, it.shift, n)
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
	rm.mu.Lock()
	for k := range keys {
		it.keys = append(it.keys, k)
		rm.inUse[k]++
	}
	rm.mu.Unlock()
	sort.Strings(it.keys)
	it.extents = ex
	if total == 0 {
		return nil
	}
	if committed, err := rm.needObject(key); committed || err != nil {
		return err // identical blocks are committed already: nothing to send
	}
	return rm.createFrom(key, total, func() *mapReader { return rm.segReader(it, segs, total) })
}

// localTable returns the block hashes of version it and where each block's bytes are
// in the data file, from its chain's trailers (checked against the version's hash).
func (rm *remote) localTable(it *upItem) (table []uint64, src []int64, err error) {
	f := rm.f
	rm.readMu.RLock()
	defer rm.readMu.RUnlock()
	if rm.unmapped {
		return nil, nil, context.Cause(rm.ctx)
	}
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	f.mu.Lock()
	s := f.byID[it.id]
	var chain []version
	err = errf(ErrCorrupt, "version %d of %q is gone from the local file; not uploaded", it.ver, it.name)
	if s != nil {
		for i := s.held() - 1; i >= 0; i-- {
			if v := s.heldAt(i); v.num == it.ver && v.blocks && v.hash == it.hash {
				chain, err = f.chainLocked(s, &v)
				break
			}
		}
	}
	f.mu.Unlock()
	if err != nil {
		if rm.isAbandoned(it) {
			return nil, nil, errAbandoned
		}
		return nil, nil, err
	}
	return f.assembleTable(chain, len(it.name), true)
}

// baseManifest returns the manifest of the checkpoint's newest version committed in
// the store when its blocks can serve this one's (stored by blocks of the same size
// over the same length, naming few enough objects), or nil.
func (rm *remote) baseManifest(it *upItem, nb int64) *manifest {
	rm.mu.Lock()
	c := rm.ckpts[it.seg]
	var newest uint64
	if c != nil {
		newest = c.newest()
	}
	m := rm.lastMan[it.seg]
	rm.mu.Unlock()
	if newest == 0 {
		return nil
	}
	if m == nil || m.Version != newest {
		var err error
		m, err = rm.storeManifest(rm.ctx, it.name, newest)
		if err != nil {
			return nil // no base: every block goes
		}
	}
	if m.Shift != it.shift || m.Length != it.length || int64(len(m.Table)) != 8*nb {
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

// blockSeg is one block of an upload: block b, at src in the data file, at `at` in
// the object.
type blockSeg struct {
	b, src, at, n int64
	hash          uint64
}

// segReader reads the blocks of an upload out of the data mapping, in object order
// (total bytes), checking each block against its hash the first time it is read.
func (rm *remote) segReader(it *upItem, segs []blockSeg, total int64) *mapReader {
	r := &mapReader{rm: rm, it: it, size: total, checked: make([]bool, len(segs))}
	r.copyOut = func(p []byte, off int64, data []byte) (n int, err error) {
		i := sort.Search(len(segs), func(i int) bool { return segs[i].at+segs[i].n > off })
		for n < len(p) && i < len(segs) {
			sg := &segs[i]
			if sg.src+sg.n > int64(len(data)) {
				return n, r.beyondEnd()
			}
			blk := data[sg.src : sg.src+sg.n]
			r.mu.Lock()
			ok := r.checked[i]
			r.mu.Unlock()
			if !ok {
				if xxhash.Sum64(blk) != sg.hash {
					return n, r.mismatch(sg.b)
				}
				r.mu.Lock()
				r.checked[i] = true
				r.mu.Unlock()
			}
			n += copy(p[n:], blk[off+int64(n)-sg.at:])
			i++
		}
		return n, nil
	}
	return r
}
