package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/store"
)

// The uploader. A save that is published queues each of its versions that the Every
// rule selects (remote.published, called by publish under f.mu). A bounded pool of
// goroutines uploads them: the version's bytes are read straight out of the data
// mapping, each 1 MiB block checked against its hash before it is handed to the store,
// into a content-addressed data object; then, once every earlier queued version of the
// same checkpoint is committed, the manifest is created, which commits the version.
//
// A queued version's slot is not reused until its upload is over: if retention drops
// the version meanwhile, publish asks remote.hold, which keeps the slot and frees it
// when the upload finishes (releaseHeld). Saves wait only when the bytes queued would
// go past MaxPending (remote.admit).
//
// Transient store errors are retried with backoff, for as long as it takes. A
// permanent one ends that version's upload and is kept until the next Save, SaveAll,
// Flush or Close returns it.

const (
	uploadWorkers = 4
	// janitorEvery is the least time between two retention passes in the background
	// (Flush runs one each time).
	janitorEvery = time.Second
)

// errAbandoned ends the upload of a version that a rewind made obsolete.
var errAbandoned = errors.New("ckp: upload abandoned")

type itemKind uint8

const (
	itemUpload      itemKind = iota
	itemDeleteAbove          // delete this rank's committed versions of seg above ver
)

// upItem is one queued unit of work: the upload of a version, or a rewind's deletion.
type upItem struct {
	kind    itemKind
	seq     uint64
	id      uint32 // checkpoint id in the local file
	name    string
	seg     string
	ver     uint64
	off     int64 // payload offset in the data file
	length  int64
	hash    uint64
	time    int64
	txn     uint64
	txnSize uint32
	members uint32 // versions of the transaction with this number that are uploaded
	key     string
	prev    *upItem       // the previous queued item of the same checkpoint, or nil
	done    chan struct{} // closed when the item is finished

	table    []byte        // the block table, copied out of the slot before the upload
	verified []atomic.Bool // blocks checked against the table (shared by retries)

	// A version stored by blocks (remote_blocks.go): what it sends is decided at
	// upload time against its base in the store.
	blocks  bool
	shift   uint8
	floor   uint64      // the version its local chain starts from (pinned meanwhile)
	extents []extentRef // its manifest's extents
	keys    []string    // the data objects they name (in use until it is finished)
	pend    int64       // bytes it counts against MaxPending

	// Under remote.mu.
	abandoned   bool
	sent        bool   // the bytes are uploaded (or never will be): the slot is not ours
	dropped     bool   // retention dropped the version: its slot is held (slot) for us
	slot        extent // the held slot
	dropDurable bool   // the drop must be durable before the slot is reused...
	dropEnd     int64  // ...namely the index position after the dropping transaction
	dropGen     uint64 // in this index generation
}

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

// remote is a File's remote tier.
type remote struct {
	f   *File
	cfg remoteCfg
	st  store.Store

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	kick   chan struct{} // wakes the janitor

	mu       sync.Mutex
	changed  chan struct{} // closed (and replaced) whenever something changes
	queue    []*upItem     // items not started yet, oldest first
	open     map[uint64]*upItem
	seq      uint64
	pending  int64                 // bytes of unfinished uploads
	last     map[uint32]*upItem    // the newest unfinished item of each checkpoint id
	bySlot   map[int64]*upItem     // unfinished uploads by payload offset
	segs     map[uint32]string     // key segments of local checkpoint ids
	err      error                 // a permanent failure not reported yet
	errMore  int                   // further failures since err (reported with it)
	stopping bool                  // Close has begun: nothing more is queued
	ckpts    map[string]*storeCkpt // this rank's committed versions, by segment
	refs     map[string]int        // data keys named by committed versions whose keys are known
	inUse    map[string]int        // data keys of unfinished uploads
	lastMan  map[string]*manifest  // the newest blocks manifest committed per segment
	deleting map[string]chan struct{}
	gcDone   bool // orphaned data objects were looked for once

	retainMu sync.Mutex   // one retention pass at a time
	lastPass atomic.Int64 // when the last retention pass began, Unix ns

	readMu   sync.RWMutex // readers of the data mapping hold it; stop takes it
	unmapped bool
}

