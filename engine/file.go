package engine

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ckp-go/ckp/dirty"
	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/internal/copier"
	"github.com/ckp-go/ckp/internal/slot"
	"github.com/ckp-go/ckp/mmapfile"
	"github.com/ckp-go/ckp/remote"
)

// File is an open checkpoint file: the data file at its path and the index file beside
// it (path + ".idx"). Its methods, and those of its Checkpoints, are safe for concurrent
// use.
type File struct {
	path, idxPath string
	opts          Options
	ro            bool
	data          *mmapfile.File
	idx           *mmapfile.File
	fileID        [16]byte
	seed          uint32 // trailer CRC seed
	bootID        [16]byte
	session       uint64 // this writer's random id in its trailers (never 0)
	blockShift    uint8  // log2 of Options.BlockSize
	format        uint32 // the data file's format version
	pool          *copier.Pool
	clock         clock
	tier          *remote.Tier // the remote tier (package remote), nil without Options.Remote

	opMu sync.RWMutex // every operation holds it shared; Close holds it exclusively

	closed      atomic.Bool  // set once, under mu, by Close (or by a failed compaction)
	compactDue  atomic.Bool  // the index holds enough dead records to compact
	heldTooMuch atomic.Bool  // held-back slots outweigh the kept data: sync to free them
	busy        atomic.Int32 // large saves running (they want every core)

	mu      sync.Mutex // guards everything below
	ckpts   map[string]*ckptState
	byID    map[uint32]*ckptState
	nextID  uint32
	nreg    int           // registered checkpoints
	huge    bool          // the data mapping asks for 2 MiB folios
	regList []*Checkpoint // the registered checkpoints in id order (appended to or replaced, never modified)
	// regNames caches registeredNames for the regList of regNamesOf checkpoints that
	// starts at regNamesFor.
	regNames    []string
	regNamesOf  int
	regNamesFor **Checkpoint
	regStale    bool // regList must be rebuilt (see registeredList)
	nhuge       int  // registered regions of slot.HugeAlign bytes or more
	alloc       allocator
	nextTxn     uint64
	saveSeq     uint64 // saves allocated so far (SyncEvery counts them)
	log         logState
	live        int64 // records a compaction would keep (versions and names)
	liveBytes   int64 // bytes of the kept versions' slots

	unsynced []extent // data written by published saves not yet covered by a durable point
	pubSeq   uint64   // bumped by every publish
	dirty    bool     // something was published since the last durable point

	syncMu   sync.Mutex // one durable point at a time
	idxSync  *indexSyncer
	syncBuf  []extent // the syncer's snapshot of unsynced
	stopBg   chan struct{}
	bgDone   sync.WaitGroup
	pf       *prefaulter
	batchBuf copier.Batch // the batch of the save in progress (guarded by batchMu)
	batchMu  sync.Mutex
	recBuf   []index.Record // records of the transaction being published (guarded by mu)
	pins     pins           // slots the remote tier reads (guarded by mu)

	// hostMu is held shared by the remote tier's reads of the data mapping
	// (Host.ReadAt) and exclusively by Close before it unmaps.
	hostMu   sync.RWMutex
	unmapped bool

	// replayLeft is, while recovery replays the index, how many records are left to
	// replay (ckptState.grow sizes a busy checkpoint's list with it); 0 otherwise.
	replayLeft int64

	diff diffFile // differential saves (detect.go)

	// Facts from recovery, for tools.
	recovered   Recovery
	lastSession *SessionInfo
	settled     settled // what Open flushed for a writer that died before claiming it
}

// settled is what settle flushed: the data slots (or the whole data file) and whether
// it flushed the index.
type settled struct {
	slots        int
	whole, index bool
}

// logState is the writer's position in the index file.
type logState struct {
	pos     int64  // byte offset of the next record
	crc     uint32 // chain CRC of the last record
	synced  int64  // byte offset below which the index is durable
	durable int64  // records whose data is durable (coverage)
	gen     uint64
	records int64 // records in the log
}

