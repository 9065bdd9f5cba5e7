package engine

import (
	"cmp"
	"reflect"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/ckp-go/ckp/internal/slot"
)

// Checkpoint is a named memory region registered on a File. Each Save appends a new
// version of the region's bytes; Restore copies a version back into the region.
//
// The caller must not write to the region while a Save or SaveAll that includes it is
// running (the version would mix old and new bytes; its hash would still match what was
// stored), nor read it while a Restore is running.
type Checkpoint struct {
	f      *File
	st     *ckptState
	name   string
	region []byte

	mu   sync.Mutex // serialises saves, restores and Unregister of this checkpoint
	gone bool       // unregistered or closed (written under f.mu and mu)
	slot slotPlan   // the save in progress
	diff *diffState // differential bookkeeping (Options.Differential, large regions), or nil
}

// slotPlan is where a save in progress writes.
type slotPlan struct {
	off, size int64
	ver       uint64
	hash      uint64
	rec       int64       // its VERSION record, relative to the transaction's first
	blocks    bool        // stored by blocks (differential): lay describes the slot
	lay       slot.Layout // set by prepareDiff
}

// need returns the slot bytes and alignment the save in progress needs.
func (c *Checkpoint) need() (size, align int64) {
	if c.slot.blocks {
		l := &c.slot.lay
		if l.Delta() {
			return l.Footprint(len(c.name)), slot.PayloadAlign(max(l.Payload, 1))
		}
		return l.Footprint(len(c.name)), slot.PayloadAlign(l.RegionLen)
	}
	n := int64(len(c.region))
	return slot.Footprint(n, len(c.name)), slot.PayloadAlign(n)
}

// VersionInfo describes one kept version of a checkpoint.
type VersionInfo struct {
	Version int       // absolute version number
	Size    int64     // bytes saved
	Saved   time.Time // when the save ran
	Hash    uint64    // the payload hash (xxhash64; see docs/FORMAT.md)
	Offset  int64     // where the payload starts in the data file
	Txn     uint64    // the transaction (Save or SaveAll) that wrote it
	Stored  int64     // bytes its slot takes in the data file, trailer included
	// Written is the bytes this version added to the data file: its payload and
	// trailer (Stored less any slack the slot absorbed). For a differential delta, the
	// changed blocks and the block map.
	Written int64
	// Delta is true for a differential version that holds only the blocks changed since
	// the version before it (Base).
	Delta bool
	// Base is the version a delta's unchanged blocks come from (0 for a full version).
	Base int
	// Changed is the share of the version's blocks its slot holds: 1 for a full version,
	// less for a delta.
	Changed float64
	// BlockSize is the block size of a version stored by blocks (Options.Differential),
	// 0 for one stored whole.
	BlockSize int
}

func (v *version) info(nameLen int) VersionInfo {
	vi := VersionInfo{
		Version: int(v.num),
		Size:    v.length,
		Saved:   time.Unix(0, v.time),
		Hash:    v.hash,
		Offset:  v.off,
		Txn:     v.txn,
		Stored:  v.size,
		Written: v.footprint(nameLen),
		Changed: 1,
	}
	if v.blocks {
		vi.BlockSize = 1 << v.lay.Shift
		vi.Delta, vi.Base = v.delta(), int(v.lay.Base)
		vi.Changed = float64(v.lay.K) / float64(blockCount(v.length, v.lay.Shift))
	}
	return vi
}

// validName checks a checkpoint name: 1..MaxNameLen bytes, any bytes.
func validName(name string) error {
	if len(name) == 0 {
		return errf(ErrInvalid, "empty checkpoint name")
	}
	if len(name) > MaxNameLen {
		return errf(ErrInvalid, "checkpoint name of %d bytes (at most %d)", len(name), MaxNameLen)
	}
	return nil
}

// Register registers region under name. If the file holds versions saved under that
// name earlier (in this process or another), the Checkpoint picks them up and new saves
// continue their numbering; the region may differ in size from them (restoring a version
// of another size returns ErrSize). The File keeps region and reads it on every save.
func (f *File) Register(name string, region []byte) (*Checkpoint, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if len(region) == 0 {
		return nil, errf(ErrInvalid, "checkpoint %q: nil or empty region", name)
	}
	if err := f.begin(); err != nil {
		return nil, err
	}
	defer f.end()
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.ckpts[name]
	if s != nil && s.reg != nil {
		return nil, errf(ErrExists, "checkpoint %q", name)
	}
	if s == nil {
		s = &ckptState{f: f, id: f.nextID, name: name, next: 1}
		f.nextID++
		f.ckpts[name] = s
		f.byID[s.id] = s
	}
	if f.tier != nil {
		// A new node numbers its saves after what the store holds.
		if n := f.tier.NewestOf(name); n >= s.next {
			s.next = n + 1
		}
	}
	c := &Checkpoint{f: f, st: s, name: name, region: region, diff: f.newDiffState(name, len(region))}
	s.reg = c
	f.nreg++
	if n := len(f.regList); !f.regStale && (n == 0 || f.regList[n-1].st.id < s.id) {
		// The usual case, a new name: its id is the largest, so the list stays sorted
		// by appending (which never changes what a snapshot of the list holds).
		f.regList = append(f.regList, c)
	} else {
		f.regStale = true // rebuilt when next needed
	}
	if len(region) >= slot.HugeAlign {
		f.nhuge++
	}
	f.hugeFolios()
	f.pf.wake()
	return c, nil
}