func newRemote(f *File, cfg remoteCfg) *remote {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &remote{
		f: f, cfg: cfg, st: cfg.st, ctx: ctx, cancel: cancel,
		kick:     make(chan struct{}, 1),
		changed:  make(chan struct{}),
		open:     make(map[uint64]*upItem),
		last:     make(map[uint32]*upItem),
		bySlot:   make(map[int64]*upItem),
		segs:     make(map[uint32]string),
		ckpts:    make(map[string]*storeCkpt),
		refs:     make(map[string]int),
		inUse:    make(map[string]int),
		lastMan:  make(map[string]*manifest),
		deleting: make(map[string]chan struct{}),
	}
}

// start starts the workers and the janitor.
func (rm *remote) start() {
	for range uploadWorkers {
		rm.wg.Add(1)
		go rm.worker()
	}
	rm.wg.Add(1)
	go rm.janitor()
	rm.poke()
}

// signal wakes everyone waiting for a change. Caller holds rm.mu.
func (rm *remote) signal() {
	close(rm.changed)
	rm.changed = make(chan struct{})
}

// poke wakes the janitor.
func (rm *remote) poke() {
	select {
	case rm.kick <- struct{}{}:
	default:
	}
}

// seg returns the key segment of a local checkpoint. Caller holds rm.mu.
func (rm *remote) seg(id uint32, name string) string {
	s, ok := rm.segs[id]
	if !ok {
		s = nameSegment(name)
		rm.segs[id] = s
	}
	return s
}

