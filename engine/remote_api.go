package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/ckp-go/ckp/store"
)

// openRemote starts the remote tier of a writer that Open has just opened (hook in
// Open): it brings the local file in line with the store (reconcile) and starts the
// uploader.
func (f *File) openRemote(r *Remote) error {
	cfg, err := r.config(f.opts.KeepVersions)
	if err != nil {
		return err
	}
	rm := newRemote(f, cfg)
	ctx, cancel := context.WithTimeout(rm.ctx, cfg.timeout)
	defer cancel()
	if err := rm.reconcile(ctx); err != nil {
		rm.cancel(err)
		return err
	}
	f.rm = rm
	rm.start()
	return nil
}

// closeRemote ends the remote tier at Close (hook in Close, after the background
// goroutines stop and before the files are released): it waits up to Remote.Timeout
// for the queued uploads and stops the uploader.
func (f *File) closeRemote() error {
	if f.rm == nil {
		return nil
	}
	return f.rm.stop()
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
	if f.rm == nil {
		return nil
	}
	return f.rm.flush(ctx)
}

// JobVersion returns the newest absolute version that every rank 0..Ranks-1 of the job
// has committed in the store for every one of its checkpoints: a restart of every rank
// at RestoreAll(JobVersion) (or RestoreJob) gives a consistent job. It reads the store
// (a listing of every rank's manifests, and a manifest per rank). ErrNotFound when no
// such version exists; ErrInvalid without a remote tier.
//
// "Every one of its checkpoints" means every checkpoint that the Save or SaveAll which
// wrote the version uploaded with that number (docs/REMOTE.md): a SaveAll whose
// uploads a crash cut short does not count, while a checkpoint a rank no longer saves
// does not hold the job version back. Ranks that save their checkpoints together
// (SaveAll), as jobs do, number them alike.
func (f *File) JobVersion(ctx context.Context) (int, error) {
	if err := f.begin(); err != nil {
		return 0, err
	}
	defer f.end()
	if f.rm == nil {
		return 0, errf(ErrInvalid, "JobVersion: %s has no remote tier", f.path)
	}
	job, err := listJob(ctx, f.rm.st)
	if err != nil {
		return 0, remoteErr(f.rm.st, err, "list the job's versions")
	}
	v, ok, err := jobVersionOf(ctx, job, f.rm.cfg.ranks, storeMembers(f.rm.st, nil))
	if err != nil {
		return 0, remoteErr(f.rm.st, err, "read the job's manifests")
	}
	if !ok {
		return 0, errf(ErrNotFound, "no version is committed by every one of the %d rank(s) in %s", f.rm.cfg.ranks, f.rm.st)
	}
	return int(v), nil
}

// RestoreJob restarts this rank of a job: it restores every registered checkpoint at
// the job version (see JobVersion) and rewinds to it, so that the next save is
// numbered one past it on every rank that restarts the same way. When the job has no
// version yet (it died before one was committed by every rank), it starts over: every
// version of the registered checkpoints is dropped, locally and from this rank's
// store, the regions are left as they are, and the next save is version 1. It returns
// the version restored, 0 when starting over. In a job of several ranks,
// RestoreAll(JobVersion) does the same when a job version exists.
//
// Every rank of a job calls RestoreJob before its first save; it waits for nothing
// but the store.
func (f *File) RestoreJob(ctx context.Context) (int, error) {
	if err := f.begin(); err != nil {
		return 0, err
	}
	defer f.end()
	if f.rm == nil {
		return 0, errf(ErrInvalid, "RestoreJob: %s has no remote tier", f.path)
	}
	job, err := listJob(ctx, f.rm.st)
	if err != nil {
		return 0, remoteErr(f.rm.st, err, "list the job's versions")
	}
	jv, ok, err := jobVersionOf(ctx, job, f.rm.cfg.ranks, storeMembers(f.rm.st, nil))
	if err != nil {
		return 0, remoteErr(f.rm.st, err, "read the job's manifests")
	}
	cs := f.lockRegistered()
	defer unlockAll(cs)
	if len(cs) == 0 {
		return int(jv), nil
	}
	if !ok {
		return 0, f.rewind(cs, make([]uint64, len(cs)), nil)
	}
	return int(jv), f.remoteRestore(cs, int(jv), nil, true)
}