// Recovery reports what Open found and dropped.
type Recovery struct {
	// Records is the number of committed index records replayed.
	Records int64
	// DroppedRecords counts index records after the valid, committed prefix: a torn
	// tail, an unfinished transaction, or records after damage.
	DroppedRecords int64
	// TornTail is true when non-zero bytes followed the valid records.
	TornTail bool
	// Unfinished counts valid records of a transaction that has no commit yet: a save
	// that a writer had not finished (or was killed in).
	Unfinished int64
	// Verified counts versions whose data was checked at open because the machine
	// rebooted since they were written and no durable point covered them.
	Verified int
	// DroppedTxns counts transactions dropped because their data did not verify.
	DroppedTxns int
	// Invalid describes the first record that was well-formed but inconsistent (and
	// was dropped with everything after it), if any.
	Invalid string
	// StoreSkipped lists, with a remote tier, the committed versions of the store that
	// Open could not bring in on a new node because they do not check out (damaged or
	// gone), newest first: it brought in the newest one that did.
	StoreSkipped []StoreDamage
}

// Open opens the checkpoint file at path, creating it (and its index file) if it does
// not exist. A nil opts means the defaults. A second Open of a file that is open for
// writing, in this process or another, returns ErrLocked; a file that is not a ckp file
// returns ErrCorrupt and is left untouched.
func Open(path string, opts *Options) (*File, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	f := &File{
		path:    path,
		idxPath: path + ".idx",
		opts:    o,
		ro:      o.ReadOnly,
		ckpts:   make(map[string]*ckptState),
		byID:    make(map[uint32]*ckptState),
		bootID:  bootID(),
		clock:   newClock(),
	}
	if o.bootID != nil {
		f.bootID = *o.bootID
	}
	f.blockShift = defaultBlockShift
	if o.BlockSize != 0 {
		f.blockShift = uint8(bits.TrailingZeros(uint(o.BlockSize)))
	}
	if err := f.open(); err != nil {
		f.closeFiles()
		return nil, err
	}
	f.pool = copier.NewPool(o.Workers)
	if !f.ro {
		f.stopBg = make(chan struct{})
		if !o.NoPrefault {
			f.pf = newPrefaulter(f)
			f.bgDone.Add(1)
			go f.pf.loop()
		}
		if o.Sync.kind == syncInterval {
			f.bgDone.Add(1)
			go f.intervalSyncer(o.Sync.d)
		}
		if o.Sync.kind == syncAlways || o.Sync.kind == syncEvery {
			f.idxSync = &indexSyncer{req: make(chan [2]int64), done: make(chan error)}
			f.bgDone.Add(1)
			go f.runIndexSyncer()
		}
	}
	if o.Remote != nil { // remote tier: reconcile with the store, start the uploader
		if err := f.openRemote(); err != nil {
			if f.stopBg != nil {
				close(f.stopBg)
				f.bgDone.Wait()
			}
			f.closeFiles()
			return nil, err
		}
	}
	return f, nil
}

func (f *File) open() (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	mo := mmapfile.Options{
		ReadOnly:     f.ro,
		Create:       !f.ro,
		Perm:         f.opts.Perm,
		MaxSize:      f.opts.MaxSize,
		FirstReserve: f.opts.firstReserve,
		Chunk:        f.opts.ChunkSize,
		HugePages:    false, // set when a large region is registered (see hugeFolios)
	}
	f.data, err = mmapfile.Open(f.path, mo)
	if err != nil {
		return openErr(f.path, err)
	}
	if !f.ro {
		if err := f.data.TryLock(); err != nil {
			if errors.Is(err, mmapfile.ErrLocked) {
				return fmt.Errorf("%w: %s", ErrLocked, f.path)
			}
			return err
		}
	}
	hdr := f.data.Bytes()
	fresh := len(hdr) == 0 || (len(hdr) >= slot.HeaderLen && allZero(hdr[:slot.HeaderLen]))
	idxInfo, idxErr := os.Stat(f.idxPath)
	if fresh {
		if idxErr == nil && idxInfo.Size() > index.HeaderSize {
			if !f.indexHasNoRecords() {
				return errf(ErrCorrupt, "%s is empty but its index %s holds records: the data file was lost or truncated", f.path, f.idxPath)
			}
		} else if idxErr != nil && !errors.Is(idxErr, fs.ErrNotExist) {
			return fmt.Errorf("ckp: %w", idxErr)
		}
		if f.ro {
			return errf(ErrCorrupt, "%s is not an initialised ckp file", f.path)
		}
		return f.create()
	}
	h, err := slot.DecodeHeader(hdr)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, f.path)
	}
	f.fileID = h.FileID
	f.seed = slot.Seed(h.FileID)
	f.format = h.Version
	if idxErr != nil {
		if errors.Is(idxErr, fs.ErrNotExist) {
			return errf(ErrCorrupt, "index file %s is missing (rebuild it with `ckp repair %s`)", f.idxPath, f.path)
		}
		return fmt.Errorf("ckp: %w", idxErr)
	}
	f.idx, err = mmapfile.Open(f.idxPath, f.indexOptions())
	if err != nil {
		return openErr(f.idxPath, err)
	}
	ih, seed, err := index.DecodeHeader(f.idx.Bytes())
	if err != nil {
		return errf(ErrCorrupt, "%s: %v", f.idxPath, err)
	}
	if ih.FileID != f.fileID {
		return errf(ErrCorrupt, "%s belongs to another data file than %s", f.idxPath, f.path)
	}
	f.log.gen = ih.Generation
	if err := f.recover(seed); err != nil {
		return err
	}
	if !f.ro {
		if err := f.settle(); err != nil {
			return err
		}
		if f.opts.Differential && f.format < 2 {
			// Versions stored by blocks need format 2: a build that reads only
			// version 1 must refuse the file rather than misread them.
			if err := f.upgradeFormat(h); err != nil {
				return err
			}
		}
		return f.beginSession()
	}
	// A writer may have grown the data file and published versions in it since we
	// mapped it: take its size now that the index is read (it never shrinks).
	if _, err := f.data.Refresh(); err != nil {
		return fileErr("stat", f.path, err)
	}
	return nil
}

