package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/remote"
	"github.com/ckp-go/ckp/store"
)

// The remote tier lives in package remote; here is its face on a File: the options,
// the calls that reach it (Flush, JobVersion, RestoreJob) and the tools that read a
// store. docs/REMOTE.md describes every key and byte in the store, the commit protocol
// and what each failure leaves behind.

// Remote configures the remote tier of a File (Options.Remote): package remote's
// Config. A nil Remote means no remote tier.
type Remote = remote.Config

// Defaults of the remote tier.
const (
	// DefaultMaxPending is Remote.MaxPending's default: 1 GiB.
	DefaultMaxPending = remote.DefaultMaxPending
	// DefaultRemoteTimeout is Remote.Timeout's default.
	DefaultRemoteTimeout = remote.DefaultTimeout
)

// ErrRemote: the remote tier failed. A permanent failure of an upload (denied access, a
// missing bucket, a store that cannot create objects atomically) is returned, wrapped
// in ErrRemote, by the next Save, SaveAll, Flush or Close; Open returns it when the
// store cannot be asked what it holds. The error also wraps the store's error, so
// errors.Is(err, store.ErrDenied) and the like tell the cause. The local file is
// never affected: every version saved locally stays.
var ErrRemote = base.ErrRemote

// ErrRestart: this rank's life of the job is over (docs/REMOTE.md, "The job
// protocol"): the job went on from a version this rank is past, because another rank
// restarted after versions completed, or this rank saved in a job of several ranks
// without RestoreJob. Nothing this process uploads can count any more; the program
// restarts the rank with RestoreJob. Returned by Save, SaveAll, Flush and Close; it
// wraps ErrRemote.
var ErrRestart = remote.ErrRestart

// Types of the store inspection tools (package remote).
type (
	// JobStatus describes what the ranks of a job committed in a store (InspectJob).
	JobStatus = remote.JobStatus
	// StoreVersion describes a version committed in a store (StoreVersions).
	StoreVersion = remote.StoreVersion
	// StoreDamage is a committed version of a store that failed verification.
	StoreDamage = remote.StoreDamage
	// StoreReport is the result of VerifyStore.
	StoreReport = remote.StoreReport
)

// openRemote starts the remote tier of a writer that Open has just opened: it brings
// the local file in line with the store and starts the uploader.
func (f *File) openRemote() error {
	t, err := remote.Open(context.Background(), *f.opts.remote, f.host())
	if err != nil {
		return err
	}
	f.tier = t
	return nil
}

// closeRemote ends the remote tier at Close, after the background goroutines stop and
// before the files are released: it waits up to Remote.Timeout for the queued uploads
// and stops the uploader, which then reads nothing more.
func (f *File) closeRemote() error {
	if f.tier == nil {
		return nil
	}
	err := f.tier.Close()
	f.hostMu.Lock()
	f.unmapped = true
	f.hostMu.Unlock()
	return err
}

// admitRemote is asked by a save before it allocates anything (see remote.Tier.Admit):
// the bytes the save will queue are those of the versions the Every rule selects: a
// region's length, or for a differential save the blocks it stores (prepareDiff has
// run). The caller holds every c.mu, so the versions the save will get are known.
func (f *File) admitRemote(cs []*Checkpoint) error {
	if f.tier == nil {
		return nil
	}
	s := f.tier.Settings()
	var n int64
	for _, c := range cs {
		if !s.Selected(c.st.next) {
			continue
		}
		if c.slot.blocks {
			n += c.slot.lay.Payload
		} else {
			n += int64(len(c.region))
		}
	}
	return f.tier.Admit(n)
}

