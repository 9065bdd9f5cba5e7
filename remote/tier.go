package remote

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// The uploader. The engine publishes a save and hands the tier the versions the Every
// rule selects, pinned (Published, called with the File's lock held). A bounded pool of
// goroutines uploads them: each version's bytes are read out of the data file (Host.ReadAt),
// each block checked against its hash before it is handed to the store, into a
// content-addressed data object; then, once every earlier queued version of the same
// checkpoint is committed, the manifest is created, which commits the version. Once its
// bytes are in the store (or never will be), the tier gives the pin back (Host.Unpin).
// Saves wait only when the bytes queued would go past MaxPending (Admit).
//
// Transient store errors are retried with backoff, for as long as it takes. A permanent
// one ends that version's upload and is kept until the next Save, SaveAll, Flush or Close
// returns it.

const (
	uploadWorkers = 4
	// janitorEvery is the least time between two retention passes in the background
	// (Flush runs one each time).
	janitorEvery = time.Second
)

type itemKind uint8

const (
	itemUpload      itemKind = iota
	itemDeleteAbove          // delete this rank's committed versions of seg above num
)

// item is one queued unit of work: the upload of a version, or a rewind's deletion.
type item struct {
	kind    itemKind
	seq     uint64
	v       Sealed // an upload: the version, pinned
	seg     string
	num     uint64 // the version uploaded, or the rewind's newest kept version
	members uint32 // versions of the transaction with this number that are uploaded
	prev    *item  // the previous queued item of the same checkpoint, or nil
	done    chan struct{}

	// What the upload sends and its manifest names, decided at upload time.
	key      string        // a version stored whole: its data object
	table    []byte        // the manifest's block table
	extents  []extentRef   // the manifest's extents (a version stored by blocks)
	keys     []string      // the data objects they name (in use until it is finished)
	verified []atomic.Bool // segments checked against their hashes (shared by retries)

	// Under t.mu.
	abandoned bool
	sent      bool // the bytes are uploaded (or never will be): the pin is given back
}

// Tier is the remote tier of one File: its uploader, its catalog of what this rank
// committed, retention in the store, and the job rules.
type Tier struct {
	h       Host
	cfg     Settings
	st      store.Store
	session uint64

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	kick   chan struct{} // wakes the janitor

	mu       sync.Mutex
	changed  chan struct{} // closed (and replaced) whenever something changes
	queue    []*item       // items not started yet, oldest first
	open     map[uint64]*item
	seq      uint64
	pending  int64                 // bytes of unfinished uploads
	last     map[string]*item      // the newest unfinished item of each checkpoint
	err      error                 // a permanent failure not reported yet
	errMore  int                   // further failures since err (reported with it)
	stopping bool                  // Close has begun: nothing more is queued
	ckpts    map[string]*storeCkpt // this rank's committed versions, by segment
	refs     map[string]int        // data keys named by committed versions whose keys are known
	inUse    map[string]int        // data keys of unfinished uploads
	lastMan  map[string]*manifest  // the newest blocks manifest committed per segment
	deleting map[string]chan struct{}
	gcDone   bool          // orphaned data objects were looked for once
	skipped  []StoreDamage // committed versions Open could not bring in (damaged)

	retainMu sync.Mutex   // one retention pass at a time
	lastPass atomic.Int64 // when the last retention pass began, Unix ns
}

func newTier(s Settings, h Host) *Tier {
	ctx, cancel := context.WithCancelCause(context.Background())
	t := &Tier{
		h: h, cfg: s, st: s.st, ctx: ctx, cancel: cancel,
		kick:     make(chan struct{}, 1),
		changed:  make(chan struct{}),
		open:     make(map[uint64]*item),
		last:     make(map[string]*item),
		ckpts:    make(map[string]*storeCkpt),
		refs:     make(map[string]int),
		inUse:    make(map[string]int),
		lastMan:  make(map[string]*manifest),
		deleting: make(map[string]chan struct{}),
	}
	if h != nil {
		t.session = h.Session()
	}
	return t
}

// Open starts the remote tier of a writer that the engine has just opened: it brings
// the local file in line with the store (it may call h.Import; see docs/REMOTE.md,
// "Restarting") and starts the uploader. It fails with ErrRemote when the store cannot
// be asked what it holds within the timeout.
func Open(ctx context.Context, s Settings, h Host) (*Tier, error) {
	t := newTier(s, h)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := t.reconcile(ctx); err != nil {
		t.cancel(err)
		return nil, err
	}
	for range uploadWorkers {
		t.wg.Add(1)
		go t.worker()
	}
	t.wg.Add(1)
	go t.janitor()
	t.poke()
	return t, nil
}