// settle makes the log durable when it goes past the last durable claim: the writer
// that wrote it died before a durable point (same boot: its writes are in the page
// cache, but not necessarily on the disk). Without this, the next durable point would
// flush only what this writer writes and yet claim everything before it, and slots
// whose drop never reached the disk could be reused.
//
// The data it flushes is the slots of the kept versions above the claim (none after a
// Close, the last save's after SyncAlways), never the whole file: that would also write
// back the pages the pre-faulter dirtied ahead of the frontier, a tenth of a second of
// a restart after a 64 MiB save. The index is flushed whole (it holds the drops).
func (f *File) settle() error {
	if f.log.durable >= f.log.records {
		return nil
	}
	var ranges []extent
	f.unclaimed(f.log.durable, func(v version, _ int) { ranges = append(ranges, v.slot()) })
	f.settled = settled{slots: len(ranges), whole: len(ranges) > maxRanges || f.opts.syncWhole, index: true}
	if err := f.syncData(ranges, false); err != nil {
		return err
	}
	if err := f.idx.Sync(); err != nil {
		return fmt.Errorf("ckp: sync %s: %w", f.idxPath, err)
	}
	covered := f.log.records
	if err := f.appendMark(covered); err != nil {
		return err
	}
	f.log.durable = max(f.log.durable, covered)
	return nil
}

// indexHasNoRecords reports whether the index file at idxPath holds a header and no
// record (what a crash during creation leaves).
func (f *File) indexHasNoRecords() bool {
	b, err := os.ReadFile(f.idxPath)
	if err != nil || len(b) < index.HeaderSize {
		return false
	}
	_, seed, err := index.DecodeHeader(b)
	if err != nil {
		return false
	}
	res, _ := index.Scan(b[index.HeaderSize:], seed, nil)
	return res.Records == 0 && !res.Torn
}