// Inspecting a store without a local file (the ckp command).

// JobStatus describes what the ranks of a job committed in a store.
type JobStatus struct {
	// Ranks is the number of ranks: as given, or as the manifests say (at least one
	// more than the highest rank that committed anything).
	Ranks int
	// Newest is, per rank, the newest version it committed for every one of its
	// checkpoints; 0 when it has none.
	Newest []int
	// Committed is, per rank, the number of committed versions, all checkpoints
	// together.
	Committed []int
	// Version is the job version (see File.JobVersion); 0 when there is none.
	Version int
}

// InspectJob lists what every rank of the job in st committed. With ranks 0 the
// number of ranks is read from the manifests.
func InspectJob(ctx context.Context, st store.Store, ranks int) (JobStatus, error) {
	job, err := listJob(ctx, st)
	if err != nil {
		return JobStatus{}, remoteErr(st, err, "list the job's versions")
	}
	if ranks <= 0 {
		for r, segs := range job {
			ranks = max(ranks, r+1)
			for seg, vs := range segs {
				if m, err := readManifest(ctx, st, manifestKey(r, seg, vs[len(vs)-1])); err == nil {
					ranks = max(ranks, m.Ranks)
				}
				break
			}
		}
	}
	js := JobStatus{Ranks: ranks, Newest: make([]int, ranks), Committed: make([]int, ranks)}
	members := storeMembers(st, nil)
	for r := 0; r < ranks; r++ {
		v, ok, err := jobVersionOf(ctx, jobListing{0: job[r]}, 1, func(ctx context.Context, _ int, seg string, v uint64) (uint32, error) {
			return members(ctx, r, seg, v)
		})
		if err != nil {
			return js, remoteErr(st, err, "read the manifests of rank %d", r)
		}
		if ok {
			js.Newest[r] = int(v)
		}
		for _, vs := range job[r] {
			js.Committed[r] += len(vs)
		}
	}
	v, ok, err := jobVersionOf(ctx, job, ranks, members)
	if err != nil {
		return js, remoteErr(st, err, "read the job's manifests")
	}
	if ok {
		js.Version = int(v)
	}
	return js, nil
}

// StoreVersion describes a version committed in a store.
type StoreVersion struct {
	Name     string
	Version  int
	Size     int64
	Saved    time.Time
	Hash     uint64   // the payload hash (docs/FORMAT.md)
	Txn      uint64   // the transaction in the writer's local file
	Rank     int      // the rank that committed it
	Manifest string   // the manifest's key
	Objects  []string // the data objects that hold its bytes
}

func storeVersionOf(m *manifest, key string) StoreVersion {
	sv := StoreVersion{Name: m.Name, Version: int(m.Version), Size: m.Length, Saved: time.Unix(0, m.Time),
		Hash: m.Hash, Txn: m.Txn, Rank: m.Rank, Manifest: key}
	for _, e := range m.Extents {
		sv.Objects = append(sv.Objects, e.Key)
	}
	return sv
}