// RegisterValue registers the memory of *v as a region: the bytes of a value of type T.
// T must hold no pointers: pointers, slices, maps, strings, interfaces, channels and
// funcs (at any depth, in arrays and struct fields too) are refused with ErrInvalid,
// since their bytes would be meaningless in the process that restores them.
func RegisterValue[T any](f *File, name string, v *T) (*Checkpoint, error) {
	if v == nil {
		return nil, errf(ErrInvalid, "checkpoint %q: nil pointer", name)
	}
	t := reflect.TypeFor[T]()
	if err := pointerFree(t); err != nil {
		return nil, errf(ErrInvalid, "checkpoint %q: type %v %v", name, t, err)
	}
	size := unsafe.Sizeof(*v)
	if size == 0 {
		return nil, errf(ErrInvalid, "checkpoint %q: type %v has size 0", name, t)
	}
	return f.Register(name, unsafe.Slice((*byte)(unsafe.Pointer(v)), size))
}

// pointerFree returns why t may hold pointers, or nil.
func pointerFree(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return nil
	case reflect.Array:
		if err := pointerFree(t.Elem()); err != nil {
			return err
		}
		return nil
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if err := pointerFree(t.Field(i).Type); err != nil {
				return errf(ErrInvalid, "field %s: %v", t.Field(i).Name, err)
			}
		}
		return nil
	default:
		// Pointer, UnsafePointer, Uintptr (an address in disguise), Slice, Map, String,
		// Interface, Chan, Func.
		return errf(ErrInvalid, "holds a %v, which is not plain data", t.Kind())
	}
}

// Locate returns the registered checkpoint called name, or ErrNotFound.
func (f *File) Locate(name string) (*Checkpoint, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	defer f.end()
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.ckpts[name]; s != nil && s.reg != nil {
		return s.reg, nil
	}
	return nil, errf(ErrNotFound, "no registered checkpoint %q", name)
}

// Name returns the checkpoint's name.
func (c *Checkpoint) Name() string { return c.name }

// Region returns the registered region.
func (c *Checkpoint) Region() []byte { return c.region }

// Versions returns the kept versions of the checkpoint, oldest first. It returns nil on
// a closed File or an unregistered Checkpoint.
//
// It returns nil, too, if the index file was damaged underneath the open File (see
// VersionsOf for an error).
func (c *Checkpoint) Versions() (vs []VersionInfo) {
	f := c.f
	var err error
	defer func() {
		if err != nil {
			vs = nil
		}
	}()
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() || c.gone {
		return nil
	}
	return infos(c.st)
}

func infos(s *ckptState) []VersionInfo {
	out := make([]VersionInfo, s.n())
	for i := range out {
		v := s.at(i)
		out[i] = v.info(len(s.name))
	}
	return out
}

// Unregister removes the checkpoint from the File. Its saved versions stay in the file;
// registering the name again picks them up. Afterwards the Checkpoint's methods return
// ErrNotFound.
func (c *Checkpoint) Unregister() error {
	f := c.f
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	c.mu.Lock()
	defer c.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.gone {
		return errf(ErrNotFound, "checkpoint %q is not registered", c.name)
	}
	c.gone = true
	c.st.reg = nil
	c.diff.close()
	f.nreg--
	f.regStale = true
	if len(c.region) >= slot.HugeAlign {
		f.nhuge--
	}
	f.hugeFolios()
	return nil
}

// usable checks, under c.mu and f.begin, that the checkpoint may be used.
func (c *Checkpoint) usable() error {
	if c.gone {
		return errf(ErrNotFound, "checkpoint %q is not registered", c.name)
	}
	return nil
}

// Save saves the region as a new version of the checkpoint.
func (c *Checkpoint) Save() error {
	f := c.f
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	if f.ro {
		return ErrReadOnly
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return err
	}
	one := [1]*Checkpoint{c}
	return f.save(one[:])
}

// SaveAll saves every registered region as one new version each, atomically: after a
// crash at any point, either all of this SaveAll's versions exist or none does.
func (f *File) SaveAll() error {
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	if f.ro {
		return ErrReadOnly
	}
	cs := f.lockRegistered()
	defer unlockAll(cs)
	if len(cs) == 0 {
		return nil
	}
	return f.save(cs)
}