// create initialises a new pair of files: the index first, then the data header, so a
// crash in between leaves a state that the next Open recognises as fresh.
func (f *File) create() error {
	if _, err := rand.Read(f.fileID[:]); err != nil {
		return fmt.Errorf("ckp: random file id: %w", err)
	}
	f.seed = slot.Seed(f.fileID)
	now := time.Now().UnixNano()
	if err := index.WriteFile(f.idxPath, index.Header{FileID: f.fileID, Created: now}, nil, f.opts.Perm, true); err != nil {
		return err
	}
	var err error
	f.idx, err = mmapfile.Open(f.idxPath, f.indexOptions())
	if err != nil {
		return openErr(f.idxPath, err)
	}
	_, seed, err := index.DecodeHeader(f.idx.Bytes())
	if err != nil {
		return errf(ErrCorrupt, "%s: %v", f.idxPath, err)
	}
	if err := f.data.Grow(slot.HeaderSize); err != nil {
		return fileErr("grow", f.path, err)
	}
	// Format 1 unless versions stored by blocks may be written: a build that reads only
	// format 1 reads this file as long as it holds none.
	f.format = 1
	if f.opts.Differential {
		f.format = FormatVersion
	}
	// Written, not stored through the mapping: the first fault on a fresh file reads
	// ahead (read_ahead_kb, 8 MiB on some disks), which allocates and zeroes the
	// whole first chunk, a millisecond or two of every Open that creates a file.
	var hdr [slot.HeaderLen]byte
	slot.EncodeHeader(hdr[:], slot.Header{FileID: f.fileID, Created: now, Version: f.format})
	if _, err := f.data.OSFile().WriteAt(hdr[:], 0); err != nil {
		return fileErr("write", f.path, err)
	}
	if err := f.data.Sync(); err != nil {
		return fmt.Errorf("ckp: sync %s: %w", f.path, err)
	}
	if err := index.SyncDir(f.path); err != nil {
		return err
	}
	f.log = logState{pos: index.HeaderSize, crc: seed, synced: index.HeaderSize}
	f.alloc.reset(slot.HeaderSize, nil)
	f.nextTxn = 1
	f.nextID = 1
	return f.beginSession()
}

// beginSession appends the writer's session record.
func (f *File) beginSession() error {
	var r8 [8]byte
	if _, err := rand.Read(r8[:]); err != nil {
		return fmt.Errorf("ckp: random session id: %w", err)
	}
	f.session = binary.LittleEndian.Uint64(r8[:])&slot.SessionMask | 1
	return f.appendSession(time.Now().UnixNano())
}

// appendSession appends the writer's SESSION record, opened at opened (Unix ns): at
// Open, and again when its flags change (a write the kernel did not report), so that
// readers see them. The caller holds f.mu or is alone with the File.
func (f *File) appendSession(opened int64) error {
	r := f.sessionRecord(opened)
	before := f.log.records
	if err := f.appendRecords([]index.Record{r}); err != nil {
		return err
	}
	if f.log.durable == before { // a session record holds no data
		f.log.durable = f.log.records
	}
	f.lastSession = sessionInfo(index.SessionOf(&r))
	return nil
}

// appendRecords writes records at the end of the index (the caller holds f.mu or is
// alone) and advances the log. It grows the index file as needed.
func (f *File) appendRecords(recs []index.Record) error {
	need := f.log.pos + int64(len(recs))*index.RecordSize
	if need > f.idx.Size() {
		if err := f.idx.Grow(need); err != nil {
			return fileErr("grow", f.idxPath, err)
		}
	}
	b := f.idx.Bytes()
	pos, c := f.log.pos, f.log.crc
	for i := range recs {
		c = index.Encode(b[pos:], &recs[i], c)
		pos += index.RecordSize
	}
	f.log.pos, f.log.crc = pos, c
	f.log.records += int64(len(recs))
	return nil
}

// Close makes every saved version durable, unregisters every checkpoint, stops the
// background goroutines and releases the lock. Afterwards every method of the File and
// of its Checkpoints returns ErrClosed. Closing twice returns ErrClosed.
func (f *File) Close() error {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	f.mu.Lock()
	if f.closed.Load() {
		f.mu.Unlock()
		return ErrClosed
	}
	f.closed.Store(true)
	for _, s := range f.ckpts {
		if s.reg != nil {
			s.reg.gone = true
			s.reg.diff.close()
			s.reg = nil
		}
	}
	f.nreg = 0
	f.nhuge = 0
	f.regList = nil
	f.regStale = false
	f.mu.Unlock()
	if f.stopBg != nil {
		close(f.stopBg)
		f.bgDone.Wait()
	}
	// Remote tier: wait for the queued uploads (up to Remote.Timeout), stop the uploader.
	rerr := f.closeRemote()
	var err error
	if !f.ro {
		err = f.syncAll()
	}
	if err == nil {
		err = rerr
	}
	if rerr := f.closeFiles(); err == nil {
		err = rerr
	}
	return err
}

