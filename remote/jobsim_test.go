package remote_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
)

// TestJobSim: the job protocol (docs/REMOTE.md) proven by a deterministic simulation
// of the real code: per seed, a job of 1 to 8 ranks, each a real engine File with a
// remote tier over one in-memory store, runs a program (RestoreJob, then saves with
// SaveAll or Save one checkpoint at a time, Flush, JobVersion; RestoreJob again on
// ErrRestart) while a seeded scheduler interleaves the ranks' store requests one at a
// time, injects faults (simworld_test.go), kills ranks at any request or between calls
// (their local files as the kill left them), and restarts them on their old node or a
// new one, all together in a new launch (an MPI relaunch) or one by one. The oracle
// (simoracle_test.go) checks the invariants after every step; once the disturbances
// are over, the job must complete a new version (liveness).
//
//	go test ./remote -run TestJobSim -seed 42 -v    # one seed, printing its schedule
//	go test ./remote -run TestJobSim -sims 5000     # seeds 1..5000
var (
	simSeed     = flag.Uint64("seed", 0, "TestJobSim: run this seed only, printing its schedule")
	simSims     = flag.Int("sims", 0, "TestJobSim: how many seeds to run (from -sims-from); 0: the default")
	simFrom     = flag.Uint64("sims-from", 1, "TestJobSim: the first seed")
	simMutation = os.Getenv("CKP_SIM_EXPECT_FAIL") != "" // report failures without failing (mutation checks)
	simLax      = os.Getenv("CKP_SIM_LAX") != ""         // check only I1-I4 and liveness, not IC and proto
)

// simDefaultSeeds is how many seeds `go test` runs (fewer under -race and -short).
func simDefaultSeeds() int {
	switch {
	case testing.Short():
		return 10
	case raceEnabled:
		return 60
	}
	return 250
}