// Settings returns the tier's settings.
func (t *Tier) Settings() Settings { return t.cfg }

// signal wakes everyone waiting for a change. Caller holds t.mu.
func (t *Tier) signal() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// poke wakes the janitor.
func (t *Tier) poke() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Admit is called by a save before it allocates anything, with the bytes it will queue
// for upload: it returns a permanent upload failure not reported yet (the save is then
// not made), and otherwise waits while those bytes would take the pending bytes past
// MaxPending, up to the timeout (then ErrRemote: the save is not made).
func (t *Tier) Admit(n int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var deadline <-chan time.Time
	for {
		if err := t.takeErr(); err != nil {
			return err
		}
		if n == 0 || t.pending == 0 || t.pending+n <= t.cfg.maxPending || t.stopping {
			return nil
		}
		if deadline == nil {
			tm := time.NewTimer(t.cfg.timeout)
			defer tm.Stop()
			deadline = tm.C
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ch:
			t.mu.Lock()
		case <-deadline:
			t.mu.Lock()
			return fmt.Errorf("%w: %s: %d bytes have waited for upload for %v (MaxPending %d): the store is unreachable or too slow; the save was not made",
				base.ErrRemote, t.st, t.pending, t.cfg.timeout, t.cfg.maxPending)
		}
	}
}

// Published queues the uploads of a transaction just published in the local file: vs
// are its versions that the Every rule selects, each pinned. The engine calls it with
// its lock held: it must not call the Host. It reports false when the tier is
// stopping and takes nothing: the caller then gives the pins back itself.
func (t *Tier) Published(vs []Sealed) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return false
	}
	for _, v := range vs {
		members := uint32(0) // a SaveAll's versions usually share their number
		for _, w := range vs {
			if w.Num == v.Num {
				members++
			}
		}
		t.enqueueUpload(v, members)
	}
	if len(vs) > 0 {
		t.signal()
	}
	return true
}

// enqueueUpload queues the upload of v. Caller holds t.mu (and signals).
func (t *Tier) enqueueUpload(v Sealed, members uint32) {
	it := &item{kind: itemUpload, v: v, seg: nameSegment(v.Name), num: v.Num, members: members}
	if v.Shift == 0 {
		it.key = dataKey(t.cfg.rank, v.Hash, v.Length)
		t.inUse[it.key]++
	}
	t.pending += v.Payload
	t.enqueue(it)
}

// enqueue adds an item to the queue. Caller holds t.mu (and signals).
func (t *Tier) enqueue(it *item) {
	t.seq++
	it.seq = t.seq
	it.done = make(chan struct{})
	it.prev = t.last[it.seg]
	t.last[it.seg] = it
	t.open[it.seq] = it
	t.queue = append(t.queue, it)
}

func (t *Tier) worker() {
	defer t.wg.Done()
	for {
		it := t.take()
		if it == nil {
			return
		}
		t.finish(it, t.process(it))
	}
}

// take returns the next queued item, or nil when the tier stops.
func (t *Tier) take() *item {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.queue) == 0 {
		if t.ctx.Err() != nil {
			return nil
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ch:
		case <-t.ctx.Done():
		}
		t.mu.Lock()
	}
	it := t.queue[0]
	t.queue[0] = nil
	t.queue = t.queue[1:]
	return it
}

func (t *Tier) process(it *item) error {
	if t.isAbandoned(it) {
		return errAbandoned
	}
	if it.kind == itemUpload && it.v.Shift == 0 {
		err := t.uploadWhole(it)
		t.sent(it) // the slot's bytes are no longer needed
		if err != nil {
			return err
		}
	}
	if it.prev != nil {
		select {
		case <-it.prev.done:
		case <-t.ctx.Done():
			return context.Cause(t.ctx)
		}
	}
	if t.isAbandoned(it) {
		return errAbandoned
	}
	if it.kind == itemDeleteAbove {
		return t.deleteAbove(t.ctx, it.seg, it.num)
	}
	if it.v.Shift > 0 {
		// What it sends depends on the base committed just before it.
		err := t.uploadBlocks(it)
		t.sent(it) // its chain's bytes are no longer needed
		if err != nil {
			return err
		}
		if t.isAbandoned(it) {
			return errAbandoned
		}
	}
	return t.commit(it)
}