// publishRemote hands the tier the versions of the transaction just published that the
// Every rule selects, each pinned. Caller is publish, under f.mu.
func (f *File) publishRemote(cs []*Checkpoint, now int64) {
	if f.tier == nil {
		return
	}
	s := f.tier.Settings()
	var vs []remote.Sealed
	for _, c := range cs {
		if !s.Selected(c.slot.ver) {
			continue
		}
		v, ok := c.st.newest()
		if !ok || v.num != c.slot.ver {
			continue
		}
		id, err := f.pinVersion(c.st, v)
		if err != nil {
			continue // a chain that does not read back: the version is not uploaded
		}
		sv := sealedOf(c.st, &v, uint32(len(cs)))
		sv.Pin = id
		vs = append(vs, sv)
	}
	if len(vs) > 0 && !f.tier.Published(vs, f.registeredNames()) {
		for _, v := range vs {
			f.unpinLocked(v.Pin)
		}
	}
}

// sealedOf describes version v of s for the tier.
func sealedOf(s *ckptState, v *version, txnSize uint32) remote.Sealed {
	sv := remote.Sealed{Name: s.name, Num: v.num, Off: v.off, Length: v.length, Payload: v.length,
		Hash: v.hash, Time: v.time, Txn: v.txn, TxnSize: txnSize}
	if v.blocks {
		sv.Shift, sv.Payload = v.lay.Shift, v.lay.Payload
	}
	return sv
}

// Flush waits until every version saved so far that the Every rule uploads is
// committed in the store, then applies the store's retention (Remote.Keep). It returns
// a permanent upload failure not reported yet (ErrRemote), or an error wrapping
// ErrRemote and the context's error if ctx ends first (the uploads go on). Without a
// remote tier it returns nil.
func (f *File) Flush(ctx context.Context) error {
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	if f.tier == nil {
		return nil
	}
	return f.tier.Flush(ctx)
}

// JobVersion returns the job's restart point: the newest version complete on every rank
// of the job in its current life, the version every rank restarts from with
// RestoreJob. It reads a few objects of the store, whatever the number of ranks.
// ErrNotFound when the job has no such version (it starts over); ErrInvalid without a
// remote tier.
//
// A version is complete on a rank when every checkpoint registered on the rank has it
// committed in the store, whatever mix of Save and SaveAll wrote them (docs/REMOTE.md):
// a rank that registers a checkpoint it does not save at every number holds the job
// back.
func (f *File) JobVersion(ctx context.Context) (int, error) {
	_, v, err := f.JobLife(ctx)
	if err == nil && v == 0 {
		s := f.tier.Settings()
		err = errf(ErrNotFound, "no version is complete on every one of the %d rank(s) in %s", s.Ranks(), s.Store())
	}
	return v, err
}

// JobLife returns the job's newest life (docs/REMOTE.md, "The job protocol"; 0 when no
// rank has joined the job yet) and its restart point: the version JobVersion returns,
// or 0 when the job starts over. ErrInvalid without a remote tier.
func (f *File) JobLife(ctx context.Context) (life uint64, version int, err error) {
	if err := f.begin(); err != nil {
		return 0, 0, err
	}
	defer f.end()
	if f.tier == nil {
		return 0, 0, errf(ErrInvalid, "%s has no remote tier", f.path)
	}
	v, life, err := f.tier.JobVersion(ctx)
	return life, int(v), err
}

// RestoreJob restarts this rank of a job: it joins the job's current life (beginning
// the next one when this rank was a member of the newest: docs/REMOTE.md, "The job
// protocol"), restores every registered checkpoint at the life's base, the job's
// restart point, and rewinds to it, so that the next save is numbered one past it on
// every rank. A local copy with the same bytes is used; the others come from the store.
// When the job has no restart point yet, it starts over: every version of the
// registered checkpoints is dropped locally, the regions are left as they are, and the
// next save is version 1. It returns the version restored, 0 when starting over.
//
// Every rank of a job of several ranks calls RestoreJob before its first save (a rank
// that saves without it gets ErrRestart, unless the job starts over); it waits for
// nothing but the store. The checkpoints registered must be those the rank saved at the
// restart point (else ErrCorrupt, and nothing changes).
func (f *File) RestoreJob(ctx context.Context) (int, error) {
	if err := f.begin(); err != nil {
		return 0, err
	}
	defer f.end()
	if f.tier == nil {
		return 0, errf(ErrInvalid, "RestoreJob: %s has no remote tier", f.path)
	}
	cs := f.lockRegistered()
	defer unlockAll(cs)
	defer f.largeRestore(cs)() // (restoreAny marks its own call)
	return f.restoreJob(ctx, cs)
}

