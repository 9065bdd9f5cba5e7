package engine

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// A model-based test: random sequences of operations on a File (Register, Save,
// SaveAll, Restore, RestoreAll, Unregister, Close and reopen with random Options,
// Versions) are checked against a small in-memory model of what the File must hold:
// per name the kept versions (number, size, and the crashFill pattern saved), the
// registered set, the retention in force, and whether the File is read-only. Every
// operation's error class is predicted by the model; every successful Restore is
// checked byte for byte, and every failed one must leave the region untouched.
//
// Run more cases with -rapid.checks=N (default 100) and longer sequences with
// -rapid.steps=N (default 30). A failure prints -rapid.seed=N to reproduce it.
//
// Helpers here are prefixed with "model".

// modelNames are the checkpoint names the test draws from: short, binary, with NUL
// bytes, and one of MaxNameLen bytes (several index records).
var modelNames = []string{
	"a",
	"b",
	"\x00",
	"n\x00m\xff",
	"ckp/\xfe\x00\x01 x",
	strings.Repeat("\xffL\x00", MaxNameLen/3),
}

// modelSizes are the region sizes: one byte, sub-page, a page, above the page-aligned
// threshold and a block-table payload (more than one 1 MiB hash block).
var modelSizes = []int{1, 100, 4096, 70000, 1<<20 + 3}

var (
	modelKeeps    = []int{0, 1, 2, 5}
	modelPolicies = []SyncPolicy{SyncNone, SyncAsync, SyncAlways, SyncEvery(3)}
)

// modelVer is one kept version as the model knows it.
type modelVer struct {
	num  int
	size int
	r, v int // the crashFill pattern that was saved
}

// modelName is what the model knows of a name across reopens.
type modelName struct {
	kept []modelVer // oldest first
	next int        // number of the next save
}

// modelReg is a registered checkpoint of the current File.
type modelReg struct {
	name   string
	r      int // crashFill region id of the name
	region []byte
	c      *Checkpoint
}

// modelStale is a handle that must no longer work: its File was closed (ErrClosed)
// or it was unregistered (ErrNotFound, or ErrReadOnly for a save on a read-only File).
type modelStale struct {
	c      *Checkpoint
	f      *File
	region []byte
}

type modelMachine struct {
	dir   string
	path  string
	f     *File
	opts  Options
	names map[string]*modelName
	regs  map[string]*modelReg
	stale []modelStale
	seq   int // crashFill version counter
}

// modelErrName names an expected error class for messages.
func modelErrName(e error) string {
	if e == nil {
		return "nil"
	}
	return e.Error()
}

// modelWant fails t unless err is of class want (nil meaning success).
func modelWant(t *rapid.T, err, want error, what string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: unexpected error %v", what, err)
		}
		return
	}
	if err == nil || !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %s", what, err, modelErrName(want))
	}
}

func (m *modelMachine) nameOf(name string) *modelName {
	n := m.names[name]
	if n == nil {
		n = &modelName{next: 1}
		m.names[name] = n
	}
	return n
}