// lockRegistered returns the registered checkpoints in id order, each locked. It
// allocates nothing unless a checkpoint is unregistered in the meantime.
func (f *File) lockRegistered() []*Checkpoint {
	f.mu.Lock()
	cs := f.registeredList()
	f.mu.Unlock()
	for i, c := range cs {
		c.mu.Lock()
		if c.gone {
			// Unregistered since: continue on a filtered copy.
			c.mu.Unlock()
			out := append([]*Checkpoint{}, cs[:i]...)
			for _, d := range cs[i+1:] {
				d.mu.Lock()
				if d.gone {
					d.mu.Unlock()
					continue
				}
				out = append(out, d)
			}
			return out
		}
	}
	return cs
}

// hugeFolios asks for 2 MiB page-cache folios on the data mapping while a region of
// 2 MiB or more is registered, and for small folios otherwise. Large folios make a
// large save fault once per 2 MiB; but the page cache writes a folio dirtied through a
// mapping back whole, so a durable save of a few KiB in a 2 MiB folio would write
// 2 MiB. Caller holds f.mu.
//
// Saves that keep every version under SyncNone or SyncInterval ask for them too, whatever
// their size: each such save writes only new pages, which the prefaulter maps ahead on
// the other core twice as fast in 2 MiB folios, and nothing flushes those pages one save
// at a time (a durable point writes whole folios that are full of saves anyway).
func (f *File) hugeFolios() {
	fresh := f.opts.KeepVersions == 0 && (f.opts.Sync.kind == syncNone || f.opts.Sync.kind == syncInterval)
	want := !f.opts.NoHugePages && (f.nhuge > 0 || fresh && f.nreg > 0)
	if want != f.huge && f.data.SetHugePages(want) == nil {
		f.huge = want
	}
}

// registeredList returns the registered checkpoints in id order. The slice is never
// modified after it is returned (only appended to beyond its length, or replaced), so
// callers may read it after f.mu is released. Caller holds f.mu.
func (f *File) registeredList() []*Checkpoint {
	if f.regStale {
		f.rebuildRegList()
		f.regStale = false
	}
	return f.regList
}

// registeredNames returns the names of the registered checkpoints, sorted: what a
// version needs committed to be complete on a rank of a job. The slice is never
// modified after it is returned (only replaced). Caller holds f.mu.
func (f *File) registeredNames() []string {
	l := f.registeredList()
	if f.regNames != nil && f.regNamesOf == len(l) && (len(l) == 0 || f.regNamesFor == &l[0]) {
		return f.regNames
	}
	names := make([]string, len(l))
	for i, c := range l {
		names[i] = c.name
	}
	sort.Strings(names)
	f.regNames, f.regNamesOf = names, len(l)
	if len(l) > 0 {
		f.regNamesFor = &l[0]
	}
	return names
}

// rebuildRegList replaces the sorted list of registered checkpoints. Caller holds f.mu.
func (f *File) rebuildRegList() {
	l := make([]*Checkpoint, 0, f.nreg)
	for _, s := range f.ckpts {
		if s.reg != nil {
			l = append(l, s.reg)
		}
	}
	slices.SortFunc(l, func(a, b *Checkpoint) int { return cmp.Compare(a.st.id, b.st.id) })
	f.regList = l
}

func unlockAll(cs []*Checkpoint) {
	for _, c := range cs {
		c.mu.Unlock()
	}
}

// Restore copies version v of the checkpoint into its region: v in 1..N is absolute,
// v in 0, -1, ..., -(N-1) counts back from the newest. The version's hash is checked
// before any byte reaches the region; on any error the region is left as it was. (One
// exception, outside the engine's control: if another program truncates the data file
// in the instant between the check and the copy, the copy fails part way with
// ErrCorrupt and the region holds a mix.)
func (c *Checkpoint) Restore(v int) error {
	f := c.f
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.usable(); err != nil {
		return err
	}
	one := [1]*Checkpoint{c}
	return f.restoreAny(one[:], v, false) // f.restore, or through the remote tier
}

// RestoreAll restores version v (as in Restore) of every registered checkpoint. All of
// them are located and verified before any region is written: on error no region is
// modified.
func (f *File) RestoreAll(v int) error {
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	cs := f.lockRegistered()
	defer unlockAll(cs)
	if len(cs) == 0 {
		return nil
	}
	return f.restoreAny(cs, v, true) // f.restore, or through the remote tier
}

// Checkpoints returns the names of every checkpoint that has kept versions in the file
// or is registered, sorted.
func (f *File) Checkpoints() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n, s := range f.ckpts {
		if s.reg != nil || s.n() > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// VersionsOf returns the kept versions of the checkpoint called name, registered or
// not, oldest first; ErrNotFound when the file holds no such name.
func (f *File) VersionsOf(name string) (vs []VersionInfo, err error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	defer f.end()
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.ckpts[name]
	if s == nil || (s.reg == nil && s.n() == 0) {
		return nil, errf(ErrNotFound, "no checkpoint %q in %s", name, f.path)
	}
	return infos(s), nil
}