// restoreJob is RestoreJob with every registered checkpoint locked (cs).
func (f *File) restoreJob(ctx context.Context, cs []*Checkpoint) (int, error) {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.name
	}
	sort.Strings(names)
	r, err := f.tier.Join(ctx, names)
	if err != nil {
		return 0, err
	}
	if len(cs) == 0 {
		return int(r.Version), nil
	}
	if r.Version == 0 {
		return 0, f.rewind(cs, make([]uint64, len(cs)), nil)
	}
	in := map[string]remote.Incoming{}
	for i, name := range names {
		in[name] = r.In[i]
	}
	nums := make([]uint64, len(cs))
	for i := range cs {
		nums[i] = r.Version
	}
	lookup := func(_ context.Context, names []string, _ []uint64) ([]remote.Incoming, []error) {
		ins := make([]remote.Incoming, len(names))
		for i, name := range names {
			ins[i] = in[name]
		}
		return ins, make([]error, len(names))
	}
	return int(r.Version), f.fetchRestore(ctx, cs, nums, lookup, true, nil, true)
}

// InspectJob lists what every rank of the job in st committed. With ranks 0 the
// number of ranks is read from the manifests.
func InspectJob(ctx context.Context, st store.Store, ranks int) (JobStatus, error) {
	return remote.InspectJob(ctx, st, ranks)
}

// StoreVersions returns every version that rank committed in st, sorted by checkpoint
// name and version (it reads every manifest).
func StoreVersions(ctx context.Context, st store.Store, rank int) ([]StoreVersion, error) {
	return remote.StoreVersions(ctx, st, rank)
}

// ReadStoreVersion returns the bytes of version v (absolute, or 0, -1, ... counted
// back from the newest committed) of the checkpoint called name that rank committed in
// st, checked against their hashes, with its description.
func ReadStoreVersion(ctx context.Context, st store.Store, rank int, name string, v int) ([]byte, StoreVersion, error) {
	return remote.ReadStoreVersion(ctx, st, rank, name, v)
}

// VerifyStore checks every version rank committed in st: its manifest, and its bytes
// (every data object it names must exist and hold bytes that match the hashes).
// progress, if not nil, is called with the bytes checked so far and the total.
func VerifyStore(ctx context.Context, st store.Store, rank int, progress func(done, total int64)) (StoreReport, error) {
	return remote.VerifyStore(ctx, st, rank, progress)
}

// Pull writes version v of every checkpoint that rank committed in st into a new
// checkpoint file at path (opened with opts, which must not have a Remote), keeping
// the version numbers: v is absolute, or 0 for the newest version committed for every
// checkpoint of the rank. It returns the version pulled. The file must not exist.
func Pull(ctx context.Context, st store.Store, rank int, path string, v int, opts *Options) (int, error) {
	if opts != nil && opts.Remote != nil {
		return 0, errf(ErrInvalid, "Pull: opts has a Remote")
	}
	if v < 0 || rank < 0 {
		return 0, errf(ErrInvalid, "Pull: version %d of rank %d", v, rank)
	}
	s, err := (&Remote{Store: st, Rank: rank, Ranks: rank + 1}).Resolve(0)
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(path); err == nil {
		return 0, errf(ErrInvalid, "Pull: %s exists", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("ckp: %w", err)
	}
	f, err := Open(path, opts)
	if err != nil {
		return 0, err
	}
	got, err := remote.Pull(ctx, s, f.host(), v)
	if err != nil {
		f.Close()
		os.Remove(path)
		os.Remove(path + ".idx")
		return 0, err
	}
	return got, f.Close()
}
