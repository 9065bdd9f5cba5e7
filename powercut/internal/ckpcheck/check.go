package ckpcheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
)

// Config describes the checkpoints of a power-cut file: region i is
// registered as "r<i>" with Sizes[i] bytes, and version v of it holds
// Fill(seed, i, v).
type Config struct {
	Sizes []int
	Seed  uint64
	// Sparse: the file is written with Options.Differential, and version v of a
	// region holds the sparse pattern (FillSparse), in which about one 4 KiB block in
	// eight changes from one version to the next.
	Sparse bool
	// Remote, when not nil, is the store of the file's remote tier (rank 0): the
	// inspection also checks every version committed in it.
	Remote store.Store
}

// Fill writes version v of region r into buf, which holds version from of it already
// (0: anything): under Sparse only the blocks that changed since from are written.
func (c Config) Fill(buf []byte, r, v, from int) {
	if c.Sparse {
		FillSparse(buf, c.Seed, r, v, from)
		return
	}
	Fill(buf, c.Seed, r, v)
}

// Check is Check or CheckSparse, as c says.
func (c Config) Check(got []byte, r, v int, scratch []byte) error {
	if c.Sparse {
		return CheckSparse(got, c.Seed, r, v, scratch)
	}
	return Check(got, c.Seed, r, v, scratch)
}

// ParseSizes parses a comma-separated list of region sizes in bytes; an
// item NxS stands for N regions of S bytes.
func ParseSizes(s string) ([]int, error) {
	var out []int
	for _, item := range strings.Split(s, ",") {
		count := 1
		if n, sz, ok := strings.Cut(item, "x"); ok {
			c, err := strconv.Atoi(n)
			if err != nil || c < 1 {
				return nil, fmt.Errorf("bad region count in %q", item)
			}
			count, item = c, sz
		}
		v, err := strconv.Atoi(item)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("bad region size %q", item)
		}
		for range count {
			out = append(out, v)
		}
	}
	return out, nil
}

// Name is the checkpoint name of region i.
func Name(i int) string { return "r" + strconv.Itoa(i) }

// Set is an open file with every region registered.
type Set struct {
	F       *engine.File
	Cks     []*engine.Checkpoint
	Regions [][]byte
}

// Open opens the file at path and registers the regions of cfg.
func Open(path string, opts *engine.Options, cfg Config) (*Set, error) {
	f, err := engine.Open(path, opts)
	if err != nil {
		return nil, err
	}
	s := &Set{F: f}
	for i, n := range cfg.Sizes {
		buf := make([]byte, n)
		c, err := f.Register(Name(i), buf)
		if err != nil {
			f.Close()
			return nil, err
		}
		s.Cks = append(s.Cks, c)
		s.Regions = append(s.Regions, buf)
	}
	return s, nil
}

// Newest is the newest kept version of region 0 (0 if none).
func (s *Set) Newest() int {
	vs := s.Cks[0].Versions()
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1].Version
}

// Failure is a restore of one version of one region that did not give back
// the saved bytes.
type Failure struct {
	V, R int
	// Kind is "corrupt" (the engine refused with ErrCorrupt), "mismatch" (the
	// engine returned bytes other than those saved) or "error" (any other
	// error).
	Kind string
	Msg  string `json:",omitempty"`
}

// Report is what Inspect found in a recovered file.
type Report struct {
	Where     string // "guest" or "host"
	BootID    string // of the kernel that opened the file
	OpenError string `json:",omitempty"`
	Recovered engine.Recovery
	// Kept lists the kept version numbers of region 0, oldest first.
	Kept []int
	// Differ says how some region's kept versions (numbers or
	// transactions) differ from region 0's; "" when they are all the same.
	Differ   string `json:",omitempty"`
	Restored int    // restores of one version of one region that were byte-exact
	Failures []Failure
	// RestoreAll is the outcome of RestoreAll(0) and the check that every
	// region then holds the newest version: "" when fine or nothing is kept.
	RestoreAll string `json:",omitempty"`
	Millis     int64  // how long the inspection took (Open not included)
	// Store is what the remote tier's store holds, when there is one.
	Store *StoreCheck `json:",omitempty"`
}

// StoreCheck is the inspection of the versions committed in a remote tier's store.
type StoreCheck struct {
	Versions  int      // committed versions of region 0 a restart may use
	Newest    int      // the newest of them
	Abandoned int      // committed versions of region 0 of abandoned lives
	Problems  []string `json:",omitempty"` // versions that do not verify or hold other bytes
}

// Newest is the newest kept version (0 if none).
func (r *Report) Newest() int {
	if len(r.Kept) == 0 {
		return 0
	}
	return r.Kept[len(r.Kept)-1]
}

