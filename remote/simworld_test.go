package remote_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"

	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/mem"
)

// The world of the job simulation (jobsim_test.go): one in-memory store (store/mem)
// that every process reaches through its own handle, and a seeded scheduler that runs
// one process at a time. Each process runs real engine Files with a remote tier
// without background goroutines (Remote.Workers < 0: uploads, commits and retention
// run inside Flush, Close, RestoreJob and JobVersion, on the caller's goroutine), so
// every store request of a process comes from its one running call. A request parks
// its process; at each step the scheduler picks one parked request (or an idle process
// to give its next call, or a request of a dead process still in flight) and decides
// its fate: it fails before taking effect, takes effect and loses its answer, takes
// effect and answers later (after other requests), or times out on the client and
// takes effect later, perhaps much later. A run is therefore a function of its seed,
// up to what the real code decides by itself (the order of its map iterations, its
// random nonces): a failing seed replays.
//
// The store stays as consistent as store.Store promises: every request takes effect
// at one instant between its issue and its answer, and a listing shows each key that
// changed while the listing was in flight in any one of the states it had meanwhile
// (a listing never shows a key that was never created).

type simOpKind uint8

const (
	simCreate simOpKind = iota
	simPut
	simGet
	simList
	simDelete
)

var simOpNames = [...]string{"create", "put", "get", "list", "delete"}

func (k simOpKind) mutates() bool { return k == simCreate || k == simPut || k == simDelete }

// errSimTransient is what a failed request answers: transient (retried).
var errSimTransient = errors.New("sim: 503 service unavailable")

// errSimDead answers every request of a killed process: permanent, so that its code
// stops quickly; nothing it asks takes effect.
var errSimDead = fmt.Errorf("%w: sim: the process was killed", store.ErrDenied)

// simOp is one request.
type simOp struct {
	kind   simOpKind
	key    string // the key, or a listing's prefix
	body   []byte
	off, n int64
	p      *simProc // the process waiting for it; nil for an orphan (its process died or gave up)
	issued int64    // the step it was issued at

	proc     *simProc // the process that issued it
	procName string
	gen      int  // its generation (program session) then
	moving   bool // issued after the generation's RestoreJob returned

	applied bool
	lost    bool // took effect; it answers an error
	keep    float64
	res     []byte
	objs    []store.Object
	err     error
	done    chan struct{}
}

// simFaults are a run's fault rates.
type simFaults struct {
	fail    float64 // fails before it takes effect
	timeout float64 // the client gives up; a write may take effect later
	lost    float64 // takes effect, answers an error
	stall   float64 // takes effect, answers after other requests
	orphan  float64 // a killed process's write in flight takes effect later
}

// keyEvent is a change of a key's presence at a step (for listings in flight).
type keyEvent struct {
	step    int64
	key     string
	present bool
}

type simWorld struct {
	rng     *rand.Rand
	st      *mem.Store
	step    int64
	faults  simFaults
	delOut  bool // deletes fail (an outage)
	events  chan *simProc
	orphans []*simOp
	hist    []keyEvent
	trace   func(format string, a ...any)
	onApply func(o *simOp, before bool) // after a write took effect; before: the key existed
	wg      sync.WaitGroup

	mu sync.Mutex // guards every simProc's op and dead
}

func newSimWorld(seed uint64) *simWorld {
	return &simWorld{
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		st:     mem.New(fmt.Sprintf("sim%d", seed)),
		events: make(chan *simProc),
		trace:  func(string, ...any) {},
	}
}

// simStore is a process's handle on the world's store.
type simStore struct {
	w *simWorld
	p *simProc
}

func (s *simStore) String() string { return "sim:" + s.p.name }

func (s *simStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	b, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return err
	}
	return s.w.do(s.p, &simOp{kind: simCreate, key: key, body: b}).err
}

func (s *simStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	b, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return err
	}
	return s.w.do(s.p, &simOp{kind: simPut, key: key, body: b}).err
}

func (s *simStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	o := s.w.do(s.p, &simOp{kind: simGet, key: key, off: off, n: n})
	if o.err != nil {
		return nil, o.err
	}
	return io.NopCloser(bytes.NewReader(o.res)), nil
}

func (s *simStore) List(ctx context.Context, prefix string) ([]store.Object, error) {
	o := s.w.do(s.p, &simOp{kind: simList, key: prefix})
	return o.objs, o.err
}