// StoreVersions returns every version that rank committed in st, sorted by checkpoint
// name and version (it reads every manifest).
func StoreVersions(ctx context.Context, st store.Store, rank int) ([]StoreVersion, error) {
	keys, err := rankKeys(ctx, st, rank)
	if err != nil {
		return nil, err
	}
	out := make([]StoreVersion, len(keys))
	err = parallel(ctx, len(keys), 16, func(ctx context.Context, i int) error {
		m, err := readManifest(ctx, st, keys[i])
		if err != nil {
			return err
		}
		out[i] = storeVersionOf(m, keys[i])
		return nil
	})
	if err != nil {
		return nil, remoteErr(st, err, "read the manifests of rank %d", rank)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// rankKeys lists the manifest keys of rank.
func rankKeys(ctx context.Context, st store.Store, rank int) ([]string, error) {
	var objs []store.Object
	err := retry(ctx, 0, func(ctx context.Context) error {
		var err error
		objs, err = st.List(ctx, rankManifests(rank))
		return err
	})
	if err != nil {
		return nil, remoteErr(st, err, "list the versions of rank %d", rank)
	}
	var keys []string
	for _, o := range objs {
		if r, ok := parseManifestKey(o.Key); ok && r.rank == rank {
			keys = append(keys, o.Key)
		}
	}
	return keys, nil
}

// storeLookup finds the manifest of version v (absolute, or 0, -1, ... from the
// newest committed) of name committed by rank.
func storeLookup(ctx context.Context, st store.Store, rank int, name string, v int) (*manifest, string, error) {
	seg := nameSegment(name)
	var objs []store.Object
	err := retry(ctx, 0, func(ctx context.Context) error {
		var err error
		objs, err = st.List(ctx, rankManifests(rank)+seg+"/")
		return err
	})
	if err != nil {
		return nil, "", remoteErr(st, err, "list the versions of %q", name)
	}
	var vs []uint64
	for _, o := range objs {
		if r, ok := parseManifestKey(o.Key); ok && r.rank == rank && r.seg == seg {
			vs = append(vs, r.ver)
		}
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
	if len(vs) == 0 {
		return nil, "", errf(ErrNotFound, "rank %d committed no version of %q in %s", rank, name, st)
	}
	var want uint64
	if v <= 0 {
		i := len(vs) - 1 + v
		if i < 0 {
			return nil, "", errf(ErrVersion, "version %d of %q: only %d committed in %s", v, name, len(vs), st)
		}
		want = vs[i]
	} else {
		want = uint64(v)
		i := sort.Search(len(vs), func(i int) bool { return vs[i] >= want })
		if i == len(vs) || vs[i] != want {
			return nil, "", errf(ErrVersion, "version %d of %q is not committed in %s (committed: %d..%d)", v, name, st, vs[0], vs[len(vs)-1])
		}
	}
	key := manifestKey(rank, seg, want)
	m, err := readManifest(ctx, st, key)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return nil, key, err
		}
		return nil, key, remoteErr(st, err, "read the manifest of version %d of %q", want, name)
	}
	if m.Name != name {
		return nil, key, errf(ErrCorrupt, "%s: manifest %s names %q, not %q", st, key, m.Name, name)
	}
	return m, key, nil
}

// ReadStoreVersion returns the bytes of version v (absolute, or 0, -1, ... counted
// back from the newest committed) of the checkpoint called name that rank committed in
// st, checked against their hashes, with its description.
func ReadStoreVersion(ctx context.Context, st store.Store, rank int, name string, v int) ([]byte, StoreVersion, error) {
	m, key, err := storeLookup(ctx, st, rank, name, v)
	if err != nil {
		return nil, StoreVersion{}, err
	}
	sv := storeVersionOf(m, key)
	buf := make([]byte, m.Length)
	if err := fetchInto(ctx, st, m, buf, nil); err != nil {
		if errors.Is(err, ErrCorrupt) {
			return nil, sv, err
		}
		return nil, sv, remoteErr(st, err, "fetch version %d of %q", m.Version, name)
	}
	return buf, sv, nil
}

// StoreDamage is a committed version of a store that failed verification.
type StoreDamage struct {
	Manifest string
	Name     string // "" when the manifest itself is damaged
	Version  int
	Reason   string
}

// StoreReport is the result of VerifyStore.
type StoreReport struct {
	Versions int   // versions checked
	Bytes    int64 // their bytes
	Damaged  []StoreDamage
}

// OK reports whether everything checked is intact.
func (r *StoreReport) OK() bool { return len(r.Damaged) == 0 }

// VerifyStore checks every version rank committed in st: its manifest, and its bytes
// (every data object it names must exist and hold bytes that match the hashes).
// progress, if not nil, is called with the bytes checked so far and the total.
func VerifyStore(ctx context.Context, st store.Store, rank int, progress func(done, total int64)) (StoreReport, error) {
	var rep StoreReport
	keys, err := rankKeys(ctx, st, rank)
	if err != nil {
		return rep, err
	}
	ms := make([]*manifest, len(keys))
	merr := make([]error, len(keys))
	err = parallel(ctx, len(keys), 16, func(ctx context.Context, i int) error {
		ms[i], merr[i] = readManifest(ctx, st, keys[i])
		if merr[i] != nil && !errors.Is(merr[i], ErrCorrupt) && !store.IsPermanent(merr[i]) {
			return merr[i]
		}
		return nil
	})
	if err != nil {
		return rep, remoteErr(st, err, "read the manifests of rank %d", rank)
	}
	var total, done int64
	for _, m := range ms {
		if m != nil {
			total += m.Length
		}
	}
	// A writer's retention may delete versions while they are checked (manifest first,
	// then data): a version whose manifest is gone by the time its check fails was
	// deleted, not damaged.
	gone := func(key string) bool {
		rc, err := st.Get(ctx, key, 0, 1)
		if err == nil {
			rc.Close()
		}
		return errors.Is(err, store.ErrNotExist)
	}
	var buf []byte
	for i, m := range ms {
		ref, _ := parseManifestKey(keys[i])
		if m == nil {
			if errors.Is(merr[i], store.ErrNotExist) {
				continue // deleted between the listing and the read
			}
			rep.Damaged = append(rep.Damaged, StoreDamage{Manifest: keys[i], Version: int(ref.ver), Reason: merr[i].Error()})
			continue
		}
		rep.Versions++
		rep.Bytes += m.Length
		switch {
		case m.Version != ref.ver || nameSegment(m.Name) != ref.seg || m.Rank != rank:
			rep.Damaged = append(rep.Damaged, StoreDamage{Manifest: keys[i], Name: m.Name, Version: int(ref.ver),
				Reason: fmt.Sprintf("the manifest describes version %d of %q of rank %d", m.Version, m.Name, m.Rank)})
		default:
			if int64(cap(buf)) < m.Length {
				buf = make([]byte, m.Length)
			}
			if err := fetchInto(ctx, st, m, buf[:m.Length], nil); err != nil {
				if ctx.Err() != nil {
					return rep, err
				}
				if gone(keys[i]) {
					rep.Versions--
					rep.Bytes -= m.Length
					continue
				}
				rep.Damaged = append(rep.Damaged, StoreDamage{Manifest: keys[i], Name: m.Name, Version: int(m.Version), Reason: err.Error()})
			}
		}
		done += m.Length
		if progress != nil {
			progress(done, total)
		}
	}
	return rep, nil
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
	if _, err := os.Stat(path); err == nil {
		return 0, errf(ErrInvalid, "Pull: %s exists", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("ckp: %w", err)
	}
	keys, err := rankKeys(ctx, st, rank)
	if err != nil {
		return 0, err
	}
	f, err := Open(path, opts)
	if err != nil {
		return 0, err
	}
	rm := newRemote(f, remoteCfg{st: st, every: 1, rank: rank, ranks: rank + 1, timeout: DefaultRemoteTimeout})
	defer rm.cancel(errors.New("pull done"))
	own := rankListing{}
	for _, k := range keys {
		r, _ := parseManifestKey(k)
		c := rm.ckpt(r.seg, "")
		c.vers = append(c.vers, storeVer{num: r.ver})
		own[r.seg] = append(own[r.seg], r.ver)
	}
	want := uint64(v)
	if v == 0 {
		top, ok, err := newestComplete(ctx, st, rank, own, nil)
		if err != nil {
			f.Close()
			os.Remove(path)
			os.Remove(path + ".idx")
			return 0, remoteErr(st, err, "read the manifests of rank %d", rank)
		}
		if !ok {
			f.Close()
			os.Remove(path)
			os.Remove(path + ".idx")
			return 0, errf(ErrNotFound, "rank %d has no version committed for every checkpoint in %s", rank, st)
		}
		want = top
	}
	var cs []*storeCkpt
	for _, c := range rm.ckpts {
		sortVers(c.vers)
		if c.find(want) >= 0 {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		f.Close()
		os.Remove(path)
		os.Remove(path + ".idx")
		return 0, errf(ErrVersion, "rank %d committed no version %d in %s", rank, want, st)
	}
	if err := rm.importVersions(ctx, cs, want); err != nil {
		f.Close()
		os.Remove(path)
		os.Remove(path + ".idx")
		return 0, err
	}
	return int(want), f.Close()
}
