package engine

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"time"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/slot"
	"github.com/ckp-go/ckp/mmapfile"
)

// Inspection: what tools (the ckp command) need to look into a file without a
// registered region: every checkpoint in it, a verified copy of any version, a check of
// every version, and facts about the file.

// FileInfo describes an open checkpoint file.
type FileInfo struct {
	Path, IndexPath string    // the data file's and the index file's paths
	FormatVersion   int       // the data file's format version (docs/FORMAT.md)
	Created         time.Time // when the data file was created
	DataSize        int64     // bytes of the data file (allocated in chunks)
	DataUsed        int64     // bytes below the allocation frontier
	IndexSize       int64     // bytes of the index file (allocated in chunks)
	IndexRecords    int64     // records in the index
	IndexGeneration uint64    // times the index was rewritten (compaction, import, rewind)
	Checkpoints     int       // names with kept versions
	Versions        int       // kept versions, all names together
	LastWriter      *SessionInfo
	ReadOnly        bool     // the File was opened with Options.ReadOnly
	Recovery        Recovery // what Open found and dropped
	// Differential says how this File saves large regions: "" when it saves them
	// whole; "kernel tracking" when changed blocks can be found through the kernel's
	// written-page tracking; "hashing (why)" when by hashing every block. Regions the
	// engine does not track now (see Detection for why) are counted in Hashed.
	Differential string
	Tracked      int // registered differential regions tracked by the kernel now
	Hashed       int // registered differential regions whose changes are found by hashing now
	// TrackingMisses counts the writes the kernel's tracking did not report that this
	// File found since it opened (Options.ScrubSaves); a region with one is hashed
	// from then on.
	TrackingMisses int
	// Detection says, for each registered differential region (by name), how its
	// changed blocks are found.
	Detection []RegionDetection
}

// RegionDetection says how a registered differential region finds its changed blocks.
type RegionDetection struct {
	Name    string
	Tracked bool // by the kernel's written-page tracking, now
	// Why it is not tracked now ("new region", "dense writer", "hashing costs less",
	// pinned memory in the process, a missed write...), or why its last save did not
	// trust the tracker's report; "" otherwise.
	Why    string
	Misses int // writes the kernel's tracking did not report, found in this region
}

// SessionInfo describes the last writer that opened the file.
type SessionInfo struct {
	PID          int        // its process id
	Opened       time.Time  // when it opened the file
	Sync         SyncPolicy // its durability policy
	KeepVersions int        // its retention (0: every version)
	Differential bool       // it saved large regions by blocks
	BlockSize    int        // of those blocks
	Tracking     bool       // the kernel's written-page tracking was available to it
	// TrackingMisses counts the writes its tracking did not report that it found (the
	// regions concerned were hashed from then on).
	TrackingMisses int
}

// Info returns facts about the file.
func (f *File) Info() (fi FileInfo, err error) {
	if err := f.begin(); err != nil {
		return FileInfo{}, err
	}
	defer f.end()
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	f.mu.Lock()
	defer f.mu.Unlock()
	fi = FileInfo{
		Path:            f.path,
		IndexPath:       f.idxPath,
		FormatVersion:   int(f.format),
		DataSize:        f.data.Size(),
		DataUsed:        f.usedEnd(),
		IndexSize:       f.idx.Size(),
		IndexRecords:    f.log.records,
		IndexGeneration: f.log.gen,
		ReadOnly:        f.ro,
		Recovery:        f.recovered,
		LastWriter:      f.lastSession,
	}
	if h, err := slot.DecodeHeader(f.data.Bytes()); err == nil {
		fi.Created = time.Unix(0, h.Created)
	}
	for _, s := range f.byID {
		if n := s.n(); n > 0 {
			fi.Checkpoints++
			fi.Versions += n
		}
	}
	if f.opts.Differential && !f.ro {
		if why := f.tracking(); why != "" {
			fi.Differential = "hashing (" + why + ")"
		} else {
			fi.Differential = "kernel tracking"
		}
		fi.TrackingMisses = int(f.diff.misses.Load())
		for _, c := range f.registeredList() {
			if c.diff == nil {
				continue
			}
			r := c.diff.reported()
			if r.tracked {
				fi.Tracked++
			} else {
				fi.Hashed++
			}
			fi.Detection = append(fi.Detection, RegionDetection{Name: c.name, Tracked: r.tracked, Why: r.why.String(), Misses: r.misses})
		}
		sort.Slice(fi.Detection, func(i, j int) bool { return fi.Detection[i].Name < fi.Detection[j].Name })
	}
	return fi, nil
}

