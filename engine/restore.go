package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/internal/copier"
	"github.com/ckp-go/ckp/internal/slot"
	"github.com/ckp-go/ckp/remote"
)

// restore copies version v of each checkpoint in cs into its region. The caller holds
// f.begin and every c.mu. Nothing is written to any region until every version has
// been located, sized and verified.
func (f *File) restore(cs []*Checkpoint, v int) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	vs := make([]version, len(cs))
	if err := f.resolveAll(cs, v, vs); err != nil {
		return err
	}
	return f.restoreVersions(cs, vs, nil)
}

// restoreVersions copies version vs[i] into the region of cs[i], all of them verified
// first, except those whose checked[i] says the caller just checked them (checked may
// be nil). The versions are in the index, or slots fetched from the store
// (fetchRestore).
func (f *File) restoreVersions(cs []*Checkpoint, vs []version, checked []bool) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	data := f.data.Bytes()
	for i, c := range cs {
		end := vs[i].off + vs[i].footprint(len(c.name))
		if end > int64(len(data)) || end < vs[i].off {
			return errf(ErrCorrupt, "version %d of %q lies beyond the end of the data file", vs[i].num, c.name)
		}
	}
	if f.ro {
		return f.restoreCopied(cs, vs)
	}
	defer f.largeRestore(cs)() // (each version holds its region's length)
	// Versions stored by blocks: their block maps, from their chains' trailers.
	plans := make([]*blockPlan, len(cs))
	for i, c := range cs {
		if vs[i].blocks {
			p, err := f.planBlocks(c.st, &vs[i], len(c.name))
			if err != nil {
				return fmt.Errorf("%w (%q)", err, c.name)
			}
			plans[i] = p
		}
	}
	// Verify in the mapping (both cores for large versions), then copy out.
	f.batchMu.Lock()
	defer f.batchMu.Unlock()
	b := &f.batchBuf
	b.Reset(copier.Verify)
	hashes := make([]uint64, len(cs))
	for i, c := range cs {
		ver := &vs[i]
		if checked != nil && checked[i] {
			continue
		}
		if p := plans[i]; p != nil {
			b.AddRuns(p.runs, data, nil, p.tb, p.shift)
			continue
		}
		src := data[ver.off : ver.off+ver.length]
		j := copier.Job{Src: src}
		if ts := crc.TableSize(ver.length); ts > 0 {
			t0 := ver.off + pad8(ver.length) + slot.Fixed
			j.Table = data[t0 : t0+int64(ts)]
			if crc.Combine(j.Table) != ver.hash {
				return errf(ErrCorrupt, "version %d of %q: block table does not match its hash", ver.num, c.name)
			}
		} else {
			hashes[i] = ver.hash
			j.Hash = &hashes[i]
		}
		b.Add(j)
	}
	f.pool.Run(b)
	if err := b.Err(); err != nil {
		return err
	}
	if b.Mismatch() {
		// Say which one.
		for i, c := range cs {
			if p := plans[i]; p != nil {
				if p.check(data) != nil {
					return errf(ErrCorrupt, "version %d of %q: a block does not match its hash", vs[i].num, c.name)
				}
				continue
			}
			if crc.Payload(data[vs[i].off:vs[i].off+vs[i].length]) != vs[i].hash {
				return errf(ErrCorrupt, "version %d of %q: hash mismatch", vs[i].num, c.name)
			}
		}
		return errf(ErrCorrupt, "hash mismatch")
	}
	releaseTracking(cs)
	b.Reset(copier.Copy)
	for i, c := range cs {
		if p := plans[i]; p != nil {
			b.AddRuns(p.runs, data, c.region, p.tb, p.shift)
			continue
		}
		b.Add(copier.Job{Src: data[vs[i].off : vs[i].off+vs[i].length], Dst: c.region})
	}
	f.pool.Run(b)
	return b.Err()
}

