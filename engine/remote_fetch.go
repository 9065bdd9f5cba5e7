package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"runtime/debug"
	"sync/atomic"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/store"
)

// Fetching versions from the store: parallel ranged GETs straight into their
// destination (a slot of the data mapping, or a buffer), then a check of every 1 MiB
// block against the manifest's hashes before anything uses the bytes.

const (
	fetchPiece   = 8 << 20 // bytes per ranged GET (a multiple of the 1 MiB block)
	fetchWorkers = 4       // GETs in flight per version
)

// fetchInto downloads the payload that m describes into dst (m.Length bytes) and
// checks it. dst may be part of the data mapping: faults become ErrCorrupt. prepare,
// if not nil, is called for each piece of dst before it is written (to pre-fault it).
func fetchInto(ctx context.Context, st store.Store, m *manifest, dst []byte, prepare func(off, n int64)) error {
	if int64(len(dst)) != m.Length {
		return errf(ErrInvalid, "fetch of %d bytes into %d", m.Length, len(dst))
	}
	type piece struct {
		off, n, objOff int64
		key            string
	}
	var ps []piece
	for _, e := range m.Extents {
		for o := int64(0); o < e.Len; o += fetchPiece {
			ps = append(ps, piece{e.Off + o, min(fetchPiece, e.Len-o), e.ObjOff + o, e.Key})
		}
	}
	if len(m.Table) > 0 && crc.Combine(m.Table) != m.Hash {
		return errf(ErrCorrupt, "version %d of %q in %s: block table does not match the hash", m.Version, m.Name, st)
	}
	shift := m.blockShift()
	bs := int64(1) << shift
	nb := max(int64(1), int64(len(m.Table)/8))
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		// The blocks that lie within a piece are checked as soon as it has arrived,
		// while other pieces are still coming; the rest at the end.
		checked := make([]atomic.Bool, nb)
		var firstBad atomic.Int64
		firstBad.Store(-1)
		err := parallel(ctx, len(ps), fetchWorkers, func(ctx context.Context, i int) (err error) {
			p := ps[i]
			defer catch(&err)
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			if prepare != nil && attempt == 0 {
				prepare(p.off, p.n)
			}
			err = retry(ctx, p.n, func(ctx context.Context) error {
				rc, err := st.Get(ctx, p.key, p.objOff, p.n)
				if err != nil {
					return err
				}
				defer rc.Close()
				_, err = io.ReadFull(rc, dst[p.off:p.off+p.n])
				return err
			})
			if err != nil || len(m.Table) == 0 {
				return err
			}
			for b := (p.off + bs - 1) >> shift; ; b++ {
				lo, hi := b<<shift, min((b+1)<<shift, m.Length)
				if lo >= m.Length || hi > p.off+p.n {
					break
				}
				if crc.Block(dst[lo:hi]) != binary.LittleEndian.Uint64(m.Table[8*b:]) {
					firstBad.CompareAndSwap(-1, b)
				}
				checked[b].Store(true)
			}
			return nil
		})
		if err != nil {
			return err
		}
		bad := firstBad.Load()
		if bad < 0 {
			if bad, err = checkRest(dst, m.Hash, m.Table, shift, checked); err != nil {
				return err
			}
		}
		if bad < 0 {
			return nil
		}
		// A block that does not match: fetch everything once more (a transfer that
		// went wrong), then give up.
		lastErr = errf(ErrCorrupt, "version %d of %q in %s: block %d does not match its hash", m.Version, m.Name, st, bad)
	}
	return lastErr
}

// checkRest checks p against its hash (and block table, for more than one block),
// hashing the blocks not checked yet on every core. It returns the first bad block, or
// -1.
func checkRest(p []byte, hash uint64, table []byte, shift uint8, checked []atomic.Bool) (bad int64, err error) {
	if len(table) == 0 {
		defer catch(&err)
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		if crc.Payload(p) != hash {
			return 0, nil
		}
		return -1, nil
	}
	if crc.Combine(table) != hash {
		return 0, errf(ErrCorrupt, "block table does not match the hash")
	}
	n := int64(len(table) / 8)
	var next atomic.Int64
	var first atomic.Int64
	first.Store(-1)
	err = parallel(context.Background(), runtime.GOMAXPROCS(0), runtime.GOMAXPROCS(0), func(_ context.Context, _ int) (err error) {
		defer catch(&err)
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		for {
			b := next.Add(1) - 1
			if b >= n {
				return nil
			}
			if checked[b].Load() {
				continue
			}
			lo, hi := b<<shift, min((b+1)<<shift, int64(len(p)))
			if crc.Block(p[lo:hi]) != binary.LittleEndian.Uint64(table[8*b:]) {
				first.CompareAndSwap(-1, b)
				return nil
			}
		}
	})
	return first.Load(), err
}