// WriterActive reports whether a writer holds the checkpoint file at path (its lock on
// the data file). It never takes the lock away from a writer.
func WriterActive(path string) (bool, error) {
	return mmapfile.Locked(path)
}

// ReadVersion returns a verified copy of version v (absolute or relative, as in
// Restore) of the checkpoint called name, registered or not, with its description.
// It may run while saves of that checkpoint go on: it returns the bytes of a version
// kept when it was called, or ErrVersion if retention dropped an absolute v meanwhile.
func (f *File) ReadVersion(name string, v int) (buf []byte, vi VersionInfo, err error) {
	if err := f.begin(); err != nil {
		return nil, VersionInfo{}, err
	}
	defer f.end()
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	for attempt := 0; ; attempt++ {
		buf, vi, err, retry := f.readVersionOnce(name, v)
		if !retry || attempt >= maxReadRetries {
			return buf, vi, err
		}
	}
}

// maxReadRetries bounds how often ReadVersion starts again after the version it read
// was dropped underneath it (a save of an unregistered name cannot hold it back).
const maxReadRetries = 100

// readVersionOnce is one attempt of ReadVersion. On a writer, a registered checkpoint's
// lock is held while its version is copied, so retention cannot reuse the slot; for
// anything else a hash mismatch is checked against the index: a version that is no
// longer kept was dropped, not damaged, and a relative v is tried again (retry).
func (f *File) readVersionOnce(name string, v int) (buf []byte, vi VersionInfo, err error, retry bool) {
	if c := f.registered(name); c != nil && !f.ro {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.gone {
			return nil, VersionInfo{}, nil, true // unregistered meanwhile: look again
		}
	}
	s, ver, err := f.lookup(name, v)
	if err != nil {
		return nil, VersionInfo{}, err, false
	}
	buf, err = f.copyOut(s, &ver, len(name))
	if errors.Is(err, errMismatch) {
		if f.ro {
			return nil, ver.info(len(name)), f.mismatch(name, ver.num), false
		}
		if !f.stillKept(name, &ver) {
			if v > 0 {
				return nil, ver.info(len(name)), errf(ErrVersion, "version %d of %q was dropped by retention while it was read", v, name), false
			}
			return nil, ver.info(len(name)), errf(ErrVersion, "version %d of %q was dropped by retention while it was read", v, name), true
		}
		return nil, ver.info(len(name)), errf(ErrCorrupt, "version %d of %q: hash mismatch", ver.num, name), false
	}
	return buf, ver.info(len(name)), err, false
}

// registered returns the registered checkpoint called name, or nil.
func (f *File) registered(name string) *Checkpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.ckpts[name]; s != nil {
		return s.reg
	}
	return nil
}

// lookup resolves version v of the checkpoint called name.
func (f *File) lookup(name string, v int) (*ckptState, version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.ckpts[name]
	if s == nil || s.n() == 0 {
		return nil, version{}, errf(ErrNotFound, "no checkpoint %q in %s", name, f.path)
	}
	ver, err := s.resolve(v)
	return s, ver, err
}

// stillKept reports whether ver is still a kept version of name (a writer's retention
// may have dropped it, and reused its slot, since it was looked up).
func (f *File) stillKept(name string, ver *version) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.ckpts[name]
	if s == nil {
		return false
	}
	cur, err := s.resolve(int(ver.num))
	return err == nil && cur.txn == ver.txn && cur.off == ver.off && cur.hash == ver.hash
}

// Damaged describes a version that failed verification.
type Damaged struct {
	Name    string // the checkpoint
	Version int    // the version that failed its check
	Offset  int64  // where its payload starts in the data file
	Reason  string // what did not check out
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Checkpoints int       // checkpoints with kept versions
	Versions    int       // versions checked
	Bytes       int64     // bytes checked
	Damaged     []Damaged // the versions that failed their check
	Overlaps    []string  // kept versions whose slots overlap (an inconsistent index)
	Recovery    Recovery
}

// OK reports whether everything checked is intact.
func (r *VerifyReport) OK() bool {
	return len(r.Damaged) == 0 && len(r.Overlaps) == 0 && r.Recovery.Invalid == "" && !r.Recovery.TornTail
}