func (t *Tier) isAbandoned(it *item) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return it.abandoned
}

// finish ends an item: it frees what the item held and keeps a permanent failure for
// the next call that reports one.
func (t *Tier) finish(it *item, err error) {
	t.mu.Lock()
	delete(t.open, it.seq)
	if t.last[it.seg] == it {
		delete(t.last, it.seg)
	}
	if it.kind == itemUpload {
		keys := it.keys
		if it.v.Shift == 0 {
			keys = []string{it.key}
		}
		for _, k := range keys {
			if t.inUse[k]--; t.inUse[k] <= 0 {
				delete(t.inUse, k)
			}
		}
	}
	if err != nil && !it.abandoned && !errors.Is(err, errAbandoned) && t.ctx.Err() == nil {
		what := "delete versions above %d of %q"
		if it.kind == itemUpload {
			what = "upload version %d of %q"
		}
		if t.err == nil {
			t.err = remoteErr(t.st, err, what, it.num, it.v.Name)
		} else {
			t.errMore++
		}
	}
	close(it.done)
	t.signal()
	t.mu.Unlock()
	if it.kind == itemUpload {
		t.sent(it)
	}
}

// sent ends an upload's claim on its version's bytes, once they are in the store (or
// never will be): the pin goes back to the engine and the bytes no longer count against
// MaxPending. It may be called twice.
func (t *Tier) sent(it *item) {
	t.mu.Lock()
	if it.sent {
		t.mu.Unlock()
		return
	}
	it.sent = true
	t.pending -= it.v.Payload
	t.signal()
	t.mu.Unlock()
	t.h.Unpin(it.v.Pin)
}

// needObject is called before creating object key (content-addressed): it reports
// whether a committed version names it already (nothing to send), and waits while a
// retention pass is deleting an object of the same bytes.
func (t *Tier) needObject(key string) (committed bool, err error) {
	for {
		t.mu.Lock()
		if t.refs[key] > 0 {
			t.mu.Unlock()
			return true, nil
		}
		ch := t.deleting[key]
		t.mu.Unlock()
		if ch == nil {
			return false, nil
		}
		select {
		case <-ch:
		case <-t.ctx.Done():
			return false, context.Cause(t.ctx)
		}
	}
}

// commit creates the version's manifest: from then on the version is committed.
func (t *Tier) commit(it *item) error {
	v := &it.v
	m := manifest{
		Name: v.Name, Version: v.Num, Length: v.Length, Hash: v.Hash, Time: v.Time,
		Txn: v.Txn, TxnSize: v.TxnSize, Members: it.members, Rank: t.cfg.rank, Ranks: t.cfg.ranks,
		Session: t.session, Table: it.table, Shift: v.Shift, Extents: it.extents,
	}
	keys := it.keys
	if v.Shift == 0 {
		m.Extents = []extentRef{{Off: 0, Len: v.Length, ObjOff: 0, Hash: v.Hash, Key: it.key}}
		keys = []string{it.key}
	}
	body := m.encode()
	key := manifestKey(t.cfg.rank, it.seg, v.Num)
	err := retry(t.ctx, int64(len(body)), func(ctx context.Context) error {
		return createOrReplace(ctx, t.st, key, body)
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.add(t.ckpt(it.seg, v.Name), storeVer{num: v.Num, keys: keys, members: it.members})
	if v.Shift > 0 {
		t.lastMan[it.seg] = &m
	}
	t.mu.Unlock()
	t.poke()
	return nil
}

// Flush waits until every item queued before the call is finished, then runs a
// retention pass. It returns a permanent failure not reported yet, or an error wrapping
// ErrRemote and the context's error if ctx ends first (the uploads go on).
func (t *Tier) Flush(ctx context.Context) error {
	t.mu.Lock()
	target := t.seq
	for {
		busy := false
		for s := range t.open {
			if s <= target {
				busy = true
				break
			}
		}
		if !busy {
			break
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			t.mu.Lock()
			n := 0
			for s := range t.open {
				if s <= target {
					n++
				}
			}
			t.mu.Unlock()
			return fmt.Errorf("%w: %s: %d upload(s) not finished: %w", base.ErrRemote, t.st, n, context.Cause(ctx))
		}
		t.mu.Lock()
	}
	err := t.takeErr()
	t.mu.Unlock()
	if err != nil {
		return err
	}
	if err := t.retain(ctx); err != nil {
		return remoteErr(t.st, err, "retention")
	}
	return nil
}

// Close ends the tier when its File closes: it waits (up to the timeout) for the queued
// uploads, stops the goroutines, gives back every pin it still holds, and returns the
// failures not reported yet. The tier reads nothing from the Host afterwards.
func (t *Tier) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.timeout)
	err := t.Flush(ctx)
	cancel()
	t.mu.Lock()
	t.stopping = true
	t.signal()
	t.mu.Unlock()
	t.cancel(errors.New("the File was closed"))
	t.wg.Wait()
	// Items the workers never took still hold their pins.
	t.mu.Lock()
	left := t.queue
	t.queue = nil
	t.mu.Unlock()
	for _, it := range left {
		if it.kind == itemUpload {
			t.sent(it)
		}
	}
	t.mu.Lock()
	if rerr := t.takeErr(); err == nil {
		err = rerr
	}
	t.mu.Unlock()
	return err
}