// importSlot allocates a slot in the data file for version m of checkpoint name,
// downloads the payload into it and writes the rest of the slot (block table,
// padding, name, trailer) as a save does, with the version number, hash and time of
// m, transaction txn of txnSize versions. Nothing is published: the caller publishes
// the slot (rewriteIndex) or gives it back (f.alloc.free).
func (f *File) importSlot(ctx context.Context, st store.Store, m *manifest, name string, txn uint64, txnSize uint32) (v version, err error) {
	n := m.Length
	// A version stored by blocks comes in as a full version stored by blocks: its
	// hash and table are the manifest's, and later deltas may build on it.
	var lay blockLayout
	need := footprint(n, len(name))
	if m.Shift > 0 {
		lay = blockLayout{RegionLen: n, Shift: m.Shift, K: blockCount(n, m.Shift), Payload: n}
		need = lay.footprint(len(name))
	}
	f.mu.Lock()
	off, size := f.alloc.alloc(need, payloadAlign(n))
	if n >= hugeAlign && !f.opts.NoHugePages && !f.huge && f.data.SetHugePages(true) == nil {
		f.huge = true // 2 MiB folios: one fault per 2 MiB of the import (hugeFolios may undo it)
	}
	var gerr error
	if off+size > f.opts.MaxSize {
		gerr = errf(ErrFull, "import of %d bytes needs the data file to reach %d bytes, MaxSize is %d", n, off+size, f.opts.MaxSize)
	} else if off+size > f.data.Size() {
		if err := f.data.Grow(off + size); err != nil {
			gerr = fileErr("grow", f.path, err)
		}
	}
	if gerr != nil {
		f.alloc.free(extent{off, off + size})
		f.mu.Unlock()
		return version{}, gerr
	}
	f.mu.Unlock()
	defer func() {
		if err != nil {
			f.mu.Lock()
			f.alloc.free(extent{off, off + size})
			f.mu.Unlock()
		}
	}()
	data := f.data.Bytes()
	// Each piece's pages are faulted in before the GET writes them, on as many
	// goroutines as GETs run, so the GET does not fault page by page.
	populate := func(o, k int64) { _ = f.data.Populate(off+o, k) }
	if err := fetchInto(ctx, st, m, data[off:off+n], populate); err != nil {
		return version{}, err
	}
	if m.Shift > 0 {
		if err := f.finishBlockSlot(off, name, m, &lay, txn, txnSize); err != nil {
			return version{}, err
		}
		return version{num: m.Version, off: off, length: n, hash: m.Hash, time: m.Time, txn: txn, size: size, blocks: true, lay: lay}, nil
	}
	if err := f.finishSlot(off, n, name, m, txn, txnSize); err != nil {
		return version{}, err
	}
	return version{num: m.Version, off: off, length: n, hash: m.Hash, time: m.Time, txn: txn, size: size}, nil
}

// finishBlockSlot writes the trailer of a full version stored by blocks after its
// payload in place: the manifest's table, then the rest as a save does.
func (f *File) finishBlockSlot(off int64, name string, m *manifest, lay *blockLayout, txn uint64, txnSize uint32) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data := f.data.Bytes()
	t0 := off + pad8(lay.Payload)
	clear(data[off+lay.Payload : t0])
	tr := data[t0 : t0+trailerFixed+lay.extLen(len(name))]
	_, hashes := blockParts(tr, lay)
	copy(hashes, m.Table)
	t := trailer{Hash: m.Hash, Length: uint64(lay.Payload), Version: m.Version, Txn: txn, Time: m.Time, TxnCount: txnSize, Session: f.session}
	writeBlockTrailer(tr, f.seed, &t, lay, name)
	return nil
}