// restoreCopied is the read-only path: a writer may reuse a slot while we read it, so the
// bytes are copied out first, verified in the copy, and only then copied into the
// regions.
func (f *File) restoreCopied(cs []*Checkpoint, vs []version) error {
	bufs := make([][]byte, len(cs))
	for i, c := range cs {
		buf, err := f.copyOut(c.st, &vs[i], len(c.name))
		if errors.Is(err, errMismatch) {
			return f.mismatch(c.name, vs[i].num)
		}
		if err != nil {
			return err
		}
		bufs[i] = buf
	}
	releaseTracking(cs)
	for i, c := range cs {
		copy(c.region, bufs[i])
	}
	return nil
}

// releaseTracking lifts the kernel's write protection from the tracked regions of cs,
// which a restore is about to overwrite: one call per region instead of a fault per page
// (a microsecond each: 0.25 s for 1 GiB). The next save hashes the whole region, as it
// would after the faults. A failure leaves the protection, and the faults, in place.
func releaseTracking(cs []*Checkpoint) {
	for _, c := range cs {
		if d := c.diff; d != nil && d.trk != nil {
			_ = d.trk.Release()
		}
	}
}

// mismatch is the error for a version whose bytes do not match its hash. On a
// read-only File the writer may have dropped the version (retention) and reused its
// slot since this File opened: then the version is gone, not damaged, and the error is
// ErrVersion. The index is read afresh to tell.
func (f *File) mismatch(name string, num uint64) error {
	if f.ro {
		if g, err := Open(f.path, &Options{ReadOnly: true, MaxSize: f.opts.MaxSize, Workers: 1}); err == nil {
			vs, _ := g.VersionsOf(name)
			g.Close()
			kept := false
			for _, v := range vs {
				kept = kept || uint64(v.Version) == num
			}
			if !kept {
				return errf(ErrVersion, "version %d of %q was dropped by the writer since this File opened", num, name)
			}
		}
	}
	return errf(ErrCorrupt, "version %d of %q: hash mismatch", num, name)
}

// resolveAll resolves version v of every checkpoint in cs into vs and checks its size.
// It reads the index mapping under f.mu: the caller turns faults into errors, and the
// deferred unlock leaves the File usable after one.
func (f *File) resolveAll(cs []*Checkpoint, v int, vs []version) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range cs {
		p, err := c.st.resolve(v)
		if err != nil {
			return err
		}
		if p.length != int64(len(c.region)) {
			return errf(ErrSize, "version %d of %q holds %d bytes, the region has %d", p.num, c.name, p.length, len(c.region))
		}
		vs[i] = p
	}
	return nil
}

// restoreAny restores version v of cs (Restore, RestoreAll: all), from the local file
// or, when the local copy is missing (ErrVersion) or damaged (ErrCorrupt), from the
// store: the store's copy is fetched into a free slot of the data file, checked, and
// only then copied, every region located and checked before any is written. In a job
// of several ranks a RestoreAll is RestoreJob, and v must be the job's restart point
// (or 0). The caller holds f.begin and every c.mu.
func (f *File) restoreAny(cs []*Checkpoint, v int, all bool) error {
	if f.tier == nil {
		return f.restore(cs, v)
	}
	defer f.largeRestore(cs)()
	ctx, cancel := context.WithTimeout(context.Background(), f.tier.Settings().Timeout())
	defer cancel()
	if all && f.tier.Settings().Ranks() > 1 {
		// A rank of a job restarts where the job does (RestoreJob): RestoreAll of the
		// job's restart point (or 0) is that, any other version an error.
		jv, _, err := f.tier.JobVersion(ctx)
		if err != nil {
			return err
		}
		if v > 0 && uint64(v) != jv || v < 0 {
			return errf(ErrVersion, "the job restarts at version %d: RestoreAll(%d) or RestoreJob, not RestoreAll(%d)", jv, jv, v)
		}
		got, err := f.restoreJob(ctx, cs)
		if err == nil && v > 0 && got != v {
			// The job went on while this rank joined it (a version that a dead
			// process had recorded completed meanwhile): say what was restored.
			return errf(ErrVersion, "the job's restart point moved from version %d to %d during RestoreAll(%d): the regions hold version %d (RestoreJob returns the version it restores)", v, got, v, got)
		}
		return err
	}
	err := f.restore(cs, v)
	if err == nil || (!errors.Is(err, ErrVersion) && !errors.Is(err, ErrCorrupt)) {
		return err
	}
	return f.remoteRestore(ctx, cs, v, err, false)
}