// OpenAndInspect opens the file at path, registers cfg's regions and
// inspects it. It returns the open Set (nil if Open failed, as the report
// then says).
func OpenAndInspect(path string, opts *engine.Options, cfg Config, where string) (*Set, *Report) {
	// The store as the crash left it, before Open reconciles it with the local file
	// and the remote tier's retention starts deleting old versions in the background.
	var sc *StoreCheck
	if cfg.Remote != nil {
		sc = CheckStore(cfg.Remote, cfg)
	}
	s, err := Open(path, opts, cfg)
	if err != nil {
		return nil, &Report{Where: where, BootID: BootID(), OpenError: err.Error(), Store: sc}
	}
	rep := Inspect(s, cfg, where)
	rep.Store = sc
	return s, rep
}

// CheckStore verifies every version committed in st (rank 0) and compares each
// region's bytes with the pattern of its version.
func CheckStore(st store.Store, cfg Config) *StoreCheck {
	ctx := context.Background()
	sc := &StoreCheck{}
	rep, err := engine.VerifyStore(ctx, st, 0, nil)
	if err != nil {
		sc.Problems = append(sc.Problems, "verify: "+err.Error())
		return sc
	}
	for _, d := range rep.Damaged {
		sc.Problems = append(sc.Problems, fmt.Sprintf("%q@%d: %s", d.Name, d.Version, d.Reason))
	}

	for i := range cfg.Sizes {
		vs, err := engine.StoreVersions(ctx, st, 0)
		if err != nil {
			sc.Problems = append(sc.Problems, "list: "+err.Error())
			return sc
		}
		for _, v := range vs {
			if v.Name != Name(i) {
				continue
			}
			if !v.Restorable {
				// Committed by a process whose life ended before the version was
				// complete (the job restarted below it): no restore reads it, and
				// retention deletes it.
				if i == 0 {
					sc.Abandoned++
				}
				continue
			}
			if i == 0 {
				sc.Versions++
				sc.Newest = max(sc.Newest, v.Version)
			}
			b, _, err := engine.ReadStoreVersion(ctx, st, 0, Name(i), v.Version)
			if err != nil {
				sc.Problems = append(sc.Problems, fmt.Sprintf("read %s@%d: %v", Name(i), v.Version, err))
				continue
			}
			if err := cfg.Check(b, i, v.Version, nil); err != nil {
				sc.Problems = append(sc.Problems, fmt.Sprintf("%s@%d in the store: %v", Name(i), v.Version, err))
			}
		}
	}
	return sc
}

// Inspect restores every kept version of every region and compares it with
// the pattern, then runs RestoreAll(0). It reads only; it leaves arbitrary
// bytes in the regions.
func Inspect(s *Set, cfg Config, where string) *Report {
	start := time.Now()
	r := &Report{Where: where, BootID: BootID(), Recovered: s.F.Recovered()}
	defer func() { r.Millis = time.Since(start).Milliseconds() }()
	lists := make([][]engine.VersionInfo, len(s.Cks))
	for i, c := range s.Cks {
		lists[i] = c.Versions()
	}
	for _, vi := range lists[0] {
		r.Kept = append(r.Kept, vi.Version)
	}
	for i := 1; i < len(lists) && r.Differ == ""; i++ {
		if len(lists[i]) != len(lists[0]) {
			r.Differ = fmt.Sprintf("region %d keeps %d versions, region 0 keeps %d", i, len(lists[i]), len(lists[0]))
			break
		}
		for j := range lists[i] {
			a, b := lists[0][j], lists[i][j]
			if a.Version != b.Version || a.Txn != b.Txn {
				r.Differ = fmt.Sprintf("region %d keeps version %d (txn %d) where region 0 keeps version %d (txn %d)",
					i, b.Version, b.Txn, a.Version, a.Txn)
				break
			}
		}
	}
	newest := 0
	for _, l := range lists {
		if n := len(l); n > 0 {
			newest = max(newest, l[n-1].Version)
		}
	}
	scratch := make([][]byte, len(s.Regions))
	for i := range scratch {
		scratch[i] = make([]byte, len(s.Regions[i]))
	}
	fail := func(v, i int, kind string, err error) {
		f := Failure{V: v, R: i, Kind: kind}
		if len(r.Failures) < 12 {
			f.Msg = err.Error()
			if len(f.Msg) > 300 {
				f.Msg = f.Msg[:300] + "..."
			}
		}
		r.Failures = append(r.Failures, f)
	}
	for i, l := range lists {
		for _, vi := range l {
			v := vi.Version
			clear(s.Regions[i])
			err := s.Cks[i].Restore(v)
			switch {
			case err == nil:
				if err := cfg.Check(s.Regions[i], i, v, scratch[i]); err != nil {
					fail(v, i, "mismatch", err)
				} else {
					r.Restored++
				}
			case errors.Is(err, engine.ErrCorrupt):
				fail(v, i, "corrupt", err)
			default:
				fail(v, i, "error", err)
			}
		}
	}
	if newest > 0 {
		for i := range s.Regions {
			clear(s.Regions[i])
		}
		if err := s.F.RestoreAll(0); err != nil {
			r.RestoreAll = err.Error()
		} else {
			for i, l := range lists {
				if len(l) == 0 {
					r.RestoreAll = fmt.Sprintf("region %d has no version", i)
					break
				}
				if err := cfg.Check(s.Regions[i], i, l[len(l)-1].Version, scratch[i]); err != nil {
					r.RestoreAll = "restored bytes differ: " + err.Error()
					break
				}
			}
		}
	}
	return r
}