// closeFiles unmaps and closes both files (and so drops the lock).
func (f *File) closeFiles() error {
	var err error
	if f.pool != nil {
		f.pool.Close()
	}
	if f.idx != nil {
		err = f.idx.Close()
	}
	if f.data != nil {
		if cerr := f.data.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Path returns the data file's path as given to Open.
func (f *File) Path() string { return f.path }

// IndexPath returns the index file's path.
func (f *File) IndexPath() string { return f.idxPath }

// Recovered returns what Open found when it read the index: records replayed and
// anything dropped.
func (f *File) Recovered() Recovery { return f.recovered }

// begin starts an operation: it holds the File open until end.
func (f *File) begin() error {
	f.opMu.RLock()
	if f.closed.Load() {
		f.opMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (f *File) end() { f.opMu.RUnlock() }

// bootID is the running kernel's boot id, read once per process: it cannot change
// while the process runs (short of a process checkpointed and restored across a
// reboot, which an open File did not survive before either), and reading /proc cost
// 0.1 ms of every Open. A failed read gives zero, which makes recovery check more.
var bootID = sync.OnceValue(readBootID)

// readBootID returns the running kernel's boot id (zero where there is none): a
// changed boot id tells recovery that the page cache may have lost writes.
func readBootID() [16]byte {
	var id [16]byte
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return id
	}
	b = bytes.TrimSpace(bytes.ReplaceAll(b, []byte("-"), nil))
	if len(b) != 32 {
		return id
	}
	for i := 0; i < 16; i++ {
		var v byte
		for _, c := range b[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= c - '0'
			case c >= 'a' && c <= 'f':
				v |= c - 'a' + 10
			case c >= 'A' && c <= 'F':
				v |= c - 'A' + 10
			}
		}
		id[i] = v
	}
	return id
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// sortedStates returns the states in id order.
func sortedStates(m map[uint32]*ckptState) []*ckptState {
	s := make([]*ckptState, 0, len(m))
	for _, st := range m {
		s = append(s, st)
	}
	sort.Slice(s, func(i, j int) bool { return s[i].id < s[j].id })
	return s
}

// clock gives save times cheaply: the wall time at Open plus the monotonic time since,
// one clock read per save instead of two. It drifts from the wall clock only by what
// NTP slews during a run.
type clock struct{ base time.Time }

func newClock() clock { return clock{time.Now()} }

// now returns the current time in Unix nanoseconds.
func (c clock) now() int64 { return c.base.UnixNano() + int64(time.Since(c.base)) }

// indexOptions map the index file: it exists already (written whole, then renamed in).
func (f *File) indexOptions() mmapfile.Options {
	first := int64(indexFirstReserve)
	if f.opts.firstReserve > 0 {
		first = f.opts.firstReserve
	}
	return mmapfile.Options{ReadOnly: f.ro, Perm: f.opts.Perm, MaxSize: indexMaxSize, FirstReserve: first, Chunk: indexChunk}
}

// openErr is the error for a file that could not be opened and mapped: one larger than
// the limit asked for is a bad option (ErrInvalid), not a full file.
func openErr(path string, err error) error {
	if errors.Is(err, mmapfile.ErrTooLarge) {
		return fmt.Errorf("%w: %s is larger than Options.MaxSize: %w", ErrInvalid, path, err)
	}
	return fileErr("open", path, err)
}

// upgradeFormat rewrites the data header with the current format version, durably.
func (f *File) upgradeFormat(h slot.Header) error {
	h.Version = FormatVersion
	slot.EncodeHeader(f.data.Bytes(), h)
	if err := f.data.SyncRange(0, slot.HeaderSize); err != nil {
		return fileErr("sync", f.path, err)
	}
	f.format = FormatVersion
	return nil
}

// sessionFlags says in the session record how this writer saves large regions.
func (f *File) sessionFlags() uint32 {
	if !f.opts.Differential {
		return 0
	}
	fl := uint32(index.SessionDifferential) | uint32(f.blockShift)<<8
	if f.tracking() == "" {
		fl |= index.SessionTracking
	}
	if m := f.diff.misses.Load(); m > 0 {
		fl |= index.SessionMissed | uint32(min(m, index.SessionMissesMax))<<16
	}
	return fl
}

// tracking returns "" when differential saves can use the kernel's written-page
// tracking, else why not.
func (f *File) tracking() string {
	if f.opts.NoTracking {
		return "Options.NoTracking"
	}
	if err := dirty.Available(); err != nil {
		return err.Error()
	}
	return ""
}
