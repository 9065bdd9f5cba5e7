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
	itemUpload itemKind = iota
)

// item is one queued unit of work: the upload of a version.
type item struct {
	kind    itemKind
	seq     uint64
	v       Sealed // an upload: the version, pinned
	seg     string
	num     uint64 // the version uploaded
	members uint32 // versions of the transaction with this number that are uploaded
	prev    *item  // the previous queued item of the same checkpoint, or nil
	done    chan struct{}
	life    uint64 // the life it is committed in, decided when its upload starts

	// What the upload sends and its manifest names, decided at upload time.
	key     string      // a version stored whole: its data object
	table   []byte      // the manifest's block table
	extents []extentRef // the manifest's extents (a version stored by blocks)
	keys    []string    // the data objects they name (in use until it is finished)

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

	jobMu ctxMutex // one step of the job protocol at a time (job.go)
	job   jobState

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
	prepared bool                  // the store was asked to prepare for creates
	ckpts    map[string]*storeCkpt // this rank's committed versions, by segment
	refs     map[string]int        // data keys named by committed versions whose keys are known
	inUse    map[string]int        // data keys of unfinished uploads
	lastMan  map[string]*manifest  // the newest blocks manifest committed per segment, this life
	deleting map[string]chan struct{}
	passes   int // retention passes run

	// The versions this process committed, by point and checkpoint name, and the
	// checkpoints each version number needs to be complete (the registered ones when
	// it was saved); data objects of this life by contents (dedup), manifests read.
	commits    map[point]map[string]commitRef
	required   map[uint64][]string
	requeues   int // moves into the next life that queued versions again (Flush waits for them)
	dedup      map[dedupKey]string
	mcache     map[string]*manifest
	lives      map[uint64]*lifeRec // life records read
	newestSeen uint64              // the newest life this process has seen (newestLife)
	newest     map[string]uint64   // per name, the newest restorable version Open found

	retainMu ctxMutex     // one retention pass at a time
	lastPass atomic.Int64 // when the last retention pass began, Unix ns
}

func newTier(s Settings, h Host) *Tier {
	ctx, cancel := context.WithCancelCause(withBackoff(context.Background(), s.backoff))
	t := &Tier{
		h: h, cfg: s, st: s.st, ctx: ctx, cancel: cancel,
		kick:     make(chan struct{}, 1),
		jobMu:    newCtxMutex(),
		retainMu: newCtxMutex(),
		changed:  make(chan struct{}),
		open:     make(map[uint64]*item),
		last:     make(map[string]*item),
		ckpts:    make(map[string]*storeCkpt),
		refs:     make(map[string]int),
		inUse:    make(map[string]int),
		lastMan:  make(map[string]*manifest),
		deleting: make(map[string]chan struct{}),
		commits:  make(map[point]map[string]commitRef),
		required: make(map[uint64][]string),
		dedup:    make(map[dedupKey]string),
		mcache:   make(map[string]*manifest),
		lives:    make(map[uint64]*lifeRec),
		newest:   make(map[string]uint64),
	}
	t.job.g = t.geom()
	if h != nil {
		t.session = h.Session()
	}
	return t
}

// commitRef is a checkpoint's committed version, as its version record names it.
type commitRef struct {
	manifest string
	hash     uint64
}

// dedupKey names a data object by its contents.
type dedupKey struct {
	hash   uint64
	length int64
}

// Open starts the remote tier of a writer that the engine has just opened: it brings
// the local file in line with the store (it may call h.Import; see docs/REMOTE.md,
// "Restarting") and starts the uploader. It fails with ErrRemote when the store cannot
// be asked what it holds within the timeout.
func Open(ctx context.Context, s Settings, h Host) (*Tier, error) {
	t := newTier(s, h)
	ctx, cancel := context.WithTimeout(t.callerCtx(ctx), s.timeout)
	defer cancel()
	if err := t.reconcile(ctx); err != nil {
		t.cancel(err)
		return nil, err
	}
	if t.cfg.workers > 0 {
		for range t.cfg.workers {
			t.wg.Add(1)
			go t.worker()
		}
		t.wg.Add(1)
		go t.janitor()
		t.poke()
	}
	return t, nil
}

// Settings returns the tier's settings.
func (t *Tier) Settings() Settings { return t.cfg }