// Verify checks every kept version: its trailer, and its payload against its hash. It
// also reports what recovery dropped when the file was opened and any kept versions
// whose slots overlap. progress, if not nil, is called with the bytes checked so far.
// On a writer it may run while saves go on: a version that retention drops (and whose
// slot it reuses) while it is checked is left out, not reported as damaged.
func (f *File) Verify(progress func(done, total int64)) (rep VerifyReport, err error) {
	if err := f.begin(); err != nil {
		return VerifyReport{}, err
	}
	defer f.end()
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	items, total := f.keptVersions()
	rep = VerifyReport{Recovery: f.recovered}
	names := map[string]bool{}
	var done int64
	kept := items[:0]
	for i := range items {
		it := &items[i]
		err := f.checkVersion(&it.v, len(it.name))
		if err == nil && it.v.delta() {
			// A delta reads blocks of the versions before it: check those it reads.
			err = f.checkReads(it.name, &it.v)
		}
		if err != nil && !f.ro && !f.stillKept(it.name, &it.v) {
			continue // dropped by retention while it was checked
		}
		kept = append(kept, *it)
		names[it.name] = true
		rep.Versions++
		rep.Bytes += it.v.length
		if err != nil {
			rep.Damaged = append(rep.Damaged, Damaged{Name: it.name, Version: int(it.v.num), Offset: it.v.off, Reason: err.Error()})
		}
		done += it.v.length
		if progress != nil {
			progress(done, total)
		}
	}
	items = kept
	rep.Checkpoints = len(names)
	sort.Slice(items, func(i, j int) bool { return items[i].v.off < items[j].v.off })
	for i := 1; i < len(items); i++ {
		a, b := &items[i-1], &items[i]
		if a.v.off+a.v.size > b.v.off {
			rep.Overlaps = append(rep.Overlaps, fmt.Sprintf("%q@%d [%d,%d) overlaps %q@%d [%d,%d)",
				a.name, a.v.num, a.v.off, a.v.off+a.v.size, b.name, b.v.num, b.v.off, b.v.off+b.v.size))
		}
	}
	return rep, nil
}

// namedVersion is a kept version with its checkpoint's name.
type namedVersion struct {
	name string
	v    version
}

// keptVersions lists every kept version, by checkpoint id, and their total length.
func (f *File) keptVersions() (items []namedVersion, total int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range sortedStates(f.byID) {
		for i := 0; i < s.n(); i++ {
			v := s.at(i)
			items = append(items, namedVersion{s.name, v})
			total += v.length
		}
	}
	return items, total
}

// usedEnd is the end of the last slot in use: the allocator's frontier for a writer; for
// a reader (which keeps no free-space map) the end of the highest kept slot. Caller
// holds f.mu.
func (f *File) usedEnd() int64 {
	if !f.ro {
		return f.alloc.end
	}
	end := int64(slot.HeaderSize)
	for _, s := range f.byID {
		for _, rec := range s.recs[s.head:] {
			end = max(end, f.slotOf(rec, len(s.name)).end)
		}
	}
	return end
}

var errMismatch = errors.New("hash mismatch")

// copyOut copies version v of s out of the mapping and verifies the copy.
func (f *File) copyOut(s *ckptState, v *version, nameLen int) (buf []byte, err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data := f.data.Bytes()
	if end := v.off + v.footprint(nameLen); end > int64(len(data)) || v.off < slot.HeaderSize {
		return nil, errf(ErrCorrupt, "version %d lies beyond the end of the data file", v.num)
	}
	buf = make([]byte, v.length)
	if v.blocks {
		// A chain that does not read back is damaged, or was dropped (and its slots
		// reused) by a writer since this File looked it up: the callers tell which, as
		// for a hash mismatch.
		chain, err := f.chainOf(s, v)
		if err == nil {
			err = f.readBlocks(chain, nameLen, buf)
		}
		if errors.Is(err, ErrCorrupt) {
			return nil, fmt.Errorf("%w: %v", errMismatch, err)
		}
		if err != nil {
			return nil, err
		}
		return buf, nil
	}
	copy(buf, data[v.off:v.off+v.length])
	if crc.Payload(buf) != v.hash {
		return nil, errMismatch
	}
	return buf, nil
}

// checkReads verifies every block version v of name reads, along its chain, and its
// block map against its hash.
func (f *File) checkReads(name string, v *version) (err error) {
	defer catch(&err)
	f.mu.Lock()
	s := f.ckpts[name]
	f.mu.Unlock()
	if s == nil {
		return errf(ErrNotFound, "no checkpoint %q", name)
	}
	p, err := f.planBlocks(s, v, len(name))
	if err != nil {
		return err
	}
	if p.check(f.data.Bytes()) != nil {
		return errf(ErrCorrupt, "version %d: a block it reads does not match its hash", v.num)
	}
	return nil
}