func TestJobSim(t *testing.T) {
	if *simSeed != 0 {
		res := runSim(t, *simSeed, os.Stdout)
		if res.failed {
			t.Fatalf("seed %d: %s", *simSeed, strings.Join(res.why, "; "))
		}
		t.Logf("seed %d: %s", *simSeed, res.summary)
		return
	}
	n := *simSims
	if n == 0 {
		n = simDefaultSeeds()
	}
	var next atomic.Uint64
	next.Store(*simFrom)
	last := *simFrom + uint64(n)
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	var lives, completes, restores, steps, zombies, zombieCalls atomic.Int64
	for range 2 * max(1, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for {
				seed := next.Add(1) - 1
				if seed >= last {
					return
				}
				mu.Lock()
				stop := len(failed) >= 3
				mu.Unlock()
				if stop {
					return
				}
				res := runSim(t, seed, nil)
				lives.Add(int64(res.lives))
				completes.Add(int64(res.completes))
				restores.Add(int64(res.restores))
				steps.Add(res.steps)
				zombies.Add(int64(res.zombies))
				zombieCalls.Add(int64(res.zombieCalls))
				if res.failed {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("seed %d: %s\n(replay: go test ./remote -run 'TestJobSim$' -seed %d -v)\nlast steps:\n%s",
						seed, strings.Join(res.why, "; "), seed, res.tail))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	t.Logf("seeds %d..%d: %d steps, %d lives, %d versions logged complete, %d RestoreJobs checked, %d zombies (%d calls)",
		*simFrom, last-1, steps.Load(), lives.Load(), completes.Load(), restores.Load(), zombies.Load(), zombieCalls.Load())
	for _, f := range failed {
		if simMutation {
			t.Logf("FAIL %s", f)
		} else {
			t.Error(f)
		}
	}
}

// simProc is one process of one rank.
type simProc struct {
	w                *simWorld
	name             string
	id, rank, launch int
	launchID         string
	dir              string
	cmds             chan func()

	op   *simOp // under w.mu
	dead bool   // under w.mu

	// The program's state: the scheduler's between calls, the call's while it runs.
	f           *engine.File
	regions     [][]byte
	cks         []*engine.Checkpoint
	gen         int
	opened      bool
	restored    bool
	needRestore bool
	next        uint64
	saved       []bool
	label       string
	err         error
	v           uint64
	after       func()

	zombie      bool  // outlived its launch: no longer its rank's process
	zombieUntil int64 // the step it dies at
}

type simSlot struct {
	node  string   // the rank's node: the directory its next process opens on the same node
	nodes []string // every node it ran on, as its last process there left it
	cur   *simProc
}

type simDue struct {
	at     int64
	rank   int
	kill   bool
	zombie bool // instead of dying, the process outlives its launch
	fresh  bool
	launch int
}

type simResult struct {
	failed                     bool
	why                        []string
	tail                       string
	summary                    string
	lives, completes, restores int
	zombies, zombieCalls       int
	steps                      int64
}

type simRun struct {
	seed uint64
	w    *simWorld
	orc  *simOracle
	dir  string

	R, C                   int
	sizes                  []int
	constCkpt              int
	diff                   bool // differential saves and uploads by blocks
	every, keep, keepLocal int
	launchIDs              bool
	faults                 simFaults
	ranks                  []*simSlot
	procs                  []*simProc
	launch, gens           int
	kills                  int
	mode                   string
	pKill, pNew, pOutage   float64
	pZombie                float64    // per relaunch, with launch ids
	zrng                   *rand.Rand // draws only for zombies: runs without any keep their schedules
	zombies                []*simProc
	nZombies, nZombieCalls int
	window, delay          int
	due                    []simDue
	outageUntil            int64
	final                  bool
	finalStep, goal        int64
	checkDue               bool
	failed                 bool
	why                    []string
	out                    io.Writer
	ring                   []string
	ringAt                 int
}

func (s *simRun) tracef(format string, a ...any) {
	line := fmt.Sprintf("%7d ", s.w.step) + fmt.Sprintf(format, a...)
	if s.out != nil {
		fmt.Fprintln(s.out, line)
	}
	if len(s.ring) < 200 {
		s.ring = append(s.ring, line)
	} else {
		s.ring[s.ringAt] = line
		s.ringAt = (s.ringAt + 1) % len(s.ring)
	}
}

func (s *simRun) violation(inv, format string, a ...any) {
	msg := inv + ": " + fmt.Sprintf(format, a...)
	if simLax && (inv == "IC" || inv == "proto") {
		s.tracef("(lax) %s", msg)
		return
	}
	s.why = append(s.why, msg)
	s.failed = true
	s.tracef("VIOLATION %s", msg)
}

func (s *simRun) tail() string {
	return strings.Join(append(append([]string(nil), s.ring[s.ringAt:]...), s.ring[:s.ringAt]...), "\n")
}

// runSim runs one seed.
func runSim(t *testing.T, seed uint64, out io.Writer) simResult {
	w := newSimWorld(seed)
	s := &simRun{seed: seed, w: w, out: out, dir: simTempDir(t)}
	w.trace = s.tracef
	s.orc = newSimOracle(s)
	w.onApply = func(o *simOp, existed bool) {
		if o.kind == simDelete {
			s.checkDue = true
		}
		s.orc.onApply(o, existed)
	}
	s.configure()
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.violation("panic", "%v", r)
			}
		}()
		s.run()
	}()
	s.shutdown()
	res := simResult{failed: s.failed, why: s.why, tail: s.tail(), lives: int(s.orc.newest),
		completes: s.orc.nComplete, restores: s.orc.nRestore, steps: w.step, zombies: s.nZombies, zombieCalls: s.nZombieCalls}
	res.summary = fmt.Sprintf("%d ranks, %d checkpoints, Every %d, Keep %d, KeepVersions %d, launch ids %v: %d steps, %d lives, %d versions complete, %d RestoreJobs, restart point %v",
		s.R, s.C, s.every, s.keep, s.keepLocal, s.launchIDs, w.step, s.orc.newest, s.orc.nComplete, s.orc.nRestore, s.orc.rp)
	s.tracef("END %s", res.summary)
	return res
}