func (s *simStore) Delete(ctx context.Context, key string) error {
	return s.w.do(s.p, &simOp{kind: simDelete, key: key}).err
}

// do issues a request of p and waits for the scheduler's answer. A dead process's
// requests fail at once.
func (w *simWorld) do(p *simProc, o *simOp) *simOp {
	w.mu.Lock()
	if p.dead {
		w.mu.Unlock()
		o.err = errSimDead
		return o
	}
	if p.op != nil {
		w.mu.Unlock()
		panic(fmt.Sprintf("sim: %s issued two requests at once (%s %s, %s %s)", p.name, simOpNames[p.op.kind], p.op.key, simOpNames[o.kind], o.key))
	}
	o.p, o.done, o.issued = p, make(chan struct{}), w.step
	o.proc, o.procName, o.gen, o.moving = p, p.name, p.gen, p.restored
	p.op = o
	w.mu.Unlock()
	w.events <- p
	<-o.done
	return o
}

// answer ends p's request with what it holds now and waits until p parks again or ends
// its call. Caller: the scheduler.
func (w *simWorld) answer(p *simProc, err error) {
	w.mu.Lock()
	o := p.op
	p.op = nil
	w.mu.Unlock()
	if err == nil {
		err = o.err
		if o.lost {
			err = errSimTransient
		}
	}
	if err != nil {
		o.res, o.objs = nil, nil
	}
	o.err = err
	w.trace("%-8s %-6s %s -> %s", p.name, simOpNames[o.kind], o.key, o.show())
	close(o.done)
	<-w.events
}

func (o *simOp) show() string {
	switch {
	case errors.Is(o.err, errSimTransient) && o.applied:
		return "error (took effect)"
	case o.err != nil:
		return o.err.Error()
	case o.kind == simList:
		return fmt.Sprintf("%d keys", len(o.objs))
	case o.kind == simGet:
		return fmt.Sprintf("%d bytes", len(o.res))
	}
	return "ok"
}

// advance moves p's request one step: it decides its fate.
func (w *simWorld) advance(p *simProc) {
	w.step++
	o := p.op
	if o.applied { // stalled: its answer comes now, or later
		if w.rng.Float64() < o.keep {
			return
		}
		w.answer(p, nil)
		return
	}
	f := w.faults
	x := w.rng.Float64()
	switch {
	case x < f.fail || (o.kind == simDelete && w.delOut):
		w.answer(p, errSimTransient)
	case x < f.fail+f.timeout:
		if o.kind.mutates() && w.rng.IntN(2) == 0 {
			w.orphan(o)
		}
		w.answer(p, errSimTransient)
	default:
		w.apply(o)
		o.lost = w.rng.Float64() < f.lost
		if w.rng.Float64() < f.stall {
			o.keep = []float64{0.5, 0.8, 0.95}[w.rng.IntN(3)]
			w.trace("%-8s %-6s %s stalls", p.name, simOpNames[o.kind], o.key)
			return
		}
		w.answer(p, nil)
	}
}

// orphan keeps a copy of o that its process no longer waits for: it takes effect at a
// later pick, perhaps much later.
func (w *simWorld) orphan(o *simOp) {
	c := &simOp{kind: o.kind, key: o.key, body: o.body, issued: o.issued, proc: o.proc, procName: o.procName, gen: o.gen, moving: o.moving}
	if w.rng.IntN(2) == 0 {
		c.keep = []float64{0.9, 0.99, 0.999}[w.rng.IntN(3)]
	}
	w.orphans = append(w.orphans, c)
}

// advanceOrphan applies orphan i, unless it lingers.
func (w *simWorld) advanceOrphan(i int) {
	w.step++
	o := w.orphans[i]
	if w.rng.Float64() < o.keep {
		return
	}
	w.orphans[i] = w.orphans[len(w.orphans)-1]
	w.orphans = w.orphans[:len(w.orphans)-1]
	w.trace("late     %-6s %s (its process moved on or is gone)", simOpNames[o.kind], o.key)
	w.apply(o)
}