// largeRestore marks a restore of cs as a large save when it is one (copier.Threshold
// bytes or more): it wants both cores, as a large save does, so the pre-faulter (which
// a restart's Open and Register start) and the uploads wait, and the pre-faulter goes
// on once the restore is done. A restore that may go to the store is marked from its
// start, its requests for the job's state included (on a new node over S3 the
// pre-faulter's zeroing of the next saves' slots took the cores the store's server and
// the fetch wanted: Open + RestoreAll of 32 MiB, 28-34 ms with it, 23-27 ms without,
// here). It returns what ends the mark.
func (f *File) largeRestore(cs []*Checkpoint) func() {
	total := 0
	for _, c := range cs {
		total += len(c.region)
	}
	if total < copier.Threshold {
		return func() {}
	}
	f.activeSaves(1)
	return func() { f.activeSaves(-1); f.pf.wake() }
}

// remoteRestore is restoreAny's path through the store; localErr is the local
// restore's failure (nil on the rewind path, which does not try the local one first).
// A relative version counts the versions kept locally and those committed in the store
// together (a new node holds none). Restoring the newest (v == 0), a version that does
// not check out in the store is skipped for the one before it, and listed in
// Recovered().StoreSkipped. Fetches end with ctx, or after Remote.Timeout.
func (f *File) remoteRestore(ctx context.Context, cs []*Checkpoint, v int, localErr error, rewind bool) error {
	t := f.tier
	// On a new node, one reading of the lineage needs a request (a probe for a newer
	// life): the manifests of the versions the lineage seen at Open names are read
	// beside it, for the checkpoints with no local version of that number.
	ctx, cancel := context.WithCancel(ctx)
	var ahead *remote.Ahead
	defer func() { cancel(); ahead.Wait() }()
	if seen := t.Seen(ctx); seen != nil {
		if nums, _, err := f.storeNums(cs, v, seen, localErr); err == nil {
			var names []string
			var want []uint64
			for i, c := range cs {
				f.mu.Lock()
				_, lerr := c.st.resolve(int(nums[i]))
				f.mu.Unlock()
				if lerr != nil {
					names, want = append(names, c.name), append(want, nums[i])
				}
			}
			ahead = seen.Ahead(ctx, names, want)
		}
	}
	// One reading of the job's lineage judges every checkpoint.
	rs, err := t.Restorable(ctx)
	if err != nil {
		return err
	}
	rs.Use(ahead)
	nums, common, err := f.storeNums(cs, v, rs, localErr)
	if err != nil {
		return err
	}
	for {
		err := f.fetchRestore(ctx, cs, nums, rs.LookupAll, false, localErr, rewind)
		var d *damaged
		if v != 0 || !errors.As(err, &d) {
			return err
		}
		// The newest does not check out in the store: the one before it.
		k := slices.Index(common, nums[d.i])
		if k <= 0 {
			return err
		}
		f.mu.Lock()
		f.recovered.StoreSkipped = append(f.recovered.StoreSkipped, StoreDamage{Name: cs[d.i].name, Version: int(nums[d.i]), Reason: d.err.Error()})
		f.mu.Unlock()
		for i := range nums {
			nums[i] = common[k-1]
		}
	}
}