// BootID returns the running kernel's boot id, or "".
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Expect is what the guest acknowledged before the cut that produced the
// inspected state (over the file's whole history).
type Expect struct {
	// Acked: every version up to Acked was acknowledged as durable, so
	// Acked must be kept, and every kept version up to it must restore.
	Acked int
	// Saved: the highest version a SaveAll returned for, or one found on disk
	// after a crash or a kill that the next process built on; at most the next
	// one can exist.
	Saved int
	// Keep is the file's KeepVersions.
	Keep int
}

// Stats counts what a report proves.
type Stats struct {
	Versions       int // kept versions inspected
	AckedVersions  int // of them, acknowledged ones (all restored byte-exact unless Problems says otherwise)
	CorruptUnacked int // unacknowledged kept versions refused with ErrCorrupt
	Verified       int // versions recovery verified at Open
	DroppedTxns    int // transactions recovery dropped
}

// Problems judges the report: every entry is a broken durability or
// consistency promise.
func (r *Report) Problems(e Expect) ([]string, Stats) {
	var p []string
	var st Stats
	if r.OpenError != "" {
		return []string{"open: " + r.OpenError}, st
	}
	st.Verified, st.DroppedTxns = r.Recovered.Verified, r.Recovered.DroppedTxns
	st.Versions = len(r.Kept)
	if r.Differ != "" {
		p = append(p, "regions keep different versions: "+r.Differ)
	}
	newest := r.Newest()
	for i, v := range r.Kept {
		if v != r.Kept[0]+i {
			p = append(p, fmt.Sprintf("kept versions are not contiguous: %v", r.Kept))
			break
		}
	}
	if e.Keep == 0 && len(r.Kept) > 0 && r.Kept[0] != 1 {
		p = append(p, fmt.Sprintf("KeepVersions 0, yet versions before %d are gone", r.Kept[0]))
	}
	if e.Keep > 0 && len(r.Kept) != min(e.Keep, newest) {
		p = append(p, fmt.Sprintf("KeepVersions %d and newest version %d, yet %d versions are kept: %v", e.Keep, newest, len(r.Kept), r.Kept))
	}
	if newest < e.Acked {
		p = append(p, fmt.Sprintf("acknowledged version %d lost: the newest kept version is %d", e.Acked, newest))
	}
	if newest > e.Saved+1 {
		p = append(p, fmt.Sprintf("version %d exists, but no SaveAll after version %d ever returned", newest, e.Saved))
	}
	for _, v := range r.Kept {
		if v <= e.Acked {
			st.AckedVersions++
		}
	}
	corrupt := map[int]bool{}
	for _, f := range r.Failures {
		what := fmt.Sprintf("version %d of region %d", f.V, f.R)
		switch {
		case f.Kind == "mismatch":
			p = append(p, fmt.Sprintf("%s: restore returned other bytes than were saved: %s", what, f.Msg))
		case f.Kind != "corrupt":
			p = append(p, fmt.Sprintf("%s: restore failed: %s", what, f.Msg))
		case f.V <= e.Acked:
			p = append(p, fmt.Sprintf("acknowledged %s is corrupt: %s", what, f.Msg))
		default:
			if !corrupt[f.V] {
				corrupt[f.V] = true
				st.CorruptUnacked++
			}
		}
	}
	if newest > 0 && r.RestoreAll != "" {
		p = append(p, "RestoreAll(0): "+r.RestoreAll)
	}
	if r.Store != nil {
		for _, sp := range r.Store.Problems {
			p = append(p, "store: "+sp)
		}
		if r.Store.Newest > e.Saved+1 {
			p = append(p, fmt.Sprintf("the store holds version %d, but no SaveAll after version %d ever returned", r.Store.Newest, e.Saved))
		}
	}
	return p, st
}