// apply makes o take effect on the store now.
func (w *simWorld) apply(o *simOp) {
	o.applied = true
	ctx := context.Background()
	switch o.kind {
	case simCreate, simPut:
		_, gerr := w.st.Get(ctx, o.key, 0, 0)
		existed := gerr == nil
		if o.kind == simCreate {
			o.err = w.st.Create(ctx, o.key, bytes.NewReader(o.body), int64(len(o.body)))
		} else {
			o.err = w.st.Put(ctx, o.key, bytes.NewReader(o.body), int64(len(o.body)))
		}
		if o.err == nil {
			if !existed {
				w.hist = append(w.hist, keyEvent{w.step, o.key, true})
			}
			w.onApply(o, existed)
		}
	case simGet:
		rc, err := w.st.Get(ctx, o.key, o.off, o.n)
		if err == nil {
			o.res, err = io.ReadAll(rc)
			rc.Close()
		}
		o.err = err
	case simList:
		o.objs, o.err = w.st.List(ctx, o.key)
		if o.err == nil {
			o.objs = w.blur(o.key, o.issued, o.objs)
		}
	case simDelete:
		_, gerr := w.st.Get(ctx, o.key, 0, 0)
		o.err = w.st.Delete(ctx, o.key)
		if gerr == nil && o.err == nil {
			w.hist = append(w.hist, keyEvent{w.step, o.key, false})
			w.onApply(o, true)
		}
	}
}

// blur shows each key under prefix that changed since the listing was issued in any
// one of the states it had since (per key, at random): what a listing in flight
// meanwhile may show.
func (w *simWorld) blur(prefix string, issued int64, objs []store.Object) []store.Object {
	i := sort.Search(len(w.hist), func(i int) bool { return w.hist[i].step > issued })
	if i == len(w.hist) {
		return objs
	}
	states := map[string][]bool{}
	for _, e := range w.hist[i:] {
		if !strings.HasPrefix(e.key, prefix) {
			continue
		}
		if states[e.key] == nil {
			states[e.key] = []bool{!e.present} // its state at the issue
		}
		states[e.key] = append(states[e.key], e.present)
	}
	if len(states) == 0 {
		return objs
	}
	show := map[string]bool{}
	for k, s := range states {
		show[k] = s[w.rng.IntN(len(s))]
	}
	var out []store.Object
	for _, o := range objs {
		if s, ok := show[o.Key]; !ok || s {
			out = append(out, o)
		}
		delete(show, o.Key)
	}
	for k, s := range show {
		if s { // deleted since: shown as it was
			out = append(out, store.Object{Key: k})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key < out[b].Key })
	if out == nil {
		out = []store.Object{}
	}
	return out
}

// trimHist forgets the key events older than every request in flight.
func (w *simWorld) trimHist(oldest int64) {
	i := sort.Search(len(w.hist), func(i int) bool { return w.hist[i].step > oldest })
	if i > 4096 {
		w.hist = append(w.hist[:0], w.hist[i:]...)
	}
}

// readOnly is a store for the checks: it reads the world's store as it is, outside
// the schedule, and drops the hints a reader writes. With deps set, it records what
// it read: the keys it got and the prefixes it listed.
type readOnly struct {
	store.Store
	deps *simDeps
}

func (r readOnly) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if r.deps != nil {
		r.deps.mu.Lock()
		r.deps.keys[key] = true
		r.deps.mu.Unlock()
	}
	return r.Store.Get(ctx, key, off, n)
}

func (r readOnly) List(ctx context.Context, prefix string) ([]store.Object, error) {
	if r.deps != nil {
		r.deps.mu.Lock()
		r.deps.prefixes = append(r.deps.prefixes, prefix)
		r.deps.mu.Unlock()
	}
	return r.Store.List(ctx, prefix)
}

// simDeps is what a check read from the store: the check's answer is a function of
// those objects and listings only, so until a write touches one of them it stays the
// same. A check's reads may run in parallel (fetches of several objects).
type simDeps struct {
	mu       sync.Mutex
	keys     map[string]bool
	prefixes []string
}

func (d *simDeps) touches(key string) bool {
	if d.keys[key] {
		return true
	}
	for _, p := range d.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func (readOnly) Put(context.Context, string, io.Reader, int64) error { return nil }
func (readOnly) Create(context.Context, string, io.Reader, int64) error {
	return fmt.Errorf("%w: sim: the checker does not write", store.ErrDenied)
}
func (readOnly) Delete(context.Context, string) error {
	return fmt.Errorf("%w: sim: the checker does not write", store.ErrDenied)
}
