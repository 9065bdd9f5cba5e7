package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckp-go/ckp/crc"
)

// Concurrency tests of the public API. Run them with -race. Helpers are prefixed with
// "conc".

// concFill fills b with the pattern of (ckpt, s): pseudo-random bytes derived from both,
// with s in the first 8 bytes so that a restored region says which pattern it should be.
func concFill(b []byte, ckpt int, s uint64) {
	apiFill(b, uint64(ckpt)<<40|s)
	if len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, s)
	}
}

// concIdentify returns the s of the pattern b holds, and whether b is exactly that
// pattern of ckpt.
func concIdentify(b []byte, ckpt int) (uint64, bool) {
	s := binary.LittleEndian.Uint64(b)
	want := make([]byte, len(b))
	concFill(want, ckpt, s)
	return s, bytes.Equal(b, want)
}

// concWait waits for wg, failing the test with every goroutine's stack if that takes
// longer than d (a deadlock).
func concWait(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("%s: still running after %v (deadlock?)\n%s", what, d, buf[:n])
	}
}

// TestConcSaves: four goroutines each save their own checkpoint 200 times with distinct
// patterns while another calls SaveAll and another calls Versions and Locate. Afterwards
// (and after a reopen) every version restores byte-exact to the pattern it was saved
// with, versions are numbered without gaps, and each SaveAll is one transaction.
//
// Each worker changes its region only under the write side of its RWMutex and saves it
// under the read side; SaveAll holds the read side of all of them, so Save and SaveAll
// run concurrently while no region changes during a save that reads it.
func TestConcSaves(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  *Options
		saves int
	}{
		{"default", nil, 200},
		{"keep8-interval", &Options{KeepVersions: 8, Sync: SyncInterval(time.Millisecond)}, 200},
		// Enough saves under retention that the index is rewritten while saves run.
		{"keep1-async", &Options{KeepVersions: 1, Sync: SyncAsync}, 700},
	} {
		t.Run(tc.name, func(t *testing.T) { concSaves(t, tc.opts, tc.saves) })
	}
}