// finishSlot writes the block table, padding and trailer after a payload in place.
func (f *File) finishSlot(off, n int64, name string, m *manifest, txn uint64, txnSize uint32) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data := f.data.Bytes()
	t0 := off + pad8(n)
	clear(data[off+n : t0])
	copy(data[t0+trailerFixed:], m.Table)
	t := trailer{Hash: m.Hash, Length: uint64(n), Version: m.Version, Txn: txn, Time: m.Time, TxnCount: txnSize, Session: f.session}
	writeTrailer(data[t0:t0+trailerLen(n, len(name))], f.seed, &t, name)
	return nil
}

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
// Caller is Open, alone with the File.
func (rm *remote) reconcile(ctx context.Context) error {
	f, st, rank := rm.f, rm.st, rm.cfg.rank
	var objs []store.Object
	err := retry(ctx, 0, func(ctx context.Context) error {
		var err error
		objs, err = st.List(ctx, rankManifests(rank))
		return err
	})
	if err != nil {
		return remoteErr(st, err, "list the versions rank %d committed", rank)
	}
	for _, o := range objs {
		r, ok := parseManifestKey(o.Key)
		if !ok || r.rank != rank {
			continue
		}
		c := rm.ckpt(r.seg, "")
		c.vers = append(c.vers, storeVer{num: r.ver})
	}
	own := rankListing{}
	var hashed []*storeCkpt
	for seg, c := range rm.ckpts {
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
	top, _, err := newestComplete(ctx, st, rank, own, nil)
	if err != nil {
		return remoteErr(st, err, "read the manifests of rank %d", rank)
	}
	localNewest := func(name string) uint64 {
		if s := f.ckpts[name]; s != nil {
			if v, ok := s.newest(); ok {
				return v.num
			}
		}
		return 0
	}

	// Restart elsewhere: the store is ahead.
	var want []*storeCkpt
	for _, c := range rm.ckpts {
		if top > 0 && localNewest(c.name) < top && c.find(top) >= 0 {
			want = append(want, c)
		}
	}
	if len(want) > 0 {
		if err := rm.importVersions(ctx, want, top); err != nil {
			return err
		}
	}

	// What a dead writer left above S.
	for _, c := range rm.ckpts {
		local := localNewest(c.name)
		for i := len(c.vers) - 1; i >= 0; i-- {
			v := c.vers[i].num
			if v <= top || v <= local {
				break
			}
			if err := rm.deleteVersion(ctx, c.seg, v); err != nil {
				return remoteErr(st, err, "delete version %d of %q, which no restart can use", v, c.name)
			}
		}
	}

	// A job of one: upload what the local file holds beyond the store.
	if rm.cfg.ranks <= 1 {
		rm.catchUp()
	}
	return nil
}

func sortVers(vs []storeVer) {
	for i := 1; i < len(vs); i++ {
		for j := i; j > 0 && vs[j].num < vs[j-1].num; j-- {
			vs[j], vs[j-1] = vs[j-1], vs[j]
		}
	}
}

// importVersions brings version v of every checkpoint in cs into the local file, as
// one transaction, keeping the version numbers.
func (rm *remote) importVersions(ctx context.Context, cs []*storeCkpt, v uint64) (err error) {
	f, st, rank := rm.f, rm.st, rm.cfg.rank
	ms := make([]*manifest, len(cs))
	err = parallel(ctx, len(cs), 8, func(ctx context.Context, i int) error {
		m, err := readManifest(ctx, st, manifestKey(rank, cs[i].seg, v))
		if err != nil {
			return err
		}
		if m.Version != v || (cs[i].name != "" && m.Name != cs[i].name) {
			return errf(ErrCorrupt, "manifest of version %d of %q names version %d of %q", v, cs[i].name, m.Version, m.Name)
		}
		ms[i] = m
		return nil
	})
	if err != nil {
		return remoteErr(st, err, "read the manifests of version %d", v)
	}
	f.mu.Lock()
	txn := f.nextTxn
	f.nextTxn++
	f.mu.Unlock()
	plan := indexPlan{add: map[*ckptState]version{}}
	defer func() {
		if err != nil { // give the slots back
			f.mu.Lock()
			for _, x := range plan.add {
				f.alloc.free(x.slot())
			}
			f.mu.Unlock()
		}
	}()
	for i, m := range ms {
		x, ierr := f.importSlot(ctx, st, m, m.Name, txn, uint32(len(ms)))
		if ierr != nil {
			return remoteErr(st, ierr, "fetch version %d of %q", v, m.Name)
		}
		f.mu.Lock()
		s := f.stateFor(m.Name)
		f.mu.Unlock()
		plan.add[s] = x
		c := cs[i]
		keys := make([]string, 0, len(m.Extents))
		for _, e := range m.Extents {
			keys = append(keys, e.Key)
		}
		rm.mu.Lock()
		if j := c.find(v); j >= 0 && c.vers[j].keys == nil {
			rm.add(c, storeVer{num: v, keys: keys, members: m.Members})
		}
		rm.mu.Unlock()
	}
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rewriteIndex(plan)
}

// stateFor returns the state of a checkpoint name, creating it (unregistered, not yet
// named in the index). Caller holds f.mu.
func (f *File) stateFor(name string) *ckptState {
	s := f.ckpts[name]
	if s == nil {
		s = &ckptState{f: f, id: f.nextID, name: name, next: 1}
		f.nextID++
		f.ckpts[name] = s
		f.byID[s.id] = s
	}
	return s
}

// catchUp queues the local versions newer than what this rank committed (under the
// Every rule; with retention in the store, only the newest Keep of them). Caller is
// reconcile.
func (rm *remote) catchUp() {
	f := rm.f
	f.mu.Lock()
	defer f.mu.Unlock()
	rm.mu.Lock()
	defer rm.mu.Unlock()
	// Members: how many kept versions share each version's transaction and number.
	type txnNum struct{ txn, num uint64 }
	members := map[txnNum]uint32{}
	states := sortedStates(f.byID)
	for _, s := range states {
		for i := 0; i < s.n(); i++ {
			if v := s.at(i); rm.cfg.selected(v.num) {
				members[txnNum{v.txn, v.num}]++
			}
		}
	}
	for _, s := range states {
		seg := rm.seg(s.id, s.name)
		var have uint64
		if c := rm.ckpts[seg]; c != nil {
			have = c.newest()
		}
		var todo []version
		for i := 0; i < s.n(); i++ {
			if v := s.at(i); v.num > have && rm.cfg.selected(v.num) {
				todo = append(todo, v)
			}
		}
		if k := rm.cfg.keep; k > 0 && len(todo) > k {
			todo = todo[len(todo)-k:]
		}
		for _, v := range todo {
			it := &upItem{
				kind: itemUpload, id: s.id, name: s.name, seg: seg, ver: v.num,
				off: v.off, length: v.length, hash: v.hash, time: v.time, txn: v.txn,
				txnSize: f.trailerTxnSize(&v, len(s.name)), members: members[txnNum{v.txn, v.num}],
				key: dataKey(rm.cfg.rank, v.hash, v.length), pend: v.length,
			}
			if v.blocks {
				it.blocks, it.shift, it.key, it.pend, it.floor = true, v.lay.Shift, "", v.lay.Payload, v.num
				if chain, err := f.chainLocked(s, &v); err == nil {
					it.floor = chain[0].num
				}
				if s.upFloor == 0 || it.floor < s.upFloor {
					s.upFloor = it.floor
				}
			}
			rm.enqueue(it)
		}
	}
	rm.signal()
}

// trailerTxnSize reads the transaction size of a version from its trailer (0 if the
// trailer cannot be read). Caller holds f.mu.
func (f *File) trailerTxnSize(v *version, nameLen int) (n uint32) {
	defer func() {
		if recover() != nil {
			n = 0
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data := f.data.Bytes()
	end := v.off + v.footprint(nameLen)
	if end > int64(len(data)) {
		return 0
	}
	payload := v.length
	if v.blocks {
		payload = v.lay.Payload
	}
	t, ok := readTrailer(data[v.off+pad8(payload):end], f.seed)
	if !ok {
		return 0
	}
	return t.TxnCount
}

// storeManifest returns the manifest of this rank's committed version v of the
// checkpoint called name, or an error wrapping ErrVersion when the store holds none.
func (rm *remote) storeManifest(ctx context.Context, name string, v uint64) (*manifest, error) {
	rm.mu.Lock()
	seg := nameSegment(name)
	c := rm.ckpts[seg]
	ok := c != nil && c.find(v) >= 0
	rm.mu.Unlock()
	if !ok {
		return nil, errf(ErrVersion, "version %d of %q is not committed in %s", v, name, rm.st)
	}
	m, err := readManifest(ctx, rm.st, manifestKey(rm.cfg.rank, seg, v))
	if errors.Is(err, store.ErrNotExist) {
		return nil, errf(ErrVersion, "version %d of %q is no longer in %s", v, name, rm.st)
	}
	if err != nil {
		return nil, remoteErr(rm.st, err, "read the manifest of version %d of %q", v, name)
	}
	if m.Name != name || m.Version != v {
		return nil, errf(ErrCorrupt, "%s: manifest of version %d of %q names version %d of %q", rm.st, v, name, m.Version, m.Name)
	}
	return m, nil
}
