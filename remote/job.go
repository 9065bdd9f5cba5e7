package remote

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// The job protocol (docs/REMOTE.md, "The job protocol"). A job's history is a chain of
// lives: life n begins at a base (a version complete in an earlier life, or the start)
// and is joined by every rank once, by one process each. A rank's version counts only
// in the life it was committed in. Each life has an append-only log, built of Create
// alone (entry seq+1 can be created once: a compare-and-swap register): it records the
// life's complete versions and, last, its seal. A life is sealed by a restarting rank
// that finds it was already a member (its old process is gone, so nothing more can
// complete there); the next life begins at the sealed value. Nothing of a sealed life
// above its seal value can ever count, whether or not its objects were deleted.
//
// Completion is found in O(1) requests per rank by trees of markers: a rank whose
// version is complete (every registered checkpoint committed at that number in its
// life) creates its leaf, its version record, lists its at most K siblings, and when
// all are there creates their parent, and so on; whoever creates the root appends
// "complete" to the log. The same kind of tree over the join records tells when every
// rank has joined (the life has started); a rank's versions count only from then on.
// The job's restart point, the head of the newest life's log, is read with a few GETs.

// ErrRestart: this rank's life of the job is over: the job went on from a version this
// rank is past (another rank restarted after versions completed), so nothing this
// process commits can count. The program restarts this rank with RestoreJob. It wraps
// ErrRemote.
var ErrRestart = fmt.Errorf("%w: the job restarted without this rank (call RestoreJob)", base.ErrRemote)

// errTaken: a Create found the key holding another writer's bytes.
var errTaken = errors.New("ckp: key taken by another writer")

// head is the state of a life's log: its newest entry.
type head struct {
	seq    uint64
	sealed bool
	rp     point
}

// jobState is this process's place in the job. Guarded by t.jobMu.
type jobState struct {
	g        geom
	nonce    uint64         // this session's (RestoreJob's) random id, in everything it writes
	life     uint64         // the life this process is a member of; 0: none yet
	lrec     *lifeRec       // its record
	base     point          // where this process started (the life's base)
	restored bool           // the process restored base (RestoreJob), or joined lazily
	started  bool           // every rank has joined life (the join tree's root exists)
	pending  []uint64       // versions complete on this rank before it saw the start, ascending
	head     head           // the newest head of life's log this process has seen
	restart  error          // ErrRestart, reported by the next save, Flush or Close
	recorded map[point]bool // the version records this process wrote
	rpRec    map[point]*verRec
	cleaned  uint64 // dead lives below this have been cleaned of this rank's share
	cleanOK  bool   // cleaned was read from the store
}

func newNonce() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1
}

// Store access with retries.

// createR creates key with body, retrying transient errors: nil if the key now holds
// body (this call's write, or an earlier attempt whose answer was lost), errTaken if it
// holds other bytes.
func (t *Tier) createR(ctx context.Context, key string, body []byte) error {
	for {
		err := retry(ctx, int64(len(body)), func(ctx context.Context) error {
			return t.st.Create(ctx, key, bytes.NewReader(body), int64(len(body)))
		})
		if !errors.Is(err, store.ErrExists) {
			return err
		}
		old, err := getAll(ctx, t.st, key)
		switch {
		case errors.Is(err, store.ErrNotExist):
			continue // deleted meanwhile: create again
		case err != nil:
			return err
		case bytes.Equal(old, body):
			return nil
		}
		return errTaken
	}
}

// getR reads key, retrying transient errors; store.ErrNotExist when it is absent.
func (t *Tier) getR(ctx context.Context, key string) ([]byte, error) {
	return getAll(ctx, t.st, key)
}

