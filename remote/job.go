package remote

import (
	"context"
	"errors"
	"sort"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// Listing a job, and which versions are complete.
//
// A version v is complete on a rank when at least as many of the rank's checkpoints
// have v committed as the transaction (Save or SaveAll) that wrote v uploaded with
// that number: its manifests' Members. So a SaveAll whose uploads were cut short by a
// crash is not complete, while checkpoints saved by separate Saves each are. The job
// version is the newest version complete on every rank.

// rankListing is what one rank committed: key segment → versions, ascending.
type rankListing map[string][]uint64

// jobListing is what every rank committed, by rank.
type jobListing map[int]rankListing

// listJob lists the manifests of every rank.
func listJob(ctx context.Context, st store.Store) (jobListing, error) {
	return listManifests(ctx, st, manifestDir)
}

// listManifests lists the manifests under prefix.
func listManifests(ctx context.Context, st store.Store, prefix string) (jobListing, error) {
	var objs []store.Object
	err := retry(ctx, 0, func(ctx context.Context) error {
		var err error
		objs, err = st.List(ctx, prefix)
		return err
	})
	if err != nil {
		return nil, err
	}
	job := jobListing{}
	for _, o := range objs {
		r, ok := parseManifestKey(o.Key)
		if !ok {
			if outOfRange(o.Key) {
				return nil, base.Errf(base.ErrCorrupt, "%s: key %q names a rank beyond %d", st, o.Key, MaxRanks-1)
			}
			continue
		}
		if job[r.rank] == nil {
			job[r.rank] = rankListing{}
		}
		job[r.rank][r.seg] = append(job[r.rank][r.seg], r.ver)
	}
	for _, segs := range job {
		for _, vs := range segs {
			sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
		}
	}
	return job, nil
}

// membersFunc returns the Members of the manifest of version v of seg of rank; 0
// when it is gone.
type membersFunc func(ctx context.Context, rank int, seg string, v uint64) (uint32, error)

// storeMembers reads Members from the manifests in st, remembering them for the
// call; those in known are used without reading.
func storeMembers(st store.Store, known map[manifestRef]uint32) membersFunc {
	cache := map[manifestRef]uint32{}
	return func(ctx context.Context, rank int, seg string, v uint64) (uint32, error) {
		ref := manifestRef{rank, seg, v}
		if m, ok := known[ref]; ok {
			return m, nil
		}
		if m, ok := cache[ref]; ok {
			return m, nil
		}
		m, err := readManifest(ctx, st, manifestKey(rank, seg, v))
		switch {
		case errors.Is(err, store.ErrNotExist):
			cache[ref] = 0
			return 0, nil
		case err != nil:
			return 0, err
		}
		cache[ref] = m.Members
		return m.Members, nil
	}
}

// presence is how many checkpoints of a rank have a version committed, and one of them.
type presence struct {
	n   int
	seg string
}

func presenceOf(r rankListing) map[uint64]presence {
	segs := make([]string, 0, len(r))
	for seg := range r {
		segs = append(segs, seg)
	}
	sort.Strings(segs)
	p := map[uint64]presence{}
	for _, seg := range segs {
		for _, v := range r[seg] {
			x, ok := p[v]
			if !ok {
				x.seg = seg
			}
			x.n++
			p[v] = x
		}
	}
	return p
}

// jobVersionOf returns the newest version complete on every rank 0..ranks-1 of job.
func jobVersionOf(ctx context.Context, job jobListing, ranks int, members membersFunc) (uint64, bool, error) {
	if ranks <= 0 {
		return 0, false, nil
	}
	pres := make([]map[uint64]presence, ranks)
	for r := range pres {
		pres[r] = presenceOf(job[r])
	}
	var cands []uint64
	for v := range pres[0] {
		all := true
		for r := 1; r < ranks && all; r++ {
			_, all = pres[r][v]
		}
		if all {
			cands = append(cands, v)
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i] > cands[j] })
	for _, v := range cands {
		ok := true
		for r := 0; r < ranks && ok; r++ {
			p := pres[r][v]
			m, err := members(ctx, r, p.seg, v)
			if err != nil {
				return 0, false, err
			}
			ok = m > 0 && p.n >= int(m)
		}
		if ok {
			return v, true, nil
		}
	}
	return 0, false, nil
}

// newestComplete returns the newest version complete on one rank, from its listing.
func newestComplete(ctx context.Context, st store.Store, rank int, r rankListing, known map[manifestRef]uint32) (uint64, bool, error) {
	m := storeMembers(st, known)
	return jobVersionOf(ctx, jobListing{0: r}, 1, func(ctx context.Context, _ int, seg string, v uint64) (uint32, error) {
		return m(ctx, rank, seg, v)
	})
}
