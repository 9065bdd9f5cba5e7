package remote

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// Inspecting a store without a local file (the ckp command, and Pull). Each request
// is retried while the store fails transiently, but, when the caller's context has no
// deadline, for at most DefaultTimeout of failures in a row: a store that keeps
// failing ends the call with ErrRemote instead of holding it forever.

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
	ctx = toolContext(ctx)
	if ranks < 0 || ranks > MaxRanks {
		return JobStatus{}, base.Errf(base.ErrInvalid, "InspectJob: %d ranks (at most %d)", ranks, MaxRanks)
	}
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
	Name     string    // the checkpoint
	Version  int       // the version number
	Size     int64     // its bytes
	Saved    time.Time // when the writer saved it
	Hash     uint64    // the payload hash (docs/FORMAT.md)
	Txn      uint64    // the transaction in the writer's local file
	Rank     int       // the rank that committed it
	Manifest string    // the manifest's key
	Objects  []string  // the data objects that hold its bytes
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
	ctx = toolContext(ctx)
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
		return nil, "", base.Errf(base.ErrNotFound, "rank %d committed no version of %q in %s", rank, name, st)
	}
	var want uint64
	if v <= 0 {
		i := len(vs) - 1 + v
		if i < 0 {
			return nil, "", base.Errf(base.ErrVersion, "version %d of %q: only %d committed in %s", v, name, len(vs), st)
		}
		want = vs[i]
	} else {
		want = uint64(v)
		i := sort.Search(len(vs), func(i int) bool { return vs[i] >= want })
		if i == len(vs) || vs[i] != want {
			return nil, "", base.Errf(base.ErrVersion, "version %d of %q is not committed in %s (committed: %d..%d)", v, name, st, vs[0], vs[len(vs)-1])
		}
	}
	key := manifestKey(rank, seg, want)
	m, err := readManifest(ctx, st, key)
	if err != nil {
		if errors.Is(err, base.ErrCorrupt) {
			return nil, key, err
		}
		return nil, key, remoteErr(st, err, "read the manifest of version %d of %q", want, name)
	}
	if m.Name != name {
		return nil, key, base.Errf(base.ErrCorrupt, "%s: manifest %s names %q, not %q", st, key, m.Name, name)
	}
	return m, key, nil
}

// ReadStoreVersion returns the bytes of version v (absolute, or 0, -1, ... counted
// back from the newest committed) of the checkpoint called name that rank committed in
// st, checked against their hashes, with its description.
func ReadStoreVersion(ctx context.Context, st store.Store, rank int, name string, v int) ([]byte, StoreVersion, error) {
	ctx = toolContext(ctx)
	m, key, err := storeLookup(ctx, st, rank, name, v)
	if err != nil {
		return nil, StoreVersion{}, err
	}
	sv := storeVersionOf(m, key)
	buf := make([]byte, m.Length)
	if err := fetchInto(ctx, st, m, buf, nil); err != nil {
		if errors.Is(err, base.ErrCorrupt) {
			return nil, sv, err
		}
		return nil, sv, remoteErr(st, err, "fetch version %d of %q", m.Version, name)
	}
	return buf, sv, nil
}

// StoreDamage is a committed version of a store that failed verification.
type StoreDamage struct {
	Manifest string // the manifest's key
	Name     string // the checkpoint; "" when the manifest itself is damaged
	Version  int    // the version number
	Reason   string // what did not check out
}

// StoreReport is the result of VerifyStore.
type StoreReport struct {
	Versions int           // versions checked
	Bytes    int64         // their bytes
	Damaged  []StoreDamage // the versions that failed their check
}

// OK reports whether everything checked is intact.
func (r *StoreReport) OK() bool { return len(r.Damaged) == 0 }

// VerifyStore checks every version rank committed in st: its manifest, and its bytes
// (every data object it names must exist and hold bytes that match the hashes).
// progress, if not nil, is called with the bytes checked so far and the total.
func VerifyStore(ctx context.Context, st store.Store, rank int, progress func(done, total int64)) (StoreReport, error) {
	ctx = toolContext(ctx)
	var rep StoreReport
	keys, err := rankKeys(ctx, st, rank)
	if err != nil {
		return rep, err
	}
	ms := make([]*manifest, len(keys))
	merr := make([]error, len(keys))
	err = parallel(ctx, len(keys), 16, func(ctx context.Context, i int) error {
		ms[i], merr[i] = readManifest(ctx, st, keys[i])
		if merr[i] != nil && !errors.Is(merr[i], base.ErrCorrupt) && !store.IsPermanent(merr[i]) {
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

// Pull brings version v of every checkpoint that rank s.Rank() committed in the store
// into the local file of h, as one transaction keeping the version numbers: v is
// absolute, or 0 for the newest version committed for every checkpoint of the rank.
// It returns the version pulled: ErrNotFound when the rank has no version committed
// for every checkpoint, ErrVersion when it committed no version v.
func Pull(ctx context.Context, s Settings, h Host, v int) (int, error) {
	ctx = toolContext(ctx)
	t := newTier(s, h)
	defer t.cancel(errors.New("pull done"))
	st, rank := s.st, s.rank
	keys, err := rankKeys(ctx, st, rank)
	if err != nil {
		return 0, err
	}
	own := rankListing{}
	for _, k := range keys {
		r, _ := parseManifestKey(k)
		c := t.ckpt(r.seg, "")
		c.vers = append(c.vers, storeVer{num: r.ver})
		own[r.seg] = append(own[r.seg], r.ver)
	}
	want := uint64(v)
	if v == 0 {
		top, ok, err := newestComplete(ctx, st, rank, own, nil)
		if err != nil {
			return 0, remoteErr(st, err, "read the manifests of rank %d", rank)
		}
		if !ok {
			return 0, base.Errf(base.ErrNotFound, "rank %d has no version committed for every checkpoint in %s", rank, st)
		}
		want = top
	}
	var cs []*storeCkpt
	for _, c := range t.ckpts {
		sortVers(c.vers)
		if c.find(want) >= 0 {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return 0, base.Errf(base.ErrVersion, "rank %d committed no version %d in %s", rank, want, st)
	}
	if err := t.importVersions(ctx, cs, want); err != nil {
		return 0, err
	}
	return int(want), nil
}

// JobVersion returns the newest version that every rank of the job has committed for
// every one of its checkpoints (docs/REMOTE.md); ok is false when there is none. It
// reads the store.
func (t *Tier) JobVersion(ctx context.Context) (v uint64, ok bool, err error) {
	job, err := listJob(ctx, t.st)
	if err != nil {
		return 0, false, remoteErr(t.st, err, "list the job's versions")
	}
	v, ok, err = jobVersionOf(ctx, job, t.cfg.ranks, storeMembers(t.st, nil))
	if err != nil {
		return 0, false, remoteErr(t.st, err, "read the job's manifests")
	}
	return v, ok, nil
}