func concSaves(t *testing.T, opts *Options, saves int) {
	const workers = 4
	sizes := [workers]int{1000, 4096, 20000, 70001}
	keep := 0
	if opts != nil {
		keep = opts.KeepVersions
	}
	path := apiPath(t)
	f := apiOpen(t, path, opts)
	idx0, err := os.Stat(path + ".idx")
	apiNoErr(t, err, "stat index")
	var (
		regions [workers][]byte
		cs      [workers]*Checkpoint
		locks   [workers]sync.RWMutex
	)
	names := [workers]string{"w0", "w1", "w2", "w3"}
	for i := range regions {
		regions[i] = make([]byte, sizes[i])
		concFill(regions[i], i, 0)
		cs[i] = apiReg(t, f, names[i], regions[i])
	}

	var wg, workersWG sync.WaitGroup
	var stop atomic.Bool
	var saveAlls atomic.Int64
	errc := make(chan error, 100)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	for i := 0; i < workers; i++ {
		wg.Add(1)
		workersWG.Add(1)
		go func() {
			defer wg.Done()
			defer workersWG.Done()
			for k := 1; k <= saves; k++ {
				locks[i].Lock()
				concFill(regions[i], i, uint64(k))
				locks[i].Unlock()
				locks[i].RLock()
				err := cs[i].Save()
				locks[i].RUnlock()
				if err != nil {
					report(fmt.Errorf("worker %d save %d: %w", i, k, err))
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // SaveAll
		defer wg.Done()
		for n := 0; !stop.Load() || n == 0; n++ {
			for i := range locks {
				locks[i].RLock()
			}
			err := f.SaveAll()
			for i := range locks {
				locks[i].RUnlock()
			}
			if err != nil {
				report(fmt.Errorf("SaveAll: %w", err))
				return
			}
			saveAlls.Add(1)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	wg.Add(1)
	go func() { // Versions and Locate
		defer wg.Done()
		for !stop.Load() {
			for i, n := range names {
				c, err := f.Locate(n)
				if err != nil || c != cs[i] {
					report(fmt.Errorf("Locate(%s) = %p, %v; want %p", n, c, err, cs[i]))
					return
				}
				vs := c.Versions()
				for j, v := range vs {
					if v.Size != int64(sizes[i]) {
						report(fmt.Errorf("%s v%d: size %d", n, v.Version, v.Size))
						return
					}
					if j > 0 && v.Version != vs[j-1].Version+1 {
						report(fmt.Errorf("%s: versions %v not consecutive", n, apiVersionNums(vs)))
						return
					}
				}
				if keep > 0 && len(vs) > keep {
					report(fmt.Errorf("%s: %d versions kept, KeepVersions %d", n, len(vs), keep))
					return
				}
			}
			if _, err := f.Locate("missing"); !errors.Is(err, ErrNotFound) {
				report(fmt.Errorf("Locate(missing): %v", err))
				return
			}
			runtime.Gosched()
		}
	}()
	concWait(t, &workersWG, 60*time.Second, "workers")
	stop.Store(true)
	concWait(t, &wg, 30*time.Second, "SaveAll and reader goroutines")
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	total := saves + int(saveAlls.Load())
	idx1, err := os.Stat(path + ".idx")
	apiNoErr(t, err, "stat index")
	t.Logf("%d SaveAll calls during the run; index rewritten: %v", saveAlls.Load(), !os.SameFile(idx0, idx1))

	// verify checks every kept version of every checkpoint.
	verify := func(f *File, cs [workers]*Checkpoint, when string) {
		txnCount := map[uint64]int{}
		for i, c := range cs {
			vs := c.Versions()
			want := total
			if keep > 0 {
				want = keep
			}
			if len(vs) != want {
				t.Errorf("%s: %s has %d versions, want %d", when, names[i], len(vs), want)
			}
			if len(vs) > 0 && vs[len(vs)-1].Version != total {
				t.Errorf("%s: %s newest version %d, want %d", when, names[i], vs[len(vs)-1].Version, total)
			}
			seen := map[uint64]bool{}
			prev := uint64(0)
			for j, v := range vs {
				txnCount[v.Txn]++
				if j > 0 && v.Version != vs[j-1].Version+1 {
					t.Errorf("%s: %s versions not consecutive: %v", when, names[i], apiVersionNums(vs))
				}
				clear(regions[i])
				if err := c.Restore(v.Version); err != nil {
					t.Errorf("%s: %s Restore(%d): %v", when, names[i], v.Version, err)
					continue
				}
				s, ok := concIdentify(regions[i], i)
				if !ok {
					t.Errorf("%s: %s v%d does not hold a pattern it was saved with", when, names[i], v.Version)
					continue
				}
				if s < prev {
					t.Errorf("%s: %s v%d holds fill %d, older than the previous version's %d", when, names[i], v.Version, s, prev)
				}
				if v.Hash != crc.Payload(regions[i]) {
					t.Errorf("%s: %s v%d Hash does not match its bytes", when, names[i], v.Version)
				}
				prev = s
				seen[s] = true
			}
			if keep == 0 {
				// Every fill was saved by its worker.
				for k := uint64(1); k <= uint64(saves); k++ {
					if !seen[k] {
						t.Errorf("%s: %s: no version holds fill %d", when, names[i], k)
						break
					}
				}
			}
		}
		// A transaction is either one Save (one checkpoint) or one SaveAll (all of them).
		if keep == 0 {
			n := 0
			for txn, c := range txnCount {
				switch c {
				case 1:
				case workers:
					n++
				default:
					t.Errorf("%s: transaction %d has versions of %d checkpoints", when, txn, c)
				}
			}
			if int64(n) != saveAlls.Load() {
				t.Errorf("%s: %d SaveAll transactions found, %d SaveAll calls made", when, n, saveAlls.Load())
			}
		}
	}
	verify(f, cs, "after the run")
	apiNoErr(t, f.Close(), "Close")
	f = apiOpen(t, path, opts)
	for i := range cs {
		cs[i] = apiReg(t, f, names[i], regions[i])
	}
	verify(f, cs, "after reopen")
}

// TestConcLargeSavesAndRestores: saves and restores of large regions (which use the
// worker pool) of different checkpoints run at the same time.
func TestConcLargeSavesAndRestores(t *testing.T) {
	const n = 2
	const size = 4<<20 + 123 // above the size at which a save uses the worker pool
	const rounds = 3
	f := apiOpen(t, apiPath(t), nil)
	var regions [n][]byte
	var cs [n]*Checkpoint
	var pats [n][rounds + 1][]byte
	for i := range regions {
		regions[i] = make([]byte, size)
		cs[i] = apiReg(t, f, fmt.Sprintf("big%d", i), regions[i])
		for k := 1; k <= rounds; k++ {
			pats[i][k] = make([]byte, size)
			concFill(pats[i][k], i, uint64(k))
		}
	}
	small := make([]byte, 3000)
	csmall := apiReg(t, f, "small", small)
	var wg sync.WaitGroup
	errc := make(chan error, 10)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := regions[i]
			for k := 1; k <= rounds; k++ {
				copy(r, pats[i][k])
				if err := cs[i].Save(); err != nil {
					errc <- fmt.Errorf("big%d Save: %w", i, err)
					return
				}
				for _, v := range []int{0, 1} {
					clear(r[:4096])
					if err := cs[i].Restore(v); err != nil {
						errc <- fmt.Errorf("big%d Restore(%d): %w", i, v, err)
						return
					}
					want := k
					if v > 0 {
						want = v
					}
					if !bytes.Equal(r, pats[i][want]) {
						errc <- fmt.Errorf("big%d Restore(%d) after save %d: wrong bytes", i, v, k)
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // small saves and restores in between
		defer wg.Done()
		for k := 1; k <= 50; k++ {
			concFill(small, 9, uint64(k))
			if err := csmall.Save(); err != nil {
				errc <- fmt.Errorf("small Save: %w", err)
				return
			}
			clear(small)
			if err := csmall.Restore(0); err != nil {
				errc <- fmt.Errorf("small Restore: %w", err)
				return
			}
			if s, ok := concIdentify(small, 9); !ok || s != uint64(k) {
				errc <- fmt.Errorf("small Restore(0) after save %d: got fill %d (exact %v)", k, s, ok)
				return
			}
		}
	}()
	concWait(t, &wg, 60*time.Second, "large saves and restores")
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// TestConcCloseDuringOperations: Close while saves, SaveAll, restores, Sync, Locate and
// Versions run must neither panic nor deadlock; every operation returns nil or ErrClosed
// (ErrVersion for a restore before the first save). The file is consistent afterwards.
func TestConcCloseDuringOperations(t *testing.T) {
	sizes := []int{100, 5000, 70000, 4<<20 + 1}
	for round := 0; round < 6; round++ {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			path := apiPath(t)
			opts := &Options{}
			if round%2 == 1 {
				opts = &Options{KeepVersions: 3, Sync: SyncEvery(4)}
			}
			f, err := Open(path, opts)
			apiNoErr(t, err, "Open")
			regions := make([][]byte, len(sizes))
			cs := make([]*Checkpoint, len(sizes))
			for i, n := range sizes {
				regions[i] = make([]byte, n)
				concFill(regions[i], i, 7)
				cs[i] = apiReg(t, f, fmt.Sprintf("c%d", i), regions[i])
			}
			// The test never writes to the regions from here on: the engine's own saves
			// and restores of a checkpoint are serialised with each other.
			var wg sync.WaitGroup
			var ops atomic.Int64
			errc := make(chan error, 64)
			check := func(what string, err error, also ...error) bool {
				if err == nil {
					ops.Add(1)
					return true
				}
				if errors.Is(err, ErrClosed) {
					return false
				}
				for _, a := range also {
					if errors.Is(err, a) {
						return true
					}
				}
				select {
				case errc <- fmt.Errorf("%s: %w", what, err):
				default:
				}
				return false
			}
			loop := func(what string, op func() error, also ...error) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for check(what, op(), also...) {
					}
				}()
			}
			for i, c := range cs {
				loop(fmt.Sprintf("c%d.Save", i), c.Save)
				loop(fmt.Sprintf("c%d.Restore", i), func() error { return c.Restore(0) }, ErrVersion)
			}
			loop("SaveAll", f.SaveAll)
			loop("RestoreAll", func() error { return f.RestoreAll(0) }, ErrVersion)
			loop("Sync", f.Sync)
			loop("Locate", func() error {
				c, err := f.Locate("c1")
				if err != nil {
					return err
				}
				if c != cs[1] {
					return fmt.Errorf("Locate returned %p, want %p", c, cs[1])
				}
				_ = c.Versions()
				return nil
			})
			var closeErrs [2]error
			var closers sync.WaitGroup
			time.Sleep(time.Duration(5+round*3) * time.Millisecond)
			for k := range closeErrs {
				closers.Add(1)
				go func() {
					defer closers.Done()
					closeErrs[k] = f.Close()
				}()
			}
			concWait(t, &closers, 30*time.Second, "concurrent Close")
			concWait(t, &wg, 30*time.Second, "operations after Close")
			close(errc)
			for err := range errc {
				t.Error(err)
			}
			nilCount := 0
			for _, err := range closeErrs {
				switch {
				case err == nil:
					nilCount++
				case errors.Is(err, ErrClosed):
				default:
					t.Errorf("Close: %v", err)
				}
			}
			if nilCount != 1 {
				t.Errorf("two concurrent Closes returned %v, want one nil and one ErrClosed", closeErrs)
			}
			t.Logf("%d operations succeeded before Close", ops.Load())
			apiWantErr(t, cs[0].Save(), ErrClosed, "Save after Close")
			apiWantErr(t, f.SaveAll(), ErrClosed, "SaveAll after Close")

			// The file is consistent: every kept version restores and holds the region.
			f = apiOpen(t, path, opts)
			for i, n := range sizes {
				r := make([]byte, n)
				c := apiReg(t, f, fmt.Sprintf("c%d", i), r)
				for _, v := range c.Versions() {
					clear(r)
					if err := c.Restore(v.Version); err != nil {
						t.Errorf("after reopen: c%d Restore(%d): %v", i, v.Version, err)
						continue
					}
					if s, ok := concIdentify(r, i); !ok || s != 7 {
						t.Errorf("after reopen: c%d v%d holds fill %d (exact %v), want 7", i, v.Version, s, ok)
					}
				}
			}
		})
	}
}

// TestConcRegisterUnregister: goroutines register, save and unregister names while
// SaveAll and Locate run; concurrent Registers of one name admit exactly one.
func TestConcRegisterUnregister(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	const goroutines = 4
	const iters = 40
	var wg, regWG sync.WaitGroup
	var stop atomic.Bool
	errc := make(chan error, 64)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	var ownSaves [goroutines]int
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		regWG.Add(1)
		go func() {
			defer wg.Done()
			defer regWG.Done()
			name := fmt.Sprintf("g%d", g)
			for k := 0; k < iters; k++ {
				r := make([]byte, 500+g)
				concFill(r, g, uint64(k))
				c, err := f.Register(name, r)
				if err != nil {
					report(fmt.Errorf("Register(%s): %w", name, err))
					return
				}
				if err := c.Save(); err != nil {
					report(fmt.Errorf("Save(%s): %w", name, err))
					return
				}
				ownSaves[g]++
				if got, err := f.Locate(name); err != nil || got != c {
					report(fmt.Errorf("Locate(%s) = %p, %v; want %p", name, got, err, c))
					return
				}
				if err := c.Unregister(); err != nil {
					report(fmt.Errorf("Unregister(%s): %w", name, err))
					return
				}
				if err := c.Save(); !errors.Is(err, ErrNotFound) {
					report(fmt.Errorf("Save(%s) after Unregister: %v", name, err))
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if err := f.SaveAll(); err != nil {
				report(fmt.Errorf("SaveAll: %w", err))
				return
			}
			// ErrVersion: a checkpoint registered since SaveAll has no version yet.
			if err := f.RestoreAll(0); err != nil && !errors.Is(err, ErrVersion) {
				report(fmt.Errorf("RestoreAll: %w", err))
				return
			}
			runtime.Gosched()
		}
	}()
	// Many goroutines register the same name at once: one wins.
	for round := 0; round < 20; round++ {
		var won atomic.Int32
		var same sync.WaitGroup
		var winner atomic.Pointer[Checkpoint]
		name := fmt.Sprintf("race%d", round)
		for k := 0; k < 6; k++ {
			same.Add(1)
			go func() {
				defer same.Done()
				c, err := f.Register(name, make([]byte, 64))
				switch {
				case err == nil:
					won.Add(1)
					winner.Store(c)
				case !errors.Is(err, ErrExists):
					report(fmt.Errorf("Register(%s): %v", name, err))
				}
			}()
		}
		concWait(t, &same, 30*time.Second, "concurrent Register")
		if won.Load() != 1 {
			t.Errorf("%d of 6 concurrent Register(%s) succeeded, want 1", won.Load(), name)
		}
		if c, err := f.Locate(name); err != nil || c != winner.Load() {
			t.Errorf("Locate(%s) = %p, %v; want the winner %p", name, c, err, winner.Load())
		}
	}
	concWait(t, &regWG, 60*time.Second, "register/unregister goroutines")
	stop.Store(true)
	concWait(t, &wg, 30*time.Second, "SaveAll goroutine")
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	apiNoErr(t, f.Close(), "Close")
	f = apiOpen(t, path, nil)
	for g := 0; g < goroutines; g++ {
		name := fmt.Sprintf("g%d", g)
		r := make([]byte, 500+g)
		c := apiReg(t, f, name, r)
		vs := c.Versions()
		if len(vs) < ownSaves[g] {
			t.Errorf("%s: %d versions, fewer than its %d own saves", name, len(vs), ownSaves[g])
		}
		var fills []uint64
		for _, v := range vs {
			if err := c.Restore(v.Version); err != nil {
				t.Errorf("%s Restore(%d): %v", name, v.Version, err)
				continue
			}
			s, ok := concIdentify(r, g)
			if !ok {
				t.Errorf("%s v%d does not hold a pattern it was saved with", name, v.Version)
			}
			fills = append(fills, s)
		}
		if !slices.IsSorted(fills) {
			t.Errorf("%s: fills out of order across versions: %v", name, fills)
		}
	}
}

// TestConcReadOnlyWhileWriting: readers open the file over and over while a writer
// saves; each reader sees only complete versions, all of which restore to what was
// saved. Without retention the writer never reuses space, so every version a reader
// lists must restore (a read-only File "sees the versions complete when it opened").
func TestConcReadOnlyWhileWriting(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts *Options
	}{
		// Small chunks make the data file grow often, as it does with large regions.
		{"small-chunks", &Options{ChunkSize: 64 << 10, NoPrefault: true}},
		{"default", nil},
	} {
		t.Run(tc.name, func(t *testing.T) { concReadOnlyWhileWriting(t, tc.opts) })
	}
}

func concReadOnlyWhileWriting(t *testing.T, opts *Options) {
	path := apiPath(t)
	w := apiOpen(t, path, opts)
	const size = 20000
	region := make([]byte, size)
	concFill(region, 0, 0)
	c := apiReg(t, w, "r", region)
	apiNoErr(t, c.Save(), "Save")
	var stop atomic.Bool
	var wg sync.WaitGroup
	var saves atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := uint64(1); !stop.Load(); k++ {
			concFill(region, 0, k)
			if err := c.Save(); err != nil {
				t.Errorf("writer Save: %v", err)
				return
			}
			saves.Add(1)
		}
	}()
	deadline := time.Now().Add(700 * time.Millisecond)
	opens := 0
	r := make([]byte, size)
	for time.Now().Before(deadline) && !t.Failed() {
		ro, err := Open(path, &Options{ReadOnly: true})
		if err != nil {
			t.Errorf("read-only Open: %v", err)
			break
		}
		opens++
		rc := apiReg(t, ro, "r", r)
		vs := rc.Versions()
		if len(vs) == 0 {
			t.Errorf("reader sees no versions")
		}
		// The newest and a few others.
		for _, i := range []int{len(vs) - 1, len(vs) / 2, 0} {
			if i < 0 {
				continue
			}
			v := vs[i]
			if err := rc.Restore(v.Version); err != nil {
				t.Errorf("reader %d (of %d versions): Restore(%d): %v", opens, len(vs), v.Version, err)
				continue
			}
			if s, ok := concIdentify(r, 0); !ok {
				t.Errorf("reader: v%d does not hold a saved pattern (fill %d)", v.Version, s)
			}
		}
		apiNoErr(t, ro.Close(), "reader Close")
	}
	stop.Store(true)
	concWait(t, &wg, 30*time.Second, "writer")
	t.Logf("%d reader opens during %d saves", opens, saves.Load())
}