// callerCtx is the context of a call from the engine (Open, Flush, Join, JobVersion, a
// restore): its retries wait as Backoff says, like the background's.
func (t *Tier) callerCtx(ctx context.Context) context.Context {
	return withBackoff(ctx, t.cfg.backoff)
}

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
		if t.cfg.workers <= 0 {
			return nil // uploads run in Flush: nothing to wait for
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
// are its versions that the Every rule selects, each pinned; registered names the
// checkpoints registered on the rank (sorted), which a version needs committed to be
// complete on the rank. The engine calls it with its lock held: it must not call the
// Host, nor keep registered past the call. It reports false when the tier is stopping
// and takes nothing: the caller then gives the pins back itself.
func (t *Tier) Published(vs []Sealed, registered []string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return false
	}
	if len(vs) > 0 && !t.prepared {
		// The store's work before its first create (store.Preparer) runs now, beside
		// the save, rather than in the first upload's way.
		t.prepared = true
		if p, ok := t.st.(store.Preparer); ok {
			t.wg.Go(func() { _ = p.Prepare(t.ctx) })
		}
	}
	for _, v := range vs {
		if r := t.required[v.Num]; len(r) != len(registered) || !equalStrings(r, registered) {
			t.required[v.Num] = append([]string(nil), registered...)
		}
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

func equalStrings(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// enqueueUpload queues the upload of v. Caller holds t.mu (and signals).
func (t *Tier) enqueueUpload(v Sealed, members uint32) {
	it := &item{kind: itemUpload, v: v, seg: nameSegment(v.Name), num: v.Num, members: members}
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
		t.process(it)
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

// process works an item and finishes it. Its life and the bytes of a version stored
// whole come first; what follows waits for the checkpoint's previous item, and with
// background workers that wait (then the manifest) runs on a goroutine of its own when
// it would hold the worker, which then takes the next item: a version waiting for its
// turn to commit keeps no other version from being sent. The commits keep their order:
// each still waits for the item queued before it.
func (t *Tier) process(it *item) {
	if err := t.beforePrev(it); err != nil {
		t.finish(it, err)
		return
	}
	if t.cfg.workers > 0 && it.prev != nil && !isDone(it.prev) {
		t.wg.Go(func() {
			select {
			case <-it.prev.done:
			case <-t.ctx.Done():
			}
			t.finish(it, t.afterPrev(it))
		})
		return
	}
	t.finish(it, t.afterPrev(it))
}

// isDone reports whether an item is finished.
func isDone(it *item) bool {
	select {
	case <-it.done:
		return true
	default:
		return false
	}
}

// beforePrev is the part of an item's work that needs no earlier item: the life it is
// committed in, the bytes of a version stored whole.
func (t *Tier) beforePrev(it *item) error {
	if t.isAbandoned(it) {
		return errAbandoned
	}
	life, err := t.uploadLife(t.ctx)
	if err != nil {
		return err
	}
	if t.isAbandoned(it) {
		return errAbandoned // a Join abandoned it while it waited for its life
	}
	it.life = life
	if it.kind == itemUpload && it.v.Shift == 0 {
		err := t.uploadWhole(it)
		t.sent(it) // the slot's bytes are no longer needed
		return err
	}
	return nil
}

// afterPrev is the part of an item's work that waits for the checkpoint's previous
// item: the blocks of a version stored by blocks (what they are depends on the base
// committed before), the manifest.
func (t *Tier) afterPrev(it *item) error {
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
		switch {
		case errors.Is(err, ErrRestart):
			// Reported as it is (once): every later upload fails the same way.
			if t.err == nil {
				t.err = err
			}
		case t.err == nil:
			t.err = remoteErr(t.st, err, "upload version %d of %q", it.num, it.v.Name)
		default:
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

// commit creates the version's manifest in its life: from then on the version is
// committed there. Then, if every checkpoint its number needs is committed at that
// number in this life, the version is complete on the rank (complete).
func (t *Tier) commit(it *item) error {
	v := &it.v
	m := manifest{
		Name: v.Name, Version: v.Num, Length: v.Length, Hash: v.Hash, Time: v.Time,
		Txn: v.Txn, TxnSize: v.TxnSize, Members: it.members, Rank: t.cfg.rank, Ranks: t.cfg.ranks,
		Session: t.session, Life: it.life, Table: it.table, Shift: v.Shift, Extents: it.extents,
	}
	keys := it.keys
	if v.Shift == 0 {
		m.Extents = []extentRef{{Off: 0, Len: v.Length, ObjOff: 0, Hash: v.Hash, Key: it.key}}
		keys = []string{it.key}
	}
	key := manifestKey(t.cfg.rank, it.life, it.seg, v.Num)
	if err := t.createR(t.ctx, key, m.encode()); err != nil {
		if errors.Is(err, errTaken) {
			// One process per rank and life writes its manifests: another one did.
			return base.Errf(base.ErrCorrupt, "%s: %s holds another process's manifest", t.st, key)
		}
		return err
	}
	at := point{it.life, v.Num}
	t.mu.Lock()
	t.add(t.ckpt(it.seg, v.Name), storeVer{life: it.life, num: v.Num, keys: keys})
	t.mcache[key] = &m
	if v.Shift > 0 {
		t.lastMan[it.seg] = &m
	} else {
		t.dedup[dedupKey{v.Hash, v.Length}] = it.key
	}
	if t.commits[at] == nil {
		t.commits[at] = map[string]commitRef{}
	}
	t.commits[at][v.Name] = commitRef{manifest: key, hash: v.Hash}
	done := t.completeOnRank(at)
	t.mu.Unlock()
	t.poke()
	if !done {
		return nil
	}
	t.jobMu.Lock()
	defer t.jobMu.Unlock()
	if t.job.restart != nil {
		return t.job.restart
	}
	return t.complete(t.ctx, at.life, at.v)
}

// completeOnRank reports whether every checkpoint that version at needs is committed at
// that number in its life. Caller holds t.mu.
func (t *Tier) completeOnRank(at point) bool {
	req := t.required[at.v]
	if len(req) == 0 {
		return false
	}
	have := t.commits[at]
	for _, name := range req {
		if _, ok := have[name]; !ok {
			return false
		}
	}
	return true
}

// uploadLife returns the life this process commits in. A process that has not joined
// the job (it did not call RestoreJob) joins it now: a job of one at once (its history
// is its own), a job of several ranks only when the job starts over (the life's base
// is the start); otherwise the rank must restart with RestoreJob (ErrRestart).
func (t *Tier) uploadLife(ctx context.Context) (uint64, error) {
	if err := t.jobMu.lock(ctx); err != nil {
		return 0, err
	}
	defer t.jobMu.Unlock()
	j := &t.job
	if j.restart != nil {
		return 0, j.restart
	}
	if j.life != 0 {
		return j.life, nil
	}
	if j.nonce == 0 {
		j.nonce = newNonce()
	}
	if err := t.join(ctx); err != nil {
		return 0, err
	}
	if t.cfg.ranks > 1 && j.base.v != 0 {
		return 0, t.mustRestart("the job restarts at %v: a rank of a job of several ranks saves only after RestoreJob", j.base)
	}
	return j.life, nil
}

// Flush waits until every item queued before the call is finished (and those a move
// into the next life queued again meanwhile), then runs a retention pass. It returns a
// permanent failure not reported yet, or an error wrapping ErrRemote and the context's
// error if ctx ends first (the uploads go on).
func (t *Tier) Flush(ctx context.Context) error {
	ctx = t.callerCtx(ctx)
	t.mu.Lock()
	target, moves := t.seq, t.requeues
	t.mu.Unlock()
	for {
		if t.cfg.workers <= 0 {
			// No background workers: the queue is worked here, before the wait below
			// (which nothing else would end).
			if err := t.drain(ctx); err != nil {
				return err
			}
		}
		if err := t.await(ctx, target); err != nil {
			return err
		}
		if err := t.recordPending(ctx); err != nil {
			if errors.Is(err, ErrRestart) {
				return err
			}
			return remoteErr(t.st, err, "the job's state")
		}
		if err := t.retain(ctx); err != nil {
			if errors.Is(err, ErrRestart) {
				return err
			}
			return remoteErr(t.st, err, "retention")
		}
		t.mu.Lock()
		again := t.requeues != moves
		target, moves = t.seq, t.requeues
		t.mu.Unlock()
		if !again {
			return nil
		}
	}
}

// await waits until every item up to seq target is finished, and returns a permanent
// failure not reported yet.
func (t *Tier) await(ctx context.Context, target uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		busy := false
		for s := range t.open {
			if s <= target {
				busy = true
				break
			}
		}
		if !busy {
			return t.takeErr()
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
			return fmt.Errorf("%w: %s: %d upload(s) not finished: %w", base.ErrRemote, t.st, n, context.Cause(ctx))
		}
		t.mu.Lock()
	}
}

// drain runs every queued upload on the caller's goroutine (no background workers),
// and returns the first failure.
func (t *Tier) drain(ctx context.Context) error {
	for {
		t.mu.Lock()
		if len(t.queue) == 0 {
			err := t.takeErr()
			t.mu.Unlock()
			return err
		}
		it := t.queue[0]
		t.queue[0] = nil
		t.queue = t.queue[1:]
		t.mu.Unlock()
		t.process(it)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// recordPending writes the version record of a version that was complete on this rank
// before it saw its life start, if the life has started since (Flush, Close).
func (t *Tier) recordPending(ctx context.Context) error {
	if err := t.jobMu.lock(ctx); err != nil {
		return err
	}
	defer t.jobMu.Unlock()
	j := &t.job
	if j.restart != nil {
		return j.restart
	}
	if j.life == 0 || len(j.pending) == 0 {
		return nil
	}
	return t.complete(ctx, j.life, j.pending[len(j.pending)-1])
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
// janitorEvery, and records the versions waiting for the life's start.
func (t *Tier) janitor() {
	defer t.wg.Done()
	poll := time.NewTicker(janitorEvery)
	defer poll.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-poll.C:
			// Versions complete here before every rank had joined are recorded once
			// they all have, though no save comes to do it (a failure: next time).
			_ = t.recordPending(t.ctx)
			continue
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

// Rewound abandons the queued uploads of versions above nums[i] of the checkpoints
// called names[i]: the engine rewound its local file there.
func (t *Tier) Rewound(names []string, nums []uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, name := range names {
		seg := nameSegment(name)
		for _, it := range t.open {
			if it.seg == seg && it.kind == itemUpload && it.num > nums[i] {
				it.abandoned = true
			}
		}
	}
	t.signal()
}

// incoming describes a committed version as the engine imports it.
func (t *Tier) incoming(m *manifest) Incoming {
	st, workers := t.st, t.fetchWorkers()
	return Incoming{Name: m.Name, Num: m.Version, Length: m.Length, Hash: m.Hash, Time: m.Time, Shift: m.Shift, Table: m.Table,
		Fill: func(ctx context.Context, dst []byte, write func(p []byte, off int64) error) error {
			return fetchInto(t.callerCtx(ctx), st, m, dst, write, workers)
		}}
}

// Fetch runs fill(0..n-1), the fetches of n versions, several at once (each with its
// own parallel GETs), as many as the store serves best (streams; one at a time on a
// tier without background workers); the first error cancels the rest and is returned.
// t may be nil: a File without a remote tier (Pull).
func (t *Tier) Fetch(ctx context.Context, n int, fill func(ctx context.Context, i int) error) error {
	if t == nil {
		return parallel(ctx, n, fetchWorkers, fill)
	}
	return t.parallel(ctx, n, streams(t.st), fill)
}

// fetchWorkers is the number of ranged GETs a fetch runs at once.
func (t *Tier) fetchWorkers() int {
	if t.cfg.workers <= 0 {
		return 1
	}
	return streams(t.st)
}

// parallel runs fn(0..n-1) on up to k goroutines (one, on the caller's, without
// background workers); the first error cancels the rest.
func (t *Tier) parallel(ctx context.Context, n, k int, fn func(ctx context.Context, i int) error) error {
	if t.cfg.workers <= 0 {
		k = 1
	}
	return parallel(ctx, n, k, fn)
}

// ctxMutex is a mutex a caller with a deadline waits for no longer than its context
// allows: the job protocol's steps and retention passes hold theirs while they wait
// for the store, and a call bounded by the Timeout (JobVersion, Flush) must not wait
// behind a background step retrying against a store that is down.
type ctxMutex chan struct{}

func newCtxMutex() ctxMutex { return make(ctxMutex, 1) }

// Lock waits for the mutex without a bound.
func (m ctxMutex) Lock() { m <- struct{}{} }

// Unlock releases it.
func (m ctxMutex) Unlock() { <-m }

// lock waits for the mutex until ctx ends, then returns ctx's cause.
func (m ctxMutex) lock(ctx context.Context) error {
	select {
	case m <- struct{}{}:
		return nil
	default:
	}
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