// regNames returns the registered names, sorted (a deterministic order for draws).
func (m *modelMachine) regNames() []string {
	out := make([]string, 0, len(m.regs))
	for n := range m.regs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// drawOptions draws Options for an Open; ro is allowed only when the file exists.
func (m *modelMachine) drawOptions(t *rapid.T, mayRO bool) Options {
	o := Options{
		KeepVersions: rapid.SampledFrom(modelKeeps).Draw(t, "keep"),
		Sync:         rapid.SampledFrom(modelPolicies).Draw(t, "sync"),
		NoPrefault:   rapid.Bool().Draw(t, "noPrefault"),
		Workers:      rapid.SampledFrom([]int{0, 1, 2}).Draw(t, "workers"),
		ChunkSize:    rapid.SampledFrom([]int64{0, 1 << 20}).Draw(t, "chunk"),
	}
	if mayRO && rapid.IntRange(0, 3).Draw(t, "ro") == 0 {
		o.ReadOnly = true
	}
	return o
}

func (m *modelMachine) open(t *rapid.T, o Options) {
	t.Helper()
	f, err := Open(m.path, &o)
	if err != nil {
		t.Fatalf("Open(%+v): %v", o, err)
	}
	m.f, m.opts = f, o
	t.Logf("open %+v", o)
}

// fill writes a fresh pattern into a registered region before a save.
func (m *modelMachine) fill(rg *modelReg) (r, v int) {
	m.seq++
	crashFill(rg.region, rg.r, m.seq)
	return rg.r, m.seq
}

// saved records a successful save of rg (pattern r, v) under the retention in force.
func (m *modelMachine) saved(rg *modelReg, r, v int) {
	n := m.nameOf(rg.name)
	n.kept = append(n.kept, modelVer{num: n.next, size: len(rg.region), r: r, v: v})
	n.next++
	if k := m.opts.KeepVersions; k > 0 && len(n.kept) > k {
		n.kept = append([]modelVer(nil), n.kept[len(n.kept)-k:]...)
	}
}

// resolve is the model of Restore's version lookup and size check.
func (m *modelMachine) resolve(name string, size, v int) (*modelVer, error) {
	var kept []modelVer
	if n := m.names[name]; n != nil {
		kept = n.kept
	}
	if len(kept) == 0 {
		return nil, ErrVersion
	}
	var mv *modelVer
	if v <= 0 {
		i := len(kept) - 1 + v
		if i < 0 {
			return nil, ErrVersion
		}
		mv = &kept[i]
	} else {
		for i := range kept {
			if kept[i].num == v {
				mv = &kept[i]
			}
		}
		if mv == nil {
			return nil, ErrVersion
		}
	}
	if mv.size != size {
		return mv, ErrSize
	}
	return mv, nil
}

// drawVersion draws a version number for name: a kept absolute number, a valid
// relative one, or an invalid one (0 with nothing kept, newest+1, -(kept), a dropped
// absolute number, far out of range).
func (m *modelMachine) drawVersion(t *rapid.T, name string) int {
	var kept []modelVer
	next := 1
	if n := m.names[name]; n != nil {
		kept, next = n.kept, n.next
	}
	cands := []int{next, -len(kept), 1 << 40, -(1 << 40), next + 7}
	if len(kept) == 0 {
		cands = append(cands, 0, 1, -1)
	}
	kind := rapid.IntRange(0, 3).Draw(t, "vkind")
	if len(kept) == 0 {
		kind = 2
	}
	switch kind {
	case 0:
		return kept[rapid.IntRange(0, len(kept)-1).Draw(t, "abs")].num
	case 1:
		return rapid.IntRange(-(len(kept)-1), 0).Draw(t, "rel")
	case 3:
		if first := kept[0].num; first > 1 {
			return rapid.IntRange(1, first-1).Draw(t, "dropped")
		}
	}
	return rapid.SampledFrom(cands).Draw(t, "bad")
}

// drawReg draws a registered checkpoint, or skips the action when there is none.
func (m *modelMachine) drawReg(t *rapid.T) *modelReg {
	names := m.regNames()
	if len(names) == 0 {
		t.Skip("nothing registered")
	}
	return m.regs[rapid.SampledFrom(names).Draw(t, "name")]
}

// staleErr is the error class an operation on a stale handle must return.
func (m *modelMachine) staleErr(s modelStale, save bool) error {
	if s.f != m.f {
		return ErrClosed
	}
	if save && m.opts.ReadOnly {
		return ErrReadOnly
	}
	return ErrNotFound
}

func (m *modelMachine) addStale(s modelStale) {
	m.stale = append(m.stale, s)
	if len(m.stale) > 6 {
		m.stale = m.stale[1:]
	}
}

// Register registers a name (already registered: ErrExists) with a size drawn from
// modelSizes, usually the size of the name's newest version when it has one.
func (m *modelMachine) Register(t *rapid.T) {
	name := rapid.SampledFrom(modelNames).Draw(t, "name")
	size := rapid.SampledFrom(modelSizes).Draw(t, "size")
	if n := m.names[name]; n != nil && len(n.kept) > 0 && rapid.IntRange(0, 9).Draw(t, "sameSize") < 6 {
		size = n.kept[len(n.kept)-1].size
	}
	m.register(t, name, size)
}

func (m *modelMachine) register(t *rapid.T, name string, size int) {
	region := make([]byte, size)
	m.seq++
	crashFill(region, 250, m.seq)
	c, err := m.f.Register(name, region)
	if _, ok := m.regs[name]; ok {
		modelWant(t, err, ErrExists, fmt.Sprintf("Register(%q) twice", name))
		return
	}
	modelWant(t, err, nil, fmt.Sprintf("Register(%q, %d)", name, size))
	if c.Name() != name || len(c.Region()) != size {
		t.Fatalf("Register(%q): handle says %q, %d bytes", name, c.Name(), len(c.Region()))
	}
	m.regs[name] = &modelReg{name: name, r: slices.Index(modelNames, name), region: region, c: c}
	if l, err := m.f.Locate(name); err != nil || l != c {
		t.Fatalf("Locate(%q) after Register: %v, %v", name, l, err)
	}
}

// Save saves one registered checkpoint (or tries a stale handle).
func (m *modelMachine) Save(t *rapid.T) {
	if len(m.stale) > 0 && rapid.IntRange(0, 5).Draw(t, "useStale") == 0 {
		s := m.stale[rapid.IntRange(0, len(m.stale)-1).Draw(t, "stale")]
		modelWant(t, s.c.Save(), m.staleErr(s, true), fmt.Sprintf("Save of stale %q", s.c.Name()))
		return
	}
	rg := m.drawReg(t)
	r, v := m.fill(rg)
	err := rg.c.Save()
	if m.opts.ReadOnly {
		modelWant(t, err, ErrReadOnly, fmt.Sprintf("Save(%q) read-only", rg.name))
		return
	}
	modelWant(t, err, nil, fmt.Sprintf("Save(%q)", rg.name))
	m.saved(rg, r, v)
}

// SaveAll saves every registered checkpoint.
func (m *modelMachine) SaveAll(t *rapid.T) {
	type fillT struct{ r, v int }
	names := m.regNames()
	fills := make([]fillT, len(names))
	for i, n := range names {
		fills[i].r, fills[i].v = m.fill(m.regs[n])
	}
	err := m.f.SaveAll()
	if m.opts.ReadOnly {
		modelWant(t, err, ErrReadOnly, "SaveAll read-only")
		return
	}
	modelWant(t, err, nil, fmt.Sprintf("SaveAll of %d", len(names)))
	for i, n := range names {
		m.saved(m.regs[n], fills[i].r, fills[i].v)
	}
}

// scribble sometimes overwrites the region before a restore, so that a restore that
// writes nothing is caught.
func (m *modelMachine) scribble(t *rapid.T, rg *modelReg) {
	if rapid.Bool().Draw(t, "scribble") {
		m.seq++
		crashFill(rg.region, 251, m.seq)
	}
}

// Restore restores a drawn version of one checkpoint (or tries a stale handle).
func (m *modelMachine) Restore(t *rapid.T) {
	if len(m.stale) > 0 && rapid.IntRange(0, 5).Draw(t, "useStale") == 0 {
		s := m.stale[rapid.IntRange(0, len(m.stale)-1).Draw(t, "stale")]
		before := bytes.Clone(s.region)
		modelWant(t, s.c.Restore(0), m.staleErr(s, false), fmt.Sprintf("Restore of stale %q", s.c.Name()))
		if !bytes.Equal(before, s.region) {
			t.Fatalf("Restore of stale %q changed its region", s.c.Name())
		}
		return
	}
	rg := m.drawReg(t)
	v := m.drawVersion(t, rg.name)
	m.scribble(t, rg)
	before := bytes.Clone(rg.region)
	mv, want := m.resolve(rg.name, len(rg.region), v)
	err := rg.c.Restore(v)
	what := fmt.Sprintf("Restore(%q, %d) of %d bytes (kept %v)", rg.name, v, len(rg.region), m.names[rg.name])
	modelWant(t, err, want, what)
	if err != nil {
		if !bytes.Equal(before, rg.region) {
			t.Fatalf("%s failed (%v) but changed the region", what, err)
		}
		return
	}
	if cerr := crashCheck(rg.region, mv.r, mv.v); cerr != nil {
		t.Fatalf("%s: restored bytes are not version %d: %v", what, mv.num, cerr)
	}
}

// RestoreAll restores a drawn version of every registered checkpoint.
func (m *modelMachine) RestoreAll(t *rapid.T) {
	names := m.regNames()
	v := rapid.IntRange(-3, 8).Draw(t, "v")
	if len(names) > 0 && rapid.Bool().Draw(t, "vFromName") {
		v = m.drawVersion(t, rapid.SampledFrom(names).Draw(t, "vname"))
	}
	befores := make([][]byte, len(names))
	vers := make([]*modelVer, len(names))
	var wants []error
	for i, n := range names {
		rg := m.regs[n]
		m.scribble(t, rg)
		befores[i] = bytes.Clone(rg.region)
		mv, e := m.resolve(n, len(rg.region), v)
		vers[i] = mv
		if e != nil {
			wants = append(wants, e)
		}
	}
	err := m.f.RestoreAll(v)
	what := fmt.Sprintf("RestoreAll(%d) of %q", v, names)
	if len(wants) == 0 {
		modelWant(t, err, nil, what)
		for i, n := range names {
			if cerr := crashCheck(m.regs[n].region, vers[i].r, vers[i].v); cerr != nil {
				t.Fatalf("%s: %q is not version %d: %v", what, n, vers[i].num, cerr)
			}
		}
		return
	}
	// Which failing checkpoint is reported first is not specified: any of their classes.
	ok := false
	for _, w := range wants {
		ok = ok || (err != nil && errors.Is(err, w))
	}
	if !ok {
		t.Fatalf("%s: error %v, want one of %v", what, err, wants)
	}
	for i, n := range names {
		if !bytes.Equal(befores[i], m.regs[n].region) {
			t.Fatalf("%s failed (%v) but changed region %q", what, err, n)
		}
	}
}

// Unregister unregisters a checkpoint (or tries a stale handle).
func (m *modelMachine) Unregister(t *rapid.T) {
	if len(m.stale) > 0 && rapid.IntRange(0, 3).Draw(t, "useStale") == 0 {
		s := m.stale[rapid.IntRange(0, len(m.stale)-1).Draw(t, "stale")]
		modelWant(t, s.c.Unregister(), m.staleErr(s, false), fmt.Sprintf("Unregister of stale %q", s.c.Name()))
		return
	}
	rg := m.drawReg(t)
	modelWant(t, rg.c.Unregister(), nil, fmt.Sprintf("Unregister(%q)", rg.name))
	delete(m.regs, rg.name)
	m.addStale(modelStale{c: rg.c, f: m.f, region: rg.region})
	if _, err := m.f.Locate(rg.name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Locate(%q) after Unregister: %v", rg.name, err)
	}
}

// Reopen closes the File and opens it again with new Options (sometimes read-only).
func (m *modelMachine) Reopen(t *rapid.T) {
	old := m.f
	modelWant(t, old.Close(), nil, "Close")
	modelWant(t, old.Close(), ErrClosed, "second Close")
	prev := m.regNames()
	sizes := map[string]int{}
	for _, n := range prev {
		rg := m.regs[n]
		sizes[n] = len(rg.region)
		m.addStale(modelStale{c: rg.c, f: old, region: rg.region})
	}
	clear(m.regs)
	m.open(t, m.drawOptions(t, true))
	if m.opts.ReadOnly {
		modelWant(t, m.f.Sync(), nil, "Sync read-only")
	}
	// A restarted program registers its regions again, usually with the same sizes.
	for _, n := range prev {
		if rapid.IntRange(0, 3).Draw(t, "again") == 0 {
			continue
		}
		size := sizes[n]
		if rapid.IntRange(0, 3).Draw(t, "resize") == 0 {
			size = rapid.SampledFrom(modelSizes).Draw(t, "size")
		}
		m.register(t, n, size)
	}
}

// Versions compares what the File lists with the model: Versions of a registered
// checkpoint, VersionsOf any name, Checkpoints.
func (m *modelMachine) Versions(t *rapid.T) {
	name := rapid.SampledFrom(modelNames).Draw(t, "name")
	vs, err := m.f.VersionsOf(name)
	n := m.names[name]
	_, reg := m.regs[name]
	if !reg && (n == nil || len(n.kept) == 0) {
		modelWant(t, err, ErrNotFound, fmt.Sprintf("VersionsOf(%q)", name))
		return
	}
	modelWant(t, err, nil, fmt.Sprintf("VersionsOf(%q)", name))
	m.compare(t, name, vs)
}

func (m *modelMachine) compare(t *rapid.T, name string, vs []VersionInfo) {
	t.Helper()
	var kept []modelVer
	if n := m.names[name]; n != nil {
		kept = n.kept
	}
	if len(vs) != len(kept) {
		t.Fatalf("%q: File lists %d versions %v, model keeps %v", name, len(vs), vs, kept)
	}
	for i := range vs {
		if vs[i].Version != kept[i].num || vs[i].Size != int64(kept[i].size) {
			t.Fatalf("%q: version %d is %d (%d bytes), model has %d (%d bytes)", name, i,
				vs[i].Version, vs[i].Size, kept[i].num, kept[i].size)
		}
	}
}

// Check runs after every action: the registered checkpoints' versions and the list
// of names match the model.
func (m *modelMachine) Check(t *rapid.T) {
	for _, n := range m.regNames() {
		m.compare(t, n, m.regs[n].c.Versions())
	}
	var want []string
	for name, n := range m.names {
		if _, reg := m.regs[name]; reg || len(n.kept) > 0 {
			want = append(want, name)
		}
	}
	for name := range m.regs {
		if m.names[name] == nil {
			want = append(want, name)
		}
	}
	sort.Strings(want)
	if got := m.f.Checkpoints(); !slices.Equal(got, want) {
		t.Fatalf("Checkpoints() = %q, model %q", got, want)
	}
	fi, err := m.f.Info()
	modelWant(t, err, nil, "Info")
	var nckpt, nver int
	for _, n := range m.names {
		if len(n.kept) > 0 {
			nckpt++
			nver += len(n.kept)
		}
	}
	if fi.Checkpoints != nckpt || fi.Versions != nver || fi.ReadOnly != m.opts.ReadOnly {
		t.Fatalf("Info() lists %d checkpoints, %d versions, read-only %v; model %d, %d, %v",
			fi.Checkpoints, fi.Versions, fi.ReadOnly, nckpt, nver, m.opts.ReadOnly)
	}
	for _, s := range m.stale {
		if s.c.Versions() != nil {
			t.Fatalf("Versions of a stale handle %q is not nil", s.c.Name())
		}
	}
}

// actions returns the state machine's actions, weighted by repetition (rapid draws
// the action names uniformly).
func (m *modelMachine) actions() map[string]func(*rapid.T) {
	weights := []struct {
		name string
		n    int
		fn   func(*rapid.T)
	}{
		{"Register", 2, m.Register},
		{"Save", 4, m.Save},
		{"SaveAll", 3, m.SaveAll},
		{"Restore", 5, m.Restore},
		{"RestoreAll", 2, m.RestoreAll},
		{"Unregister", 1, m.Unregister},
		{"Reopen", 1, m.Reopen},
		{"Versions", 1, m.Versions},
	}
	acts := map[string]func(*rapid.T){"": m.Check}
	for _, w := range weights {
		for i := 0; i < w.n; i++ {
			acts[fmt.Sprintf("%s%d", w.name, i)] = w.fn
		}
	}
	return acts
}

func (m *modelMachine) close() {
	if m.f != nil {
		_ = m.f.Close()
	}
	_ = os.RemoveAll(m.dir)
}

// modelNoFailFile turns off rapid's fail files (it would write them under
// engine/testdata) unless the caller asked for fail-file behaviour on the command
// line; -rapid.seed, which rapid prints on failure, reproduces a failure.
func modelNoFailFile() {
	set := false
	flag.Visit(func(fl *flag.Flag) {
		set = set || fl.Name == "rapid.failfile" || fl.Name == "rapid.nofailfile"
	})
	if !set {
		_ = flag.Set("rapid.nofailfile", "true")
	}
}

func TestModel(t *testing.T) {
	modelNoFailFile()
	parent := t.TempDir()
	rapid.Check(t, func(t *rapid.T) {
		dir, err := os.MkdirTemp(parent, "model")
		if err != nil {
			t.Fatal(err)
		}
		m := &modelMachine{
			dir:   dir,
			path:  dir + "/run.ckp",
			names: map[string]*modelName{},
			regs:  map[string]*modelReg{},
		}
		t.Cleanup(m.close)
		m.open(t, m.drawOptions(t, false))
		t.Repeat(m.actions())
	})
}