// ckpt returns this rank's store state of seg, creating it. Caller holds rm.mu.
func (rm *remote) ckpt(seg, name string) *storeCkpt {
	c := rm.ckpts[seg]
	if c == nil {
		c = &storeCkpt{seg: seg}
		rm.ckpts[seg] = c
	}
	if c.name == "" {
		c.name = name
	}
	return c
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

// add records a committed version (replacing one of the same number).
func (rm *remote) add(c *storeCkpt, v storeVer) {
	i := sort.Search(len(c.vers), func(i int) bool { return c.vers[i].num >= v.num })
	if i < len(c.vers) && c.vers[i].num == v.num {
		rm.unref(c.vers[i].keys)
		c.vers[i] = v
	} else {
		c.vers = append(c.vers, storeVer{})
		copy(c.vers[i+1:], c.vers[i:])
		c.vers[i] = v
	}
	for _, k := range v.keys {
		rm.refs[k]++
	}
}

func (rm *remote) unref(keys []string) {
	for _, k := range keys {
		if rm.refs[k]--; rm.refs[k] <= 0 {
			delete(rm.refs, k)
		}
	}
}

// admit is called by a save before it allocates anything: it returns a permanent
// upload failure not reported yet (the save is then not made), and otherwise waits
// while the bytes this save will queue would take the pending bytes past MaxPending.
// The caller holds every c.mu, so the versions the save will get are known.
func (rm *remote) admit(cs []*Checkpoint) error {
	if rm == nil {
		return nil
	}
	var n int64
	for _, c := range cs {
		if rm.cfg.selected(c.st.next) {
			n += int64(len(c.region))
		}
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	var deadline <-chan time.Time
	for {
		if err := rm.takeErr(); err != nil {
			return err
		}
		if n == 0 || rm.pending == 0 || rm.pending+n <= rm.cfg.maxPending || rm.stopping {
			return nil
		}
		if deadline == nil {
			t := time.NewTimer(rm.cfg.timeout)
			defer t.Stop()
			deadline = t.C
		}
		ch := rm.changed
		rm.mu.Unlock()
		select {
		case <-ch:
			rm.mu.Lock()
		case <-deadline:
			rm.mu.Lock()
			return fmt.Errorf("%w: %s: %d bytes have waited for upload for %v (MaxPending %d): the store is unreachable or too slow; the save was not made",
				ErrRemote, rm.st, rm.pending, rm.cfg.timeout, rm.cfg.maxPending)
		}
	}
}

// published queues the uploads of a transaction just published. The caller (publish)
// holds f.mu; the versions are in the index and their slots are in c.slot.
func (rm *remote) published(cs []*Checkpoint, txn uint64, now int64) {
	if rm == nil {
		return
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.stopping {
		return
	}
	queued := false
	for _, c := range cs {
		v := c.slot.ver
		if !rm.cfg.selected(v) {
			continue
		}
		members := uint32(0) // a SaveAll's versions usually share their number
		for _, d := range cs {
			if d.slot.ver == v {
				members++
			}
		}
		n := int64(len(c.region))
		it := &upItem{
			kind: itemUpload, id: c.st.id, name: c.name, seg: rm.seg(c.st.id, c.name), ver: v,
			off: c.slot.off, length: n, hash: c.slot.hash, time: now, txn: txn, txnSize: uint32(len(cs)),
			members: members, key: dataKey(rm.cfg.rank, c.slot.hash, n), pend: n,
		}
		if c.slot.blocks {
			it.key = "" // decided at upload time
			rm.publishedBlocks(it, c)
		}
		rm.enqueue(it)
		queued = true
	}
	if queued {
		rm.signal()
	}
}

// enqueue adds an item to the queue. Caller holds rm.mu (and signals).
func (rm *remote) enqueue(it *upItem) {
	rm.seq++
	it.seq = rm.seq
	it.done = make(chan struct{})
	it.prev = rm.last[it.id]
	rm.last[it.id] = it
	rm.open[it.seq] = it
	if it.kind == itemUpload {
		rm.pending += it.pend
		if !it.blocks { // a blocks version's slots are pinned by its checkpoint's upFloor
			rm.bySlot[it.off] = it
			rm.inUse[it.key]++
		}
	}
	rm.queue = append(rm.queue, it)
}

// hold is asked by publish (under f.mu) before it frees the slot of a version that
// retention dropped: if the version is still queued or uploading, the slot is kept
// for the upload and hold returns true; releaseHeld frees it afterwards, as publish
// would have (at once, or once the drop is durable: durable, end, gen).
func (rm *remote) hold(d version, durable bool, end int64, gen uint64) bool {
	if rm == nil {
		return false
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	it := rm.bySlot[d.off]
	if it == nil || it.ver != d.num || it.dropped {
		return false
	}
	it.dropped, it.slot, it.dropDurable, it.dropEnd, it.dropGen = true, d.slot(), durable, end, gen
	return true
}

// releaseHeld frees the slot an upload held.
func (rm *remote) releaseHeld(it *upItem) {
	f := rm.f
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.pf.wake() // the next saves may reuse the slot: plan again
	switch {
	case f.closed.Load() && rm.unmapped:
	case it.dropDurable && it.dropGen == f.log.gen:
		f.alloc.freeLater(it.slot, it.dropEnd)
		f.releaseDurable()
	default:
		// Never durable, or the index was rewritten since (a rewritten index is
		// durable and no longer lists the version).
		f.alloc.free(it.slot)
	}
}

func (rm *remote) worker() {
	defer rm.wg.Done()
	for {
		it := rm.take()
		if it == nil {
			return
		}
		rm.finish(it, rm.process(it))
	}
}

// take returns the next queued item, or nil when the remote tier stops.
func (rm *remote) take() *upItem {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for len(rm.queue) == 0 {
		if rm.ctx.Err() != nil {
			return nil
		}
		ch := rm.changed
		rm.mu.Unlock()
		select {
		case <-ch:
		case <-rm.ctx.Done():
		}
		rm.mu.Lock()
	}
	it := rm.queue[0]
	rm.queue[0] = nil
	rm.queue = rm.queue[1:]
	return it
}

func (rm *remote) process(it *upItem) error {
	if rm.isAbandoned(it) {
		return errAbandoned
	}
	if it.kind == itemUpload && !it.blocks {
		err := rm.uploadData(it)
		rm.sent(it) // the slot's bytes are no longer needed
		if err != nil {
			return err
		}
	}
	if it.prev != nil {
		select {
		case <-it.prev.done:
		case <-rm.ctx.Done():
			return context.Cause(rm.ctx)
		}
	}
	if rm.isAbandoned(it) {
		return errAbandoned
	}
	if it.kind == itemDeleteAbove {
		return rm.deleteAbove(rm.ctx, it.seg, it.ver)
	}
	if it.blocks {
		// What it sends depends on the base committed just before it.
		err := rm.uploadBlocks(it)
		rm.sent(it) // its chain's bytes are no longer needed
		if err != nil {
			return err
		}
		if rm.isAbandoned(it) {
			return errAbandoned
		}
	}
	return rm.commit(it)
}

func (rm *remote) isAbandoned(it *upItem) bool {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return it.abandoned
}

// finish ends an item: it frees what the item held and keeps a permanent failure for
// the next call that reports one.
func (rm *remote) finish(it *upItem, err error) {
	rm.mu.Lock()
	delete(rm.open, it.seq)
	if rm.last[it.id] == it {
		delete(rm.last, it.id)
	}
	if it.kind == itemUpload {
		keys := it.keys
		if !it.blocks {
			keys = []string{it.key}
		}
		for _, k := range keys {
			if rm.inUse[k]--; rm.inUse[k] <= 0 {
				delete(rm.inUse, k)
			}
		}
	}
	if err != nil && !it.abandoned && !errors.Is(err, errAbandoned) && rm.ctx.Err() == nil {
		what := "delete versions above %d of %q"
		if it.kind == itemUpload {
			what = "upload version %d of %q"
		}
		if rm.err == nil {
			rm.err = remoteErr(rm.st, err, what, it.ver, it.name)
		} else {
			rm.errMore++
		}
	}
	close(it.done)
	rm.signal()
	rm.mu.Unlock()
	if it.kind == itemUpload {
		rm.sent(it)
	}
}

// sent ends an upload's claim on its slot, once its bytes are in the store (or never
// will be): the slot is freed if retention dropped the version meanwhile, and its
// bytes no longer count against MaxPending. It may be called twice.
func (rm *remote) sent(it *upItem) {
	rm.mu.Lock()
	if it.sent {
		rm.mu.Unlock()
		return
	}
	it.sent = true
	rm.pending -= it.pend
	if rm.bySlot[it.off] == it {
		delete(rm.bySlot, it.off)
	}
	held := it.dropped
	rm.signal()
	rm.mu.Unlock()
	if held {
		rm.releaseHeld(it)
	}
	if it.blocks {
		rm.unpin(it)
	}
}

// uploadData creates the version's data object, unless a committed version already
// names it.
func (rm *remote) uploadData(it *upItem) error {
	if committed, err := rm.needObject(it.key); committed || err != nil {
		return err
	}
	if err := rm.readTable(it); err != nil {
		return err
	}
	return rm.createFrom(it.key, it.length, func() *mapReader { return rm.slotReader(it) })
}

// needObject is called before creating object key (content-addressed): it reports
// whether a committed version names it already (nothing to send), and waits while a
// retention pass is deleting an object of the same bytes.
func (rm *remote) needObject(key string) (committed bool, err error) {
	for {
		rm.mu.Lock()
		if rm.refs[key] > 0 {
			rm.mu.Unlock()
			return true, nil
		}
		ch := rm.deleting[key]
		rm.mu.Unlock()
		if ch == nil {
			return false, nil
		}
		select {
		case <-ch:
		case <-rm.ctx.Done():
			return false, context.Cause(rm.ctx)
		}
	}
}

// readTable copies the version's block table out of its slot and checks it against
// the version's hash.
func (rm *remote) readTable(it *upItem) (err error) {
	ts := int64(crc.TableSize(it.length))
	it.verified = make([]atomic.Bool, crc.Blocks(it.length))
	if ts == 0 {
		return nil
	}
	rm.readMu.RLock()
	defer rm.readMu.RUnlock()
	if rm.unmapped {
		return context.Cause(rm.ctx)
	}
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data := rm.f.data.Bytes()
	t0 := it.off + pad8(it.length) + trailerFixed
	if t0+ts > int64(len(data)) {
		return errf(ErrCorrupt, "version %d of %q lies beyond the end of the data file", it.ver, it.name)
	}
	it.table = bytes.Clone(data[t0 : t0+ts])
	if crc.Combine(it.table) != it.hash {
		if rm.isAbandoned(it) {
			return errAbandoned
		}
		return errf(ErrCorrupt, "version %d of %q: block table does not match its hash; not uploaded", it.ver, it.name)
	}
	return nil
}

// mapReader reads an upload's object out of the data mapping for the store (Read,
// ReadAt and Seek, so that an S3 store can send parts in parallel and again on a
// retry). copyOut copies the object's bytes from off into p, checking each block
// against its hash the first time it is read: a block that does not match fails the
// read, and so the upload, before the object can exist. While a large save runs a read
// waits, so that the save has the cores.
type mapReader struct {
	rm      *remote
	it      *upItem
	size    int64 // the object's bytes
	pos     int64
	copyOut func(p []byte, off int64, data []byte) (int, error) // under rm.readMu, data the mapping

	mu      sync.Mutex
	err     error
	checked []bool // segment readers: the segments checked so far
}

// slotReader reads a queued version's payload: the object is the whole payload, checked
// by 1 MiB block.
func (rm *remote) slotReader(it *upItem) *mapReader {
	r := &mapReader{rm: rm, it: it, size: it.length}
	r.copyOut = r.copySlot
	return r
}

// failure returns the error that failed a read, if any.
func (r *mapReader) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *mapReader) fail(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	return err
}

// Read reads from the current position.
func (r *mapReader) Read(p []byte) (int, error) {
	n, err := r.ReadAt(p, r.pos)
	r.pos += int64(n)
	return n, err
}

// Seek moves the position.
func (r *mapReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.size
	default:
		return 0, errors.New("mapReader: bad whence")
	}
	if off < 0 {
		return 0, errors.New("mapReader: negative position")
	}
	r.pos = off
	return off, nil
}

// ReadAt copies object bytes from off into p.
func (r *mapReader) ReadAt(p []byte, off int64) (n int, err error) {
	rm := r.rm
	if off >= r.size {
		return 0, io.EOF
	}
	rm.readMu.RLock()
	defer rm.readMu.RUnlock()
	if rm.unmapped {
		return 0, r.fail(context.Cause(rm.ctx))
	}
	rm.yieldToSaves()
	defer func() {
		if rec := recover(); rec != nil {
			err = r.fail(faultError(rec))
			n = 0
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	n, err = r.copyOut(p, off, rm.f.data.Bytes())
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

// beyondEnd is the error for a version whose bytes lie past the end of the data file.
func (r *mapReader) beyondEnd() error {
	return r.fail(errf(ErrCorrupt, "version %d of %q lies beyond the end of the data file", r.it.ver, r.it.name))
}

// mismatch is the error for block b that does not match its hash.
func (r *mapReader) mismatch(b int64) error {
	if r.rm.isAbandoned(r.it) {
		return r.fail(errAbandoned)
	}
	return r.fail(errf(ErrCorrupt, "version %d of %q: block %d does not match its hash in the local file; not uploaded", r.it.ver, r.it.name, b))
}

// copySlot is copyOut for a whole payload.
func (r *mapReader) copySlot(p []byte, off int64, data []byte) (int, error) {
	it := r.it
	if it.off+it.length > int64(len(data)) {
		return 0, r.beyondEnd()
	}
	payload := data[it.off : it.off+it.length]
	end := min(off+int64(len(p)), it.length)
	for b := off >> crc.BlockShift; b <= (end-1)>>crc.BlockShift; b++ {
		if it.verified[b].Load() {
			continue
		}
		lo, hi := b<<crc.BlockShift, min((b+1)<<crc.BlockShift, it.length)
		var ok bool
		if it.table == nil {
			ok = xxhash.Sum64(payload) == it.hash
		} else {
			ok = crc.Block(payload[lo:hi]) == binary.LittleEndian.Uint64(it.table[8*b:])
		}
		if !ok {
			return 0, r.mismatch(b)
		}
		it.verified[b].Store(true)
	}
	return copy(p, payload[off:end]), nil
}

// createFrom creates object key from r, retrying transient errors. An object that
// already exists is the same bytes (keys are content-addressed): an earlier attempt.
func (rm *remote) createFrom(key string, size int64, newReader func() *mapReader) error {
	return retry(rm.ctx, size, func(ctx context.Context) error {
		r := newReader()
		err := rm.st.Create(ctx, key, r, size)
		if rerr := r.failure(); rerr != nil {
			return rerr // the local copy is damaged (or the upload was abandoned)
		}
		if errors.Is(err, store.ErrExists) {
			return nil
		}
		return err
	})
}

// yieldToSaves waits while a large save runs (it uses every core), unless the remote
// tier is stopping.
func (rm *remote) yieldToSaves() {
	pf := rm.f.pf
	if pf == nil {
		return
	}
	for pf.active.Load() > 0 && rm.ctx.Err() == nil {
		time.Sleep(100 * time.Microsecond)
	}
}

// commit creates the version's manifest: from then on the version is committed.
func (rm *remote) commit(it *upItem) error {
	m := manifest{
		Name: it.name, Version: it.ver, Length: it.length, Hash: it.hash, Time: it.time,
		Txn: it.txn, TxnSize: it.txnSize, Members: it.members, Rank: rm.cfg.rank, Ranks: rm.cfg.ranks,
		Session: rm.f.session, Table: it.table,
		Extents: []extentRef{{Off: 0, Len: it.length, ObjOff: 0, Hash: it.hash, Key: it.key}},
	}
	keys := []string{it.key}
	if it.blocks {
		m.Shift, m.Extents, keys = it.shift, it.extents, it.keys
	}
	body := m.encode()
	key := manifestKey(rm.cfg.rank, it.seg, it.ver)
	err := retry(rm.ctx, int64(len(body)), func(ctx context.Context) error {
		err := rm.st.Create(ctx, key, bytes.NewReader(body), int64(len(body)))
		if !errors.Is(err, store.ErrExists) {
			return err
		}
		old, gerr := getAll(ctx, rm.st, key)
		if gerr == nil && bytes.Equal(old, body) {
			return nil // an earlier attempt of ours
		}
		// A version of the same number from an abandoned past (a rewind, or a writer
		// that died before its successor deleted what it left) is replaced whole.
		return rm.st.Put(ctx, key, bytes.NewReader(body), int64(len(body)))
	})
	if err != nil {
		return err
	}
	rm.mu.Lock()
	rm.add(rm.ckpt(it.seg, it.name), storeVer{num: it.ver, keys: keys, members: it.members})
	if it.blocks {
		rm.lastMan[it.seg] = &m
	}
	rm.mu.Unlock()
	rm.poke()
	return nil
}

// flush waits until every item queued before the call is finished, then runs a
// retention pass. It returns a permanent failure not reported yet.
func (rm *remote) flush(ctx context.Context) error {
	rm.mu.Lock()
	target := rm.seq
	for {
		busy := false
		for s := range rm.open {
			if s <= target {
				busy = true
				break
			}
		}
		if !busy {
			break
		}
		ch := rm.changed
		rm.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			rm.mu.Lock()
			n := 0
			for s := range rm.open {
				if s <= target {
					n++
				}
			}
			rm.mu.Unlock()
			return fmt.Errorf("%w: %s: %d upload(s) not finished: %w", ErrRemote, rm.st, n, context.Cause(ctx))
		}
		rm.mu.Lock()
	}
	err := rm.takeErr()
	rm.mu.Unlock()
	if err != nil {
		return err
	}
	if err := rm.retain(ctx); err != nil {
		return remoteErr(rm.st, err, "retention")
	}
	return nil
}

// stop ends the remote tier at Close: it waits (up to the timeout) for the queued
// uploads, stops the goroutines and makes sure nothing reads the mapping any more.
func (rm *remote) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), rm.cfg.timeout)
	err := rm.flush(ctx)
	cancel()
	rm.mu.Lock()
	rm.stopping = true
	rm.signal()
	rm.mu.Unlock()
	rm.cancel(errors.New("the File was closed"))
	rm.wg.Wait()
	rm.readMu.Lock()
	rm.unmapped = true
	rm.readMu.Unlock()
	rm.mu.Lock()
	if rerr := rm.takeErr(); err == nil {
		err = rerr
	}
	rm.mu.Unlock()
	return err
}

// takeErr returns the permanent failures not reported yet (the first, with how many
// more there were) and forgets them. Caller holds rm.mu.
func (rm *remote) takeErr() error {
	err, more := rm.err, rm.errMore
	rm.err, rm.errMore = nil, 0
	if err != nil && more > 0 {
		err = fmt.Errorf("%w (and %d more failure(s) since)", err, more)
	}
	return err
}

// janitor runs retention passes in the background after commits, at most one per
// janitorEvery.
func (rm *remote) janitor() {
	defer rm.wg.Done()
	for {
		select {
		case <-rm.ctx.Done():
			return
		case <-rm.kick:
		}
		if d := time.Until(time.Unix(0, rm.lastPass.Load()).Add(janitorEvery)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-rm.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		// A failure is tried again at the next pass; Flush reports them.
		_ = rm.retain(rm.ctx)
	}
}