// storeNums returns the version of each of cs that restoring v takes, the store's
// versions judged by rs, and the numbers every checkpoint of cs has, kept here or
// committed in the store, ascending. A relative version counts those (a new node keeps
// none), so that RestoreAll restores one SaveAll.
func (f *File) storeNums(cs []*Checkpoint, v int, rs *remote.Restorable, localErr error) (nums, common []uint64, err error) {
	nums = make([]uint64, len(cs))
	for i, c := range cs {
		committed := rs.Committed(c.name)
		f.mu.Lock()
		lv, lerr := c.st.resolve(v)
		all := unionVersions(c.st, committed)
		f.mu.Unlock()
		if i == 0 {
			common = all
		} else {
			common = base.Intersect(common, all)
		}
		switch {
		case lerr == nil:
			nums[i] = lv.num
		case v > 0:
			nums[i] = uint64(v)
		}
	}
	if v <= 0 {
		k := len(common) - 1 + v
		if k < 0 {
			if localErr != nil && len(common) == 0 {
				return nil, nil, localErr
			}
			return nil, nil, errf(ErrVersion, "version %d: only %d kept here and in %s for every checkpoint", v, len(common), f.tier.Settings().Store())
		}
		for i := range nums {
			nums[i] = common[k]
		}
	}
	return nums, common, nil
}

// damaged is fetchRestore's error for a version of cs[i] that does not check out in
// the store (its manifest or data damaged, or gone).
type damaged struct {
	i   int
	err error
}

func (d *damaged) Error() string { return d.err.Error() }
func (d *damaged) Unwrap() error { return d.err }

// unionVersions returns the numbers of s's kept versions and of committed, merged,
// ascending, without repeats. Caller holds f.mu.
func unionVersions(s *ckptState, committed []uint64) []uint64 {
	all := make([]uint64, 0, s.n()+len(committed))
	j := 0
	for i := 0; i < s.n(); i++ {
		n := s.at(i).num
		for j < len(committed) && committed[j] < n {
			all = append(all, committed[j])
			j++
		}
		if j < len(committed) && committed[j] == n {
			j++
		}
		all = append(all, n)
	}
	return append(all, committed[j:]...)
}

// checkReadable checks a local version's bytes (and, stored by blocks, the block map
// of its chain) against its hashes.
func (f *File) checkReadable(s *ckptState, v *version, nameLen int) (err error) {
	defer catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if err := f.checkVersion(v, nameLen); err != nil || !v.blocks {
		return err
	}
	p, err := f.planBlocks(s, v, nameLen)
	if err != nil {
		return err
	}
	return p.check(f.data.Bytes())
}

// rewind makes nums[i] the newest version of cs[i] (see remoteRestore), adding the
// fetched slots as versions, and tells the remote tier, which drops this rank's
// versions above them from the store.
func (f *File) rewind(cs []*Checkpoint, nums []uint64, fetched map[*ckptState]version) error {
	need := len(fetched) > 0
	f.mu.Lock()
	for i, c := range cs {
		if nv, ok := c.st.newest(); !ok || nv.num != nums[i] {
			need = true
		}
	}
	f.mu.Unlock()
	if need {
		plan := indexPlan{upTo: map[*ckptState]uint64{}, add: fetched}
		for i, c := range cs {
			plan.upTo[c.st] = nums[i]
		}
		f.syncMu.Lock()
		f.mu.Lock()
		err := f.rewriteIndex(plan)
		f.mu.Unlock()
		f.syncMu.Unlock()
		if err != nil {
			return err
		}
	}
	// Even with nothing to change locally, the next save follows the restored version
	// (Register numbered after the newest the store holds, which may be of a life the
	// job abandoned on another node), and the store may still hold what a killed
	// rewind left.
	f.mu.Lock()
	for i, c := range cs {
		c.st.next = nums[i] + 1
	}
	f.mu.Unlock()
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.name
	}
	f.tier.Rewound(names, nums)
	return nil
}