// takeErr returns the permanent failures not reported yet (the first, with how many
// more there were) and forgets them. Caller holds t.mu.
func (t *Tier) takeErr() error {
	err, more := t.err, t.errMore
	t.err, t.errMore = nil, 0
	if err != nil && more > 0 {
		err = fmt.Errorf("%w (and %d more failure(s) since)", err, more)
	}
	return err
}

// janitor runs retention passes in the background after commits, at most one per
// janitorEvery.
func (t *Tier) janitor() {
	defer t.wg.Done()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-t.kick:
		}
		if d := time.Until(time.Unix(0, t.lastPass.Load()).Add(janitorEvery)); d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-t.ctx.Done():
				tm.Stop()
				return
			case <-tm.C:
			}
		}
		// A failure is tried again at the next pass; Flush reports them.
		_ = t.retain(t.ctx)
	}
}

// Rewound abandons the uploads of versions above nums[i] of the checkpoints called
// names[i] and queues the deletion of this rank's committed versions above them, if
// there are any: the engine rewound its local file there.
func (t *Tier) Rewound(names []string, nums []uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	queued := false
	for i, name := range names {
		seg := nameSegment(name)
		above := false
		for _, it := range t.open {
			if it.seg == seg && it.kind == itemUpload && it.num > nums[i] {
				it.abandoned = true
				above = true
			}
		}
		if sc := t.ckpts[seg]; sc != nil && sc.newest() > nums[i] {
			above = true
		}
		if above {
			t.enqueue(&item{kind: itemDeleteAbove, v: Sealed{Name: name}, seg: seg, num: nums[i]})
			queued = true
		}
	}
	if queued {
		t.signal()
	}
}

// NewestCommitted returns the newest version of the checkpoint called name that this
// rank has committed, 0 when none.
func (t *Tier) NewestCommitted(name string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.ckpts[nameSegment(name)]; c != nil {
		return c.newest()
	}
	return 0
}

// Committed returns the versions of the checkpoint called name that this rank has
// committed, oldest first.
func (t *Tier) Committed(name string) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.ckpts[nameSegment(name)]
	if c == nil {
		return nil
	}
	out := make([]uint64, len(c.vers))
	for i, v := range c.vers {
		out[i] = v.num
	}
	return out
}

// Lookup returns version v of the checkpoint called name as this rank committed it,
// for a restore that must fall back to the store: an error wrapping ErrVersion when
// the store holds none.
func (t *Tier) Lookup(ctx context.Context, name string, v uint64) (Incoming, error) {
	m, err := t.storeManifest(ctx, name, v)
	if err != nil {
		return Incoming{}, err
	}
	return t.incoming(m), nil
}

// incoming describes a committed version as the engine imports it.
func (t *Tier) incoming(m *manifest) Incoming {
	st := t.st
	return Incoming{Name: m.Name, Num: m.Version, Length: m.Length, Hash: m.Hash, Time: m.Time, Shift: m.Shift, Table: m.Table,
		Fill: func(ctx context.Context, dst []byte, prepare func(off, n int64)) error {
			return fetchInto(ctx, st, m, dst, prepare)
		}}
}
