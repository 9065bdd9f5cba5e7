package remote

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// Inspecting a store without a local file (the ckp command, and Pull). Each request
// is retried while the store fails transiently, but, when the caller's context has no
// deadline, for at most DefaultTimeout of failures in a row: a store that keeps
// failing ends the call with ErrRemote instead of holding it forever.

// JobStatus describes the job whose ranks share a store.
type JobStatus struct {
	// Ranks is the number of ranks: as given, or as the newest life says.
	Ranks int
	// Life is the job's newest life (0: none yet); Base the version it began from (0:
	// the start); Launch the launch id of the process that created it.
	Life   uint64
	Base   int
	Launch string
	// Version is the job's restart point (File.JobVersion): the newest version complete
	// on every rank in the newest life, or its base; VersionLife the life it was
	// completed in.
	Version     int
	VersionLife uint64
	// Started: every rank has joined the newest life; Sealed: it is over (the next
	// RestoreJob begins the next life).
	Started, Sealed bool
	// Joined is, per rank, whether it joined the newest life.
	Joined []bool
	// Newest is, per rank, the newest version complete on it in the newest life (its
	// version record); 0 when it has none.
	Newest []int
	// Committed is, per rank, the number of committed versions in the store, all
	// checkpoints and lives together.
	Committed []int
}

// InspectJob describes the job in st: its newest life, the restart point, and what
// every rank joined, completed and committed. With ranks 0 the number of ranks is the
// newest life's. It reads a few objects, and lists the newest life's records and the
// manifests (a tool's cost, not a rank's).
func InspectJob(ctx context.Context, st store.Store, ranks int) (JobStatus, error) {
	ctx = toolContext(ctx)
	if ranks < 0 || ranks > MaxRanks {
		return JobStatus{}, base.Errf(base.ErrInvalid, "InspectJob: %d ranks (at most %d)", ranks, MaxRanks)
	}
	var js JobStatus
	for {
		n, L, err := newestLife(ctx, st)
		if err != nil {
			return js, remoteErr(st, err, "read the job's lives")
		}
		if n == 0 {
			break
		}
		h, err := logHead(ctx, st, L)
		if err != nil {
			return js, remoteErr(st, err, "read the log of life %d", n)
		}
		g := geom{R: L.ranks, K: L.arity}
		js.Started, err = existsIn(ctx, st, g.rootKey(joinTree(n)))
		if err != nil {
			return js, remoteErr(st, err, "read the join tree of life %d", n)
		}
		newer, err := existsIn(ctx, st, lifeKey(n+1))
		if err != nil {
			return js, remoteErr(st, err, "read the job's lives")
		}
		if newer {
			continue
		}
		js.Life, js.Base, js.Launch = n, int(L.base.v), L.launch
		js.Version, js.VersionLife, js.Sealed = int(h.rp.v), h.rp.life, h.sealed
		if ranks == 0 {
			ranks = L.ranks
		}
		break
	}
	if ranks == 0 {
		ranks = 1
	}
	js.Ranks = ranks
	js.Joined, js.Newest, js.Committed = make([]bool, ranks), make([]int, ranks), make([]int, ranks)
	if js.Life > 0 {
		objs, err := listIn(ctx, st, joinTree(js.Life)+"/0/")
		if err != nil {
			return js, remoteErr(st, err, "list the join records of life %d", js.Life)
		}
		for _, o := range objs {
			if r, err := strconv.Atoi(o.Key[strings.LastIndexByte(o.Key, '/')+1:]); err == nil && r >= 0 && r < ranks {
				js.Joined[r] = true
			}
		}
		objs, err = listIn(ctx, st, jobDir+"done/"+num20(js.Life)+"/")
		if err != nil {
			return js, remoteErr(st, err, "list the version records of life %d", js.Life)
		}
		for _, o := range objs {
			parts := strings.Split(strings.TrimPrefix(o.Key, jobDir+"done/"), "/")
			if len(parts) != 5 || parts[2] != "0" {
				continue // an internal node
			}
			v, err1 := strconv.ParseUint(parts[1], 10, 64)
			r, err2 := strconv.Atoi(parts[4])
			if err1 == nil && err2 == nil && r >= 0 && r < ranks {
				js.Newest[r] = max(js.Newest[r], int(v))
			}
		}
	}
	objs, err := listIn(ctx, st, manifestDir)
	if err != nil {
		return js, remoteErr(st, err, "list the manifests")
	}
	for _, o := range objs {
		r, ok := parseManifestKey(o.Key)
		if !ok {
			if outOfRange(o.Key) {
				return js, base.Errf(base.ErrCorrupt, "%s: key %q names a rank beyond %d", st, o.Key, MaxRanks-1)
			}
			continue
		}
		if r.rank < ranks {
			js.Committed[r.rank]++
		}
	}
	return js, nil
}