// simTempDir is a run's directory: in memory (/dev/shm) where there is one, since the
// local files' durability is not what the run tests, else under t.TempDir.
func simTempDir(t *testing.T) string {
	if d, err := os.MkdirTemp("/dev/shm", "ckpsim"); err == nil {
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	return t.TempDir()
}

// configure draws the run's job, program and faults from the seed.
func (s *simRun) configure() {
	rng := s.w.rng
	s.R = 2 + rng.IntN(7)
	if rng.IntN(10) == 0 {
		s.R = 1
	}
	s.C = 1 + rng.IntN(3)
	s.constCkpt = -1
	if s.C > 1 && rng.IntN(2) == 0 {
		s.constCkpt = s.C - 1
	}
	// A third of the runs save differentially: regions of 16 to 24 blocks (a version
	// stored by blocks needs 16), of which each save rewrites a few.
	s.diff = rng.IntN(3) == 0
	for range s.C {
		if s.diff {
			s.sizes = append(s.sizes, 16*simBlock+rng.IntN(8*simBlock))
		} else {
			s.sizes = append(s.sizes, simHdrLen+rng.IntN(4000))
		}
	}
	s.every = 1 + rng.IntN(3)
	s.keep = rng.IntN(4)
	s.keepLocal = 1 + rng.IntN(3)
	s.launchIDs = rng.IntN(2) == 0
	if rng.IntN(5) > 0 {
		s.faults = simFaults{fail: rng.Float64() * 0.15, timeout: rng.Float64() * 0.05, lost: rng.Float64() * 0.08,
			stall: rng.Float64() * 0.1, orphan: 0.5}
	}
	s.w.faults = s.faults
	s.kills = rng.IntN(6)
	s.mode = []string{"mpi", "partial", "mixed"}[rng.IntN(3)]
	s.pKill = 1 / float64(100+rng.IntN(1500))
	s.pNew = rng.Float64() * 0.6
	s.window = rng.IntN(50)
	s.delay = rng.IntN(200)
	if rng.IntN(3) == 0 {
		s.pOutage = 0.0005
	}
	for range s.R {
		s.ranks = append(s.ranks, &simSlot{})
	}
	// With launch ids, a process of an old launch may outlive the relaunch (a zombie)
	// and go on with its program, on its node, until it dies.
	s.zrng = rand.New(rand.NewPCG(s.seed, 0x7a6b1e))
	if s.launchIDs && s.R > 1 {
		s.pZombie = s.zrng.Float64()
	}
	s.tracef("CONFIG seed %d: %d ranks, checkpoints %v (unchanging: %d, differential: %v), Every %d, Keep %d, KeepVersions %d, launch ids %v, faults %+v, %d disturbances (%s), pNew %.2f, pZombie %.2f",
		s.seed, s.R, s.sizes, s.constCkpt, s.diff, s.every, s.keep, s.keepLocal, s.launchIDs, s.faults, s.kills, s.mode, s.pNew, s.pZombie)
}

const (
	simMaxSteps   = 300_000
	simLiveBudget = 40_000
	simLiveExtra  = 400
)

func (s *simRun) run() {
	s.launch = 1
	for r := range s.R {
		s.start(r, true, 1)
	}
	for !s.failed {
		if s.w.step > simMaxSteps {
			s.violation("live", "the run did not end in %d steps", simMaxSteps)
			return
		}
		if s.tick() {
			break
		}
		s.stepOnce()
		if s.checkDue || s.w.step%64 == 0 {
			s.checkDue = false
			s.orc.checkStore()
		}
	}
	if !s.failed {
		s.orc.checkStore()
	}
}

// stepOnce advances one request, or gives an idle process its next call.
func (s *simRun) stepOnce() {
	var live []*simProc
	oldest := s.w.step
	for _, sl := range s.ranks {
		if p := sl.cur; p != nil {
			live = append(live, p)
		}
	}
	live = append(live, s.zombies...)
	for _, p := range live {
		if p.op != nil {
			oldest = min(oldest, p.op.issued)
		}
	}
	for _, o := range s.w.orphans {
		oldest = min(oldest, o.issued)
	}
	s.w.trimHist(oldest)
	n := len(live) + len(s.w.orphans)
	if n == 0 {
		s.w.step++
		return
	}
	i := s.w.rng.IntN(n)
	if i >= len(live) {
		s.w.advanceOrphan(i - len(live))
		return
	}
	p := live[i]
	if p.op != nil {
		s.w.advance(p)
	} else {
		s.call(p)
	}
	s.settle(p)
}

// settle runs the end of p's call once p has no request in flight.
func (s *simRun) settle(p *simProc) {
	if p.op == nil && p.after != nil {
		after := p.after
		p.after = nil
		after()
	}
}

// call starts p's next call and waits until it parks on a request or ends.
func (s *simRun) call(p *simProc) {
	s.w.step++
	label, fn, after := s.nextCall(p)
	if p.zombie {
		s.nZombieCalls++
	}
	p.label, p.after = label, after
	s.tracef("%-8s CALL %s", p.name, label)
	p.cmds <- fn
	s.waitEvent(p)
}

// waitEvent waits for p to park or end its call (w.answer's counterpart for calls).
func (s *simRun) waitEvent(p *simProc) {
	select {
	case q := <-s.w.events:
		if q != p {
			panic(fmt.Sprintf("sim: %s ran while %s had the turn", q.name, p.name))
		}
	case <-time.After(3 * time.Minute):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		panic(fmt.Sprintf("sim: %s neither parked nor ended its call %s in 3 minutes:\n%s", p.name, p.label, buf))
	}
}

func (s *simRun) opts(p *simProc) *engine.Options {
	return &engine.Options{KeepVersions: s.keepLocal, Workers: 1, NoPrefault: true, NoHugePages: true, ChunkSize: 1 << 16,
		Differential: s.diff, NoTracking: true,
		Remote: &engine.Remote{Store: &simStore{s.w, p}, Rank: p.rank, Ranks: s.R, Every: s.every, Keep: s.keep,
			Launch: p.launchID, Workers: -1, Backoff: time.Microsecond, Timeout: 10 * time.Minute}}
}

// nextCall decides what p's program does next.
func (s *simRun) nextCall(p *simProc) (string, func(), func()) {
	rng := s.w.rng
	ctx := context.Background()
	switch {
	case !p.opened:
		return "Open", func() {
				p.f, p.err = engine.Open(filepath.Join(p.dir, "r.ckp"), s.opts(p))
				if p.err != nil {
					return
				}
				for c := range s.C {
					region := make([]byte, s.sizes[c])
					ck, err := p.f.Register(simCkptName(c), region)
					if err != nil {
						p.err = err
						return
					}
					p.regions, p.cks = append(p.regions, region), append(p.cks, ck)
				}
			}, func() {
				if p.err != nil {
					s.violation("error", "%s: Open: %v", p.name, p.err)
					return
				}
				p.opened = true
			}
	case p.needRestore || !p.restored:
		s.gens++
		p.gen, p.restored = s.gens, false
		maxBefore := s.orc.maxDone
		if s.R > 1 && rng.IntN(4) == 0 {
			return fmt.Sprintf("JobVersion+RestoreAll (gen %d)", p.gen), func() {
					// RestoreAll(0) is RestoreJob, whatever the restart point is by
					// then: with no version complete yet, RestoreJob tells it.
					jv, err := p.f.JobVersion(ctx)
					switch {
					case errors.Is(err, engine.ErrNotFound):
						jv, err = p.f.RestoreJob(ctx)
					case err == nil:
						err = p.f.RestoreAll(jv)
					}
					p.v, p.err = uint64(jv), err
				}, func() {
					if errors.Is(p.err, engine.ErrVersion) {
						s.tracef("%-8s RestoreAll: %v (the job moved on: again)", p.name, p.err)
						return
					}
					s.restored(p, maxBefore)
				}
		}
		return fmt.Sprintf("RestoreJob (gen %d)", p.gen), func() {
			v, err := p.f.RestoreJob(ctx)
			p.v, p.err = uint64(v), err
		}, func() { s.restored(p, maxBefore) }
	}
	partial := false
	for _, b := range p.saved {
		partial = partial || b
	}
	x := rng.Float64()
	switch {
	case partial || x < 0.5:
		if !partial && rng.IntN(2) == 0 {
			for c := range s.C {
				s.fill(p, c)
			}
			return fmt.Sprintf("SaveAll %d", p.next), func() { p.err = p.f.SaveAll(); p.v = newestOf(p.cks[0]) }, func() {
				if s.callFailed(p, "SaveAll") || !s.numbered(p, p.next) {
					return
				}
				clear(p.saved)
				p.next++
			}
		}
		var left []int
		for c, b := range p.saved {
			if !b {
				left = append(left, c)
			}
		}
		c := left[rng.IntN(len(left))]
		s.fill(p, c)
		return fmt.Sprintf("Save c%d %d", c, p.next), func() { p.err = p.cks[c].Save(); p.v = newestOf(p.cks[c]) }, func() {
			if s.callFailed(p, "Save") || !s.numbered(p, p.next) {
				return
			}
			p.saved[c] = true
			for _, b := range p.saved {
				if !b {
					return
				}
			}
			clear(p.saved)
			p.next++
		}
	case x < 0.8:
		return "Flush", func() { p.err = p.f.Flush(ctx) }, func() { s.callFailed(p, "Flush") }
	default:
		maxBefore := s.orc.maxDone
		return "JobVersion", func() {
				v, err := p.f.JobVersion(ctx)
				if errors.Is(err, engine.ErrNotFound) {
					v, err = 0, nil
				}
				p.v, p.err = uint64(v), err
			}, func() {
				if s.callFailed(p, "JobVersion") {
					return
				}
				s.tracef("%-8s JobVersion = %d", p.name, p.v)
				switch {
				case p.v < maxBefore:
					s.violation("I3", "%s: JobVersion = %d, but version %d was complete before it began", p.name, p.v, maxBefore)
				case p.v > 0 && !s.orc.everComplete(p.v):
					s.violation("I4", "%s: JobVersion = %d, which was never logged complete", p.name, p.v)
				}
			}
	}
}

func (o *simOracle) everComplete(v uint64) bool {
	for p := range o.complete {
		if p.v == v {
			return true
		}
	}
	return false
}

// newestOf is the number of c's newest version.
func newestOf(c *engine.Checkpoint) uint64 {
	vs := c.Versions()
	if len(vs) == 0 {
		return 0
	}
	return uint64(vs[len(vs)-1].Version)
}

// numbered checks that a save took the number the program counts: the one after the
// version it restored, plus its saves since.
func (s *simRun) numbered(p *simProc, want uint64) bool {
	if p.v != want {
		s.violation("I1", "%s: the save of version %d was numbered %d", p.name, want, p.v)
		return false
	}
	return true
}

// fill puts the bytes of checkpoint c at p's next version in its region.
func (s *simRun) fill(p *simProc, c int) {
	v := p.next
	if c == s.constCkpt {
		v = 0
	}
	h := simHdr{rank: p.rank, ckpt: c, v: v, gen: p.gen}
	if s.diff && c != s.constCkpt {
		simFillSome(p.regions[c], h)
	} else {
		simFill(p.regions[c], h)
	}
	s.orc.saved(h, p.regions[c])
}

// callFailed handles a call's error: ErrRestart sends the program to RestoreJob; any
// other error breaks the promise that only a dead store fails a call.
func (s *simRun) callFailed(p *simProc, what string) bool {
	switch {
	case p.err == nil:
		return false
	case isRestart(p.err):
		s.tracef("%-8s %s: ErrRestart: RestoreJob next", p.name, what)
		p.needRestore = true
	default:
		s.violation("error", "%s: %s: %v", p.name, what, p.err)
	}
	return true
}

// restored ends a RestoreJob.
func (s *simRun) restored(p *simProc, maxBefore uint64) {
	if p.err != nil {
		s.violation("error", "%s: RestoreJob: %v", p.name, p.err)
		return
	}
	s.tracef("%-8s restored %d", p.name, p.v)
	s.orc.onRestore(p, p.v, maxBefore)
	p.restored, p.needRestore = true, false
	p.next = p.v + 1
	clear(p.saved)
}

// start begins a process of rank r, on its old node or a new one.
func (s *simRun) start(r int, fresh bool, launch int) {
	sl := s.ranks[r]
	fresh = fresh || sl.node == ""
	switch {
	case fresh:
		d, err := os.MkdirTemp(s.dir, "node")
		if err != nil {
			panic(err)
		}
		sl.node = d
	case len(sl.nodes) > 1 && s.w.rng.IntN(4) == 0:
		// Back on a node it left earlier (a scheduler placing the rank again).
		sl.node = sl.nodes[s.w.rng.IntN(len(sl.nodes)-1)]
	}
	p := &simProc{w: s.w, id: len(s.procs), rank: r, launch: launch, dir: sl.node, cmds: make(chan func()), saved: make([]bool, s.C)}
	p.name = fmt.Sprintf("r%d.%d", r, p.id)
	if s.launchIDs {
		p.launchID = fmt.Sprintf("launch-%d", launch)
	}
	s.gens++
	p.gen = s.gens
	s.procs = append(s.procs, p)
	sl.cur = p
	s.w.wg.Add(1)
	go func() {
		defer s.w.wg.Done()
		for fn := range p.cmds {
			fn()
			s.w.mu.Lock()
			dead := p.dead
			s.w.mu.Unlock()
			if dead {
				break
			}
			s.w.events <- p
		}
		if p.f != nil {
			_ = p.f.Close()
		}
	}()
	s.tracef("START %s launch %d (%s node)", p.name, launch, map[bool]string{true: "new", false: "old"}[fresh])
}

// kill ends p where it is: its local files are kept as they are now (the node's state
// for a restart on it), its request in flight may still take effect later, and
// nothing it does from now on reaches the store.
func (s *simRun) kill(p *simProc, why string, orphans float64) {
	sl := s.ranks[p.rank]
	if p.zombie {
		i := slices.Index(s.zombies, p)
		if i < 0 {
			return
		}
		s.zombies = slices.Delete(s.zombies, i, i+1)
	} else if sl.cur != p {
		return
	}
	snap, err := os.MkdirTemp(s.dir, "node")
	if err != nil {
		panic(err)
	}
	if err := copyFiles(p.dir, snap); err != nil {
		panic(err)
	}
	if !p.zombie {
		sl.node, sl.cur = snap, nil
	}
	if i := slices.Index(sl.nodes, p.dir); i >= 0 {
		sl.nodes[i] = snap // that node as the kill left it
	} else {
		sl.nodes = append(sl.nodes, snap)
	}
	s.w.mu.Lock()
	p.dead = true
	op := p.op
	p.op = nil
	s.w.mu.Unlock()
	s.tracef("KILL %s (%s)%s", p.name, why, map[bool]string{true: " in " + p.label, false: ""}[op != nil])
	if op != nil {
		if !op.applied && op.kind.mutates() && s.w.rng.Float64() < orphans {
			s.w.orphan(op)
		}
		op.err = errSimDead
		close(op.done)
	}
	close(p.cmds)
}

// zombify lets p outlive its launch: its rank's next process starts on another node
// (p's node is p's while it lives), and p goes on until zombieUntil.
func (s *simRun) zombify(p *simProc) {
	sl := s.ranks[p.rank]
	sl.cur, sl.node = nil, ""
	if i := slices.Index(sl.nodes, p.dir); i >= 0 {
		sl.nodes = slices.Delete(sl.nodes, i, i+1)
	}
	p.zombie = true
	p.zombieUntil = s.w.step + int64(200+s.zrng.IntN(4000))
	s.zombies = append(s.zombies, p)
	s.nZombies++
	s.tracef("ZOMBIE %s (launch %d) lives on until %d", p.name, p.launch, p.zombieUntil)
}

func copyFiles(from, to string) error {
	es, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range es {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies in the kernel (copy_file_range through io.Copy): most of a data or
// index file is its preallocated tail, and copying it through user memory was a sixth
// of the simulation's time.
func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func (s *simRun) alive() int {
	n := 0
	for _, sl := range s.ranks {
		if sl.cur != nil {
			n++
		}
	}
	return n
}

// tick is the director: it kills and starts processes, and at the end checks
// liveness. It reports whether the run is over.
func (s *simRun) tick() bool {
	rng := s.w.rng
	k := 0
	for _, d := range s.due {
		if d.at > s.w.step {
			s.due[k] = d
			k++
			continue
		}
		if d.kill {
			if p := s.ranks[d.rank].cur; p != nil {
				if d.zombie {
					s.zombify(p)
				} else {
					s.kill(p, "its job is going down", s.faults.orphan)
				}
			}
		} else if s.ranks[d.rank].cur == nil {
			s.start(d.rank, d.fresh, d.launch)
		}
	}
	s.due = s.due[:k]
	for _, p := range slices.Clone(s.zombies) {
		if s.w.step >= p.zombieUntil {
			s.kill(p, "the zombie dies", s.faults.orphan)
		}
	}
	switch {
	case s.outageUntil > 0 && s.w.step > s.outageUntil:
		s.outageUntil, s.w.delOut = 0, false
		s.tracef("deletes work again")
	case s.outageUntil == 0 && !s.final && rng.Float64() < s.pOutage:
		s.outageUntil, s.w.delOut = s.w.step+int64(200+rng.IntN(2000)), true
		s.tracef("deletes fail until %d", s.outageUntil)
	}
	if len(s.due) > 0 {
		return false
	}
	if s.kills > 0 && s.alive() == s.R && rng.Float64() < s.pKill {
		s.kills--
		first := rng.IntN(s.R)
		mode := s.mode
		if mode == "mixed" {
			mode = []string{"mpi", "partial"}[rng.IntN(2)]
		}
		if mode == "partial" {
			s.kill(s.ranks[first].cur, "this rank fails", s.faults.orphan)
			s.due = append(s.due, simDue{at: s.w.step + int64(rng.IntN(s.delay+1)), rank: first, fresh: rng.Float64() < s.pNew, launch: s.launch})
			return false
		}
		// An MPI job fails: every rank dies within the window, then all start again in
		// a new launch, in any order.
		s.kill(s.ranks[first].cur, "the job fails", s.faults.orphan)
		last := s.w.step
		zombie := -1
		if s.zrng.Float64() < s.pZombie {
			zombie = (first + 1 + s.zrng.IntN(s.R-1)) % s.R
		}
		for r := range s.R {
			if r != first {
				at := s.w.step + int64(rng.IntN(s.window+1))
				last = max(last, at)
				s.due = append(s.due, simDue{at: at, rank: r, kill: true, zombie: r == zombie})
			}
		}
		s.launch++
		for r := range s.R {
			s.due = append(s.due, simDue{at: last + 1 + int64(rng.IntN(s.delay+1)), rank: r, fresh: rng.Float64() < s.pNew, launch: s.launch})
		}
		return false
	}
	if s.kills > 0 || s.alive() < s.R || len(s.zombies) > 0 {
		return false
	}
	// Liveness: with no more faults or kills, a version completes in the newest life.
	if !s.final {
		s.final, s.finalStep = true, s.w.step
		s.w.faults = simFaults{}
		s.outageUntil, s.w.delOut = 0, false
		s.tracef("FINAL: no more faults or kills")
	}
	if s.goal == 0 && s.orc.lastLive > s.finalStep {
		s.goal = s.w.step
	}
	if s.goal > 0 {
		return s.w.step-s.goal > simLiveExtra
	}
	if s.w.step-s.finalStep > simLiveBudget {
		s.violation("live", "no version completed in %d steps after the last disturbance (newest life %d, restart point %v)", simLiveBudget, s.orc.newest, s.orc.rp)
		return true
	}
	return false
}

// shutdown ends every process and waits for their goroutines.
func (s *simRun) shutdown() {
	for _, sl := range s.ranks {
		if p := sl.cur; p != nil {
			s.kill(p, "end of run", 0)
		}
	}
	for _, p := range slices.Clone(s.zombies) {
		s.kill(p, "end of run", 0)
	}
	s.w.wg.Wait()
	_ = os.RemoveAll(s.dir)
}