// exists reports whether key holds an object.
func (t *Tier) exists(ctx context.Context, key string) (bool, error) {
	_, err := t.getR(ctx, key)
	if errors.Is(err, store.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// putHint writes a hint, once, ignoring failures: a hint that is not written only
// costs later probes.
func (t *Tier) putHint(ctx context.Context, key string, body []byte) {
	_ = t.st.Put(ctx, key, bytes.NewReader(body), int64(len(body)))
}

func (t *Tier) listR(ctx context.Context, prefix string) ([]store.Object, error) {
	var objs []store.Object
	err := retry(ctx, 0, func(ctx context.Context) error {
		var err error
		objs, err = t.st.List(ctx, prefix)
		return err
	})
	return objs, err
}

// Reading the job's state: O(1) requests.

// newestLife returns the newest life (0, nil: none yet): the hint, then a probe of the
// next numbers until one is absent. Lives are numbered without gaps and never deleted.
func newestLife(ctx context.Context, st store.Store) (uint64, *lifeRec, error) {
	var n uint64
	var rec *lifeRec
	b, err := getAll(ctx, st, lifeHintKey)
	switch {
	case err == nil:
		if r, derr := decodeLife(b); derr == nil {
			n, rec = r.n, r
		}
	case !errors.Is(err, store.ErrNotExist):
		return 0, nil, err
	}
	return newestFrom(ctx, st, n, rec, true)
}

// newestFrom probes the lives after life n (rec: its record; 0, nil: none) until one is
// absent, and returns the last that exists; with repair (n came from the hint), it
// repairs the hint when it went past n.
func newestFrom(ctx context.Context, st store.Store, n uint64, rec *lifeRec, repair bool) (uint64, *lifeRec, error) {
	start := n
	for {
		b, err := getAll(ctx, st, lifeKey(n+1))
		if errors.Is(err, store.ErrNotExist) {
			break
		}
		if err != nil {
			return 0, nil, err
		}
		r, err := decodeLife(b)
		if err != nil {
			return 0, nil, fmt.Errorf("%w (%s)", err, lifeKey(n+1))
		}
		if r.n != n+1 {
			return 0, nil, base.Errf(base.ErrCorrupt, "%s holds the record of life %d", lifeKey(n+1), r.n)
		}
		n, rec = n+1, r
	}
	if repair && n > start {
		b := rec.encode()
		_ = st.Put(ctx, lifeHintKey, bytes.NewReader(b), int64(len(b)))
	}
	return n, rec, nil
}

// readLife reads life n's record.
func readLife(ctx context.Context, st store.Store, n uint64) (*lifeRec, error) {
	b, err := getAll(ctx, st, lifeKey(n))
	if err != nil {
		return nil, err
	}
	r, err := decodeLife(b)
	if err == nil && r.n != n {
		err = base.Errf(base.ErrCorrupt, "%s holds the record of life %d", lifeKey(n), r.n)
	}
	return r, err
}

// logHead returns the head of life n's log (base L.base when it has no entry): the hint,
// then a probe from there. A live life's entries are never deleted.
func logHead(ctx context.Context, st store.Store, L *lifeRec) (head, error) {
	h := head{rp: L.base}
	b, err := getAll(ctx, st, logHintKey(L.n))
	switch {
	case err == nil:
		if e, derr := decodeEntry(b); derr == nil {
			h = head{e.seq, e.sealed, e.rp}
		}
	case !errors.Is(err, store.ErrNotExist):
		return h, err
	}
	return logHeadFrom(ctx, st, L.n, h, true)
}

// logHeadFrom probes life n's log from a head known to be in it; with hint, it repairs
// the hint when the probe went past it.
func logHeadFrom(ctx context.Context, st store.Store, n uint64, h head, hint bool) (head, error) {
	start := h.seq
	var last []byte
	for {
		b, err := getAll(ctx, st, logKey(n, h.seq+1))
		if errors.Is(err, store.ErrNotExist) {
			break
		}
		if err != nil {
			return h, err
		}
		e, err := decodeEntry(b)
		if err != nil {
			return h, fmt.Errorf("%w (%s)", err, logKey(n, h.seq+1))
		}
		if e.seq != h.seq+1 {
			return h, base.Errf(base.ErrCorrupt, "%s holds entry %d", logKey(n, h.seq+1), e.seq)
		}
		last, h = b, head{e.seq, e.sealed, e.rp}
	}
	if hint && h.seq > start {
		_ = st.Put(ctx, logHintKey(n), bytes.NewReader(last), int64(len(last)))
	}
	return h, nil
}

// restartPoint is the job's restart point as a tool reads it: the head of the newest
// life's log, validated (no newer life began while it was read). The zero point when
// the job has no life yet.
func restartPoint(ctx context.Context, st store.Store) (point, uint64, error) {
	for {
		n, L, err := newestLife(ctx, st)
		if err != nil || n == 0 {
			return point{}, 0, err
		}
		h, err := logHead(ctx, st, L)
		if err != nil {
			return point{}, 0, err
		}
		newer, err := existsIn(ctx, st, lifeKey(n+1))
		if err != nil {
			return point{}, 0, err
		}
		if !newer {
			return h.rp, n, nil
		}
	}
}

func existsIn(ctx context.Context, st store.Store, key string) (bool, error) {
	_, err := getAll(ctx, st, key)
	if errors.Is(err, store.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// appendLog adds an entry at the head of life L's log if mk(head) gives one: a compare
// and swap built of Create (seq+1 can be created once). It returns the head after it
// (the entry, or the head mk declined).
func (t *Tier) appendLog(ctx context.Context, L *lifeRec, mk func(h head) *logEntry) (head, error) {
	for {
		h, err := logHead(ctx, t.st, L)
		if err != nil {
			return h, err
		}
		e := mk(h)
		if e == nil {
			return h, nil
		}
		b := e.encode()
		err = t.createR(ctx, logKey(L.n, e.seq), b)
		if err == nil {
			t.putHint(ctx, logHintKey(L.n), b)
			return head{e.seq, e.sealed, e.rp}, nil
		}
		if !errors.Is(err, errTaken) {
			return h, err
		}
	}
}

// saw records a head of this process's life's log it read.
func (t *Tier) saw(life uint64, h head) {
	if j := &t.job; j.life == life && h.seq >= j.head.seq {
		j.head = h
	}
}

// createLife creates life n with its base (the sealed head of life n-1).
func (t *Tier) createLife(ctx context.Context, n uint64, base point, sealSeq uint64) error {
	rec := &lifeRec{n: n, base: base, sealSeq: sealSeq, ranks: t.cfg.ranks, arity: treeArity, every: t.cfg.every, launch: t.cfg.launch}
	b := rec.encode()
	err := t.createR(ctx, lifeKey(n), b)
	if err == nil {
		t.putHint(ctx, lifeHintKey, b)
	}
	if errors.Is(err, errTaken) {
		return nil // another creator (another launch's id): the caller reads it
	}
	return err
}

// seal closes life L: no version completes in it from now on.
func (t *Tier) seal(ctx context.Context, L *lifeRec) error {
	_, err := t.appendLog(ctx, L, func(h head) *logEntry {
		if h.sealed {
			return nil
		}
		return &logEntry{seq: h.seq + 1, sealed: true, rp: h.rp, nonce: t.job.nonce}
	})
	return err
}

// climb goes up tree from leaf i (created): at each level it lists the siblings and,
// when all are there, creates the parent. It reports whether it created the root (or
// the leaf is the root).
func (t *Tier) climb(ctx context.Context, tree string, i int) (bool, error) {
	g := t.job.g
	idx, lvl := i, 0
	for count := g.R; count > 1; count = (count + g.K - 1) / g.K {
		p := idx / g.K
		want := min(g.K, count-p*g.K)
		objs, err := t.listR(ctx, g.childPrefix(tree, lvl, p))
		if err != nil {
			return false, err
		}
		if len(objs) < want {
			return false, nil // a sibling is missing: its creator will climb
		}
		switch err := t.createR(ctx, g.nodeKey(tree, lvl+1, p), nodeRecord(t.job.nonce)); {
		case errors.Is(err, errTaken):
			return false, nil // another climber got there first and goes on
		case err != nil:
			return false, err
		}
		lvl++
		idx = p
	}
	return true, nil
}

// checkLife refuses a life whose settings differ from this rank's: its versions would
// never line up with the others'.
func (t *Tier) checkLife(L *lifeRec) error {
	if L.ranks != t.cfg.ranks || L.every != t.cfg.every || L.arity != treeArity {
		return base.Errf(base.ErrInvalid, "life %d of the job in %s has %d ranks and uploads every %d-th version; this rank has Ranks %d, Every %d",
			L.n, t.st, L.ranks, L.every, t.cfg.ranks, t.cfg.every)
	}
	return nil
}

// current returns the job's newest life that is not sealed, with its log's head: a
// sealed newest life gets its successor (beginning at the seal's restart point), and a
// job without lives its first.
func (t *Tier) current(ctx context.Context) (uint64, *lifeRec, head, error) {
	for {
		n, L, err := t.newestLife(ctx)
		if err != nil {
			return 0, nil, head{}, err
		}
		if n == 0 {
			if err := t.createLife(ctx, 1, point{}, 0); err != nil {
				return 0, nil, head{}, err
			}
			continue
		}
		h, err := logHead(ctx, t.st, L)
		if err != nil {
			return 0, nil, head{}, err
		}
		if !h.sealed {
			return n, L, h, nil
		}
		if err := t.createLife(ctx, n+1, h.rp, h.seq); err != nil {
			return 0, nil, head{}, err
		}
	}
}

// join makes this process a member of the job's current life: it joins the newest life,
// or seals it and begins the next when this rank was already a member of it (an
// earlier process) or, with launch ids, when it belongs to another launch. It returns
// the life's base. Caller holds t.jobMu.
func (t *Tier) join(ctx context.Context) error {
	j := &t.job
	for {
		n, L, h, err := t.current(ctx)
		if err != nil {
			return err
		}
		if err := t.checkLife(L); err != nil {
			return err
		}
		if L.launch != t.cfg.launch {
			// With launch ids: a life of another launch is over for this one.
			if err := t.seal(ctx, L); err != nil {
				return err
			}
			continue
		}
		err = t.createR(ctx, j.g.nodeKey(joinTree(n), 0, t.cfg.rank), joinRecord(t.cfg.rank, j.nonce, t.cfg.launch))
		if errors.Is(err, errTaken) {
			// An earlier process of this rank was a member of life n: n can never
			// complete another version. Seal it; the next round begins life n+1.
			if err := t.seal(ctx, L); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		started, newer, err := t.enter(ctx, n)
		if err != nil {
			return err
		}
		if newer {
			continue // n was sealed meanwhile (and may be being cleaned): begin again
		}
		j.life, j.lrec, j.base, j.started, j.head, j.pending = n, L, L.base, started, h, nil
		return nil
	}
}

// state reads the head of this process's life's log, from the head it saw last, and
// whether a newer life exists (which also validates the read: a life's log is deleted
// only once the next life exists). Caller holds t.jobMu.
func (t *Tier) state(ctx context.Context) (head, bool, error) {
	j := &t.job
	b, err := t.getR(ctx, logKey(j.life, j.head.seq+1))
	switch {
	case err == nil:
		// Behind: jump ahead with the hint, then probe.
		e, derr := decodeEntry(b)
		if derr != nil {
			return j.head, false, derr
		}
		h := head{e.seq, e.sealed, e.rp}
		if hb, err := t.getR(ctx, logHintKey(j.life)); err == nil {
			if he, derr := decodeEntry(hb); derr == nil && he.seq > h.seq {
				h = head{he.seq, he.sealed, he.rp}
			}
		}
		if j.head, err = logHeadFrom(ctx, t.st, j.life, h, true); err != nil {
			return j.head, false, err
		}
	case !errors.Is(err, store.ErrNotExist):
		return j.head, false, err
	}
	newer, err := t.exists(ctx, lifeKey(j.life+1))
	return j.head, newer, err
}

// moveOn runs when this process's life is over (a newer life exists, or its head is
// sealed). If the life ended where this process began (nothing completed in it), the
// process moves to the newest life, whose base is then its own, without restoring;
// otherwise the job went on from a version it is past: ErrRestart. Caller holds
// t.jobMu.
func (t *Tier) moveOn(ctx context.Context) error {
	j := &t.job
	for {
		b, err := t.getR(ctx, lifeKey(j.life+1))
		if errors.Is(err, store.ErrNotExist) {
			h, err := logHead(ctx, t.st, j.lrec)
			if err != nil {
				return err
			}
			if !h.sealed {
				return nil
			}
			if err := t.createLife(ctx, j.life+1, h.rp, h.seq); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		next, err := decodeLife(b)
		if err != nil {
			return err
		}
		if next.base != j.base {
			return t.mustRestart("life %d ended at %v, past this rank's start at %v", j.life, next.base, j.base)
		}
		break
	}
	for {
		n, L, h, err := t.current(ctx)
		if err != nil {
			return err
		}
		if L.launch != t.cfg.launch {
			return t.mustRestart("the newest life %d belongs to launch %q, this rank to %q", n, L.launch, t.cfg.launch)
		}
		if L.base != j.base {
			return t.mustRestart("the newest life %d starts at %v, this rank at %v", n, L.base, j.base)
		}
		switch err := t.createR(ctx, j.g.nodeKey(joinTree(n), 0, t.cfg.rank), joinRecord(t.cfg.rank, j.nonce, t.cfg.launch)); {
		case errors.Is(err, errTaken):
			return t.mustRestart("this rank already joined life %d in another process", n)
		case err != nil:
			return err
		}
		started, newer, err := t.enter(ctx, n)
		if err != nil {
			return err
		}
		if newer {
			continue
		}
		old := j.life
		j.life, j.lrec, j.started, j.pending, j.head = n, L, started, nil, h
		t.mu.Lock()
		clear(t.dedup)   // data objects are per life,
		clear(t.lastMan) // and so are the bases of differential uploads
		t.mu.Unlock()
		t.requeue(old)
		return nil
	}
}

// requeue queues again, for the life this process moved into, the versions it
// committed (or was committing) in life old: that life ended where this process began, so nothing it
// committed there counts, and the new life's base is this process's own history. A
// version dropped from the local file since is not. Caller holds t.jobMu.
func (t *Tier) requeue(old uint64) {
	type ref struct {
		name string
		num  uint64
	}
	var refs []ref
	t.mu.Lock()
	for at, names := range t.commits {
		if at.life != old {
			continue
		}
		for name := range names {
			refs = append(refs, ref{name, at.v})
		}
		delete(t.commits, at)
	}
	for _, it := range t.open {
		// Uploads under way in life old, and those queued behind them (so that each
		// checkpoint's versions still commit in order): abandoned, and queued again.
		if it.kind == itemUpload && (it.life == old || it.life == 0) && !it.abandoned {
			it.abandoned = true
			refs = append(refs, ref{it.v.Name, it.num})
		}
	}
	t.mu.Unlock()
	slices.SortFunc(refs, func(a, b ref) int { return cmp.Or(cmp.Compare(a.num, b.num), cmp.Compare(a.name, b.name)) })
	refs = slices.Compact(refs)
	var vs []Sealed
	for _, r := range refs {
		if v, err := t.h.Pin(r.name, r.num); err == nil {
			vs = append(vs, v)
		}
	}
	type txnNum struct{ txn, num uint64 }
	members := map[txnNum]uint32{}
	for _, v := range vs {
		members[txnNum{v.Txn, v.Num}]++
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range vs {
		t.enqueueUpload(v, members[txnNum{v.Txn, v.Num}])
	}
	t.requeues++
	t.signal()
}

// enter finishes joining life n once this rank's join record is there: it climbs the
// join tree (started: the root exists, every rank has joined) and reports whether life
// n+1 exists (n is over: join again).
func (t *Tier) enter(ctx context.Context, n uint64) (started, newer bool, err error) {
	if started, err = t.climb(ctx, joinTree(n), t.cfg.rank); err != nil {
		return false, false, err
	}
	newer, err = t.exists(ctx, lifeKey(n+1))
	return started, newer, err
}

// mustRestart records that this process's life is over for good.
func (t *Tier) mustRestart(format string, args ...any) error {
	t.job.restart = fmt.Errorf("%w: %s", ErrRestart, fmt.Sprintf(format, args...))
	return t.job.restart
}

// complete makes version v complete on this rank in life: its version record (the leaf
// of the completion tree), the climb, and the log entry if this process finished the
// tree. Caller holds t.jobMu.
func (t *Tier) complete(ctx context.Context, life, v uint64) error {
	j := &t.job
	if life != j.life {
		return nil // moved on meanwhile: the version counts in neither life
	}
	newer, err := t.exists(ctx, lifeKey(life+1))
	if err != nil {
		return err
	}
	if newer {
		return t.moveOn(ctx)
	}
	if !j.started {
		started, err := t.exists(ctx, j.g.rootKey(joinTree(life)))
		if err != nil {
			return err
		}
		if !started {
			// Not every rank has joined this life yet: no record may be written (a
			// version recorded before the start could count with a dead launch's).
			// Every such version is recorded once the start is seen, oldest first.
			if i, found := slices.BinarySearch(j.pending, v); !found {
				j.pending = slices.Insert(j.pending, i, v)
			}
			return nil
		}
		j.started = true
	}
	for len(j.pending) > 0 && j.pending[0] < v {
		if err := t.record(ctx, life, j.pending[0]); err != nil {
			return err
		}
		j.pending = j.pending[1:]
	}
	if len(j.pending) > 0 && j.pending[0] == v {
		j.pending = j.pending[1:]
	}
	return t.record(ctx, life, v)
}

// record writes this rank's version record of version v of life (complete on this
// rank, the life started), climbs the version's tree, and appends the version to the
// log when its root is created. Caller holds t.jobMu.
func (t *Tier) record(ctx context.Context, life, v uint64) error {
	j := &t.job
	at := point{life, v}
	if j.recorded[at] {
		return nil // a checkpoint saved at v after it was complete: the record stands
	}
	rec := &verRec{rank: t.cfg.rank, at: at, nonce: j.nonce}
	t.mu.Lock()
	for name, c := range t.commits[at] {
		rec.ckpts = append(rec.ckpts, verCkpt{name: name, manifest: c.manifest, hash: c.hash})
	}
	t.mu.Unlock()
	sort.Slice(rec.ckpts, func(a, b int) bool { return rec.ckpts[a].name < rec.ckpts[b].name })
	tree := doneTree(life, v)
	if err := t.createR(ctx, j.g.nodeKey(tree, 0, t.cfg.rank), rec.encode()); err != nil {
		if errors.Is(err, errTaken) {
			return base.Errf(base.ErrCorrupt, "%s: the version record of %v of rank %d holds another process's bytes", t.st, at, t.cfg.rank)
		}
		return err
	}
	if j.recorded == nil {
		j.recorded = map[point]bool{}
	}
	j.recorded[at] = true
	root, err := t.climb(ctx, tree, t.cfg.rank)
	if err != nil || !root {
		return err
	}
	h, err := t.appendLog(ctx, j.lrec, func(h head) *logEntry {
		if h.sealed || h.rp.life == life && h.rp.v >= v {
			return nil // sealed: v never counts; or a newer version already does
		}
		return &logEntry{seq: h.seq + 1, rp: at, nonce: j.nonce}
	})
	if err == nil {
		t.saw(life, h)
	}
	return err
}

// versionRecord reads rank's version record of point p.
func (t *Tier) versionRecord(ctx context.Context, p point, rank int) (*verRec, error) {
	if rec := t.job.rpRec[p]; rec != nil && rank == t.cfg.rank {
		return rec, nil
	}
	b, err := t.getR(ctx, t.job.g.nodeKey(doneTree(p.life, p.v), 0, rank))
	if err != nil {
		return nil, err
	}
	rec, err := decodeVerRec(b)
	if err != nil {
		return nil, err
	}
	if rec.at != p || rec.rank != rank {
		return nil, base.Errf(base.ErrCorrupt, "the version record of %v of rank %d describes %v of rank %d", p, rank, rec.at, rec.rank)
	}
	if rank == t.cfg.rank {
		if t.job.rpRec == nil {
			t.job.rpRec = map[point]*verRec{}
		}
		t.job.rpRec[p] = rec
	}
	return rec, nil
}

// lineage maps the lives on the job's history up to a life to the newest version of
// each that is part of it: the life itself (every version), the life of its base up to
// the base, that life's base's life up to that base, and so on. Versions of lives off
// the lineage, and above the cap of a life on it, belong to abandoned lives: nothing
// restores them, and retention deletes them.
type lineage map[uint64]uint64

// lineageOf returns the lineage of life top (nil when top is 0: a store without lives,
// whose every version counts).
func (t *Tier) lineageOf(ctx context.Context, top uint64) (lineage, error) {
	return lineageIn(ctx, top, t.life)
}

// lineageIn returns the lineage of life top, reading life records with life.
func lineageIn(ctx context.Context, top uint64, life func(ctx context.Context, n uint64) (*lifeRec, error)) (lineage, error) {
	if top == 0 {
		return nil, nil // no life: everything (a store written by hand)
	}
	caps := lineage{}
	caps[top] = math.MaxUint64
	for n := top; ; {
		L, err := life(ctx, n)
		if err != nil {
			return nil, err
		}
		if L.base.v == 0 {
			return caps, nil
		}
		if c, ok := caps[L.base.life]; !ok || L.base.v < c {
			caps[L.base.life] = L.base.v
		}
		n = L.base.life
	}
}

// storeLineage is the lineage of the job's newest life in st, as a tool reads it.
func storeLineage(ctx context.Context, st store.Store) (lineage, error) {
	n, _, err := newestLife(ctx, st)
	if err != nil {
		return nil, err
	}
	return lineageIn(ctx, n, func(ctx context.Context, n uint64) (*lifeRec, error) { return readLife(ctx, st, n) })
}

// newestLife is newestLife, keeping the record it finds in t's cache of life records,
// so that the lineage read next needs no second GET of it. It reads the hint, as
// every rank's first look at the job does: a join (current) and Open use it.
func (t *Tier) newestLife(ctx context.Context) (uint64, *lifeRec, error) {
	n, L, err := newestLife(ctx, t.st)
	t.sawLife(n, L, err)
	return n, L, err
}

// newestSince is newestLife for a restore's lineage, once this process has seen a
// life: it probes after the newest one it saw, without reading the hint (lives are
// never deleted, so that one still exists), and leaves the hint alone (another rank's
// join may have moved it past that life already: a write here would be one more per
// rank, or move it back).
func (t *Tier) newestSince(ctx context.Context) (uint64, *lifeRec, error) {
	t.mu.Lock()
	seen := t.newestSeen
	L := t.lives[seen]
	t.mu.Unlock()
	if L == nil {
		return t.newestLife(ctx)
	}
	n, L, err := newestFrom(ctx, t.st, seen, L, false)
	t.sawLife(n, L, err)
	return n, L, err
}

// sawLife keeps life n's record L, found as the newest.
func (t *Tier) sawLife(n uint64, L *lifeRec, err error) {
	if err != nil || L == nil {
		return
	}
	t.mu.Lock()
	if t.lives[n] == nil {
		t.lives[n] = L
	}
	t.newestSeen = max(t.newestSeen, n)
	t.mu.Unlock()
}

// storeLineage is the lineage of the job's newest life (for a restore, newestSince),
// older life records read through t's cache.
func (t *Tier) storeLineage(ctx context.Context) (lineage, error) {
	n, _, err := t.newestSince(ctx)
	if err != nil {
		return nil, err
	}
	return t.lineageOf(ctx, n)
}

// life returns life n's record (records never change: cached).
func (t *Tier) life(ctx context.Context, n uint64) (*lifeRec, error) {
	t.mu.Lock()
	L := t.lives[n]
	t.mu.Unlock()
	if L != nil {
		return L, nil
	}
	L, err := readLife(ctx, t.st, n)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.lives[n] = L
	t.mu.Unlock()
	return L, nil
}