// listIn lists prefix, retrying transient errors.
func listIn(ctx context.Context, st store.Store, prefix string) ([]store.Object, error) {
	var objs []store.Object
	err := retry(ctx, 0, func(ctx context.Context) error {
		var err error
		objs, err = st.List(ctx, prefix)
		return err
	})
	return objs, err
}

// StoreVersion describes a version committed in a store.
type StoreVersion struct {
	Name    string    // the checkpoint
	Version int       // the version number
	Size    int64     // its bytes
	Saved   time.Time // when the writer saved it
	Hash    uint64    // the payload hash (docs/FORMAT.md)
	Txn     uint64    // the transaction in the writer's local file
	Rank    int       // the rank that committed it
	Life    uint64    // the life of the job it was committed in
	// Restorable: the version is on the job's lineage (a restart may restore it); the
	// others belong to abandoned lives, and retention deletes them.
	Restorable bool
	Manifest   string   // the manifest's key
	Objects    []string // the data objects that hold its bytes
}

func storeVersionOf(m *manifest, key string) StoreVersion {
	sv := StoreVersion{Name: m.Name, Version: int(m.Version), Size: m.Length, Saved: time.Unix(0, m.Time),
		Hash: m.Hash, Txn: m.Txn, Rank: m.Rank, Life: m.Life, Manifest: key}
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
	caps, err := storeLineage(ctx, st)
	if err != nil {
		return nil, remoteErr(st, err, "read the job's state")
	}
	out := make([]StoreVersion, len(keys))
	err = parallel(ctx, len(keys), 16, func(ctx context.Context, i int) error {
		m, err := readManifest(ctx, st, keys[i])
		if err != nil {
			return err
		}
		out[i] = storeVersionOf(m, keys[i])
		out[i].Restorable = caps == nil || m.Version <= caps[m.Life]
		return nil
	})
	if err != nil {
		return nil, remoteErr(st, err, "read the manifests of rank %d", rank)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		if out[i].Life != out[j].Life {
			return out[i].Life < out[j].Life
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// rankKeys lists the manifest keys of rank.
func rankKeys(ctx context.Context, st store.Store, rank int) ([]string, error) {
	objs, err := listIn(ctx, st, rankManifests(rank))
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

// storeLookup finds the manifest of version v (absolute, or 0, -1, ... from the newest)
// of name committed by rank, among the versions a restart may use: those on the
// lineage of the job's newest life.
func storeLookup(ctx context.Context, st store.Store, rank int, name string, v int) (*manifest, string, error) {
	seg := nameSegment(name)
	objs, err := listIn(ctx, st, rankManifests(rank))
	if err != nil {
		return nil, "", remoteErr(st, err, "list the versions of %q", name)
	}
	c := &storeCkpt{seg: seg, name: name}
	for _, o := range objs {
		if r, ok := parseManifestKey(o.Key); ok && r.rank == rank && r.seg == seg {
			c.vers = append(c.vers, storeVer{life: r.life, num: r.ver})
		}
	}
	if len(c.vers) == 0 {
		return nil, "", base.Errf(base.ErrNotFound, "rank %d committed no version of %q in %s", rank, name, st)
	}
	caps, err := storeLineage(ctx, st)
	if err != nil {
		return nil, "", remoteErr(st, err, "read the job's state")
	}
	sortVers(c.vers)
	vs := c.visible(caps)
	if len(vs) == 0 {
		return nil, "", base.Errf(base.ErrVersion, "rank %d committed no version of %q a restart may use in %s", rank, name, st)
	}
	var want storeVer
	if v <= 0 {
		i := len(vs) - 1 + v
		if i < 0 {
			return nil, "", base.Errf(base.ErrVersion, "version %d of %q: only %d committed in %s", v, name, len(vs), st)
		}
		want = vs[i]
	} else {
		i := sort.Search(len(vs), func(i int) bool { return vs[i].num >= uint64(v) })
		if i == len(vs) || vs[i].num != uint64(v) {
			return nil, "", base.Errf(base.ErrVersion, "version %d of %q is not committed in %s (committed: %d..%d)", v, name, st, vs[0].num, vs[len(vs)-1].num)
		}
		want = vs[i]
	}
	key := manifestKey(rank, want.life, seg, want.num)
	m, err := readManifest(ctx, st, key)
	if err != nil {
		if errors.Is(err, base.ErrCorrupt) {
			return nil, key, err
		}
		return nil, key, remoteErr(st, err, "read the manifest of version %d of %q", want.num, name)
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
	if err := fetchInto(ctx, st, m, buf, nil, streams(st)); err != nil {
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
		case m.Version != ref.ver || m.Life != ref.life || nameSegment(m.Name) != ref.seg || m.Rank != rank:
			rep.Damaged = append(rep.Damaged, StoreDamage{Manifest: keys[i], Name: m.Name, Version: int(ref.ver),
				Reason: fmt.Sprintf("the manifest describes version %d of %q of rank %d", m.Version, m.Name, m.Rank)})
		default:
			if int64(cap(buf)) < m.Length {
				buf = make([]byte, m.Length)
			}
			if err := fetchInto(ctx, st, m, buf[:m.Length], nil, streams(st)); err != nil {
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
// absolute, or 0 for the newest version the rank committed for every checkpoint. Only
// versions a restart may restore count (those on the job's lineage). It returns the
// version pulled: ErrNotFound when the rank has no version committed for every
// checkpoint, ErrVersion when it committed no version v.
func Pull(ctx context.Context, s Settings, h Host, v int) (int, error) {
	t := newTier(s, h)
	ctx = t.callerCtx(toolContext(ctx))
	defer t.cancel(errors.New("pull done"))
	st, rank := s.st, s.rank
	caps, err := storeLineage(ctx, st)
	if err != nil {
		return 0, remoteErr(st, err, "read the job's state")
	}
	keys, err := rankKeys(ctx, st, rank)
	if err != nil {
		return 0, err
	}
	byseg := map[string]*storeCkpt{}
	for _, k := range keys {
		r, _ := parseManifestKey(k)
		c := byseg[r.seg]
		if c == nil {
			c = &storeCkpt{seg: r.seg}
			byseg[r.seg] = c
		}
		c.vers = append(c.vers, storeVer{life: r.life, num: r.ver})
	}
	vis := map[string][]storeVer{}
	var common []uint64
	first := true
	for seg, c := range byseg {
		sortVers(c.vers)
		vis[seg] = c.visible(caps)
		nums := make([]uint64, len(vis[seg]))
		for i, x := range vis[seg] {
			nums[i] = x.num
		}
		if first {
			common, first = nums, false
		} else {
			common = base.Intersect(common, nums)
		}
	}
	want := uint64(v)
	if v == 0 {
		if len(common) == 0 {
			return 0, base.Errf(base.ErrNotFound, "rank %d has no version committed for every checkpoint in %s", rank, st)
		}
		want = common[len(common)-1]
	}
	var ms []*manifest
	for seg, vs := range vis {
		for _, x := range vs {
			if x.num == want {
				m, err := readManifest(ctx, st, manifestKey(rank, x.life, seg, x.num))
				if err != nil {
					return 0, remoteErr(st, err, "read the manifest of version %d", want)
				}
				ms = append(ms, m)
			}
		}
	}
	if len(ms) == 0 {
		return 0, base.Errf(base.ErrVersion, "rank %d committed no version %d a restart may use in %s", rank, want, st)
	}
	in := make([]Incoming, len(ms))
	for i, m := range ms {
		in[i] = t.incoming(m)
	}
	if err := h.Import(ctx, in); err != nil {
		return 0, remoteErr(st, err, "fetch version %d", want)
	}
	return int(want), nil
}
