package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/internal/slot"
)

// Tests of retention (Options.KeepVersions): which versions stay visible, that the
// space of dropped versions is reused so both files stop growing, that durable sync
// policies hold freed slots back until the drop is durable, and how retention meets
// reopening with another K, regions that change size and unregistered checkpoints.
//
// Helpers are prefixed with "ret".
//
// The bounds asserted on file sizes, and why:
//
//   - The allocator's frontier (FileInfo.DataUsed). At most K+1 versions of a
//     checkpoint are live at once under a non-durable policy (the K kept and the one
//     being written; the oldest is freed when the new one is published). Each live slot
//     takes at most retSlot bytes below the frontier: its footprint rounded to the
//     64-byte slot unit, the worst padding to its payload alignment (2 MiB for regions
//     of 2 MiB and more, 4 KiB from 16 KiB, 64 B below) and the largest hole tail a slot
//     absorbs as slack (tailAbsorb - 64). The bound asserted is frontier <=
//     slot.HeaderSize + (K+1) * sum of retSlot (retFrontier). (It is not a theorem for
//     every workload, a best-fit allocator can fragment, but it is what the allocator
//     is designed to give a hot loop of fixed-size saves; the 10,000-save test peaks at
//     40 MiB against 44.1 MiB.) Slots of versions a durable point covered are held
//     back once dropped until the drop is durable (see "Durable points and slot reuse"
//     below): under SyncEvery(n) at most K+n slots per checkpoint are live (the issue's
//     bound; the engine now holds back fewer), and after an isolated durable point
//     (File.Sync, Close, compaction) 2K+1.
//
//   - The data file. It grows in ChunkSize steps (mmapfile rounds every Grow up to a
//     chunk) and the prefaulter grows it ahead of the frontier: to the end of its plan
//     for the next save of every registered region plus pfLookahead (16 MiB). The plan
//     can run while a save is in flight (it is woken after each publish and takes f.mu
//     whenever it gets it): it then sees one more set of slots in use and places the
//     next set beyond them. So the true bound is
//     alignUp(retFrontier(slots+1) + pfLookahead, ChunkSize) (retDataBound), where
//     slots is the live slots per checkpoint (K+1, K+n, 2K+1 as above). For the
//     10,000-save test (K=3; 4 KiB, 1 MiB, 8 MiB) that is 72 MiB; the file peaks at
//     64 MiB, more than the simple (K+1)*footprint + ChunkSize + pfLookahead (60 MiB):
//     8 MiB payloads are 2 MiB-aligned (each slot spans 10 MiB) and the prefaulter
//     plans one set ahead.
//
//   - The index file. Compaction rewrites it once it holds more than
//     2*live + compactSlack records (live: the kept versions plus the name records;
//     compactSlack is 1<<18 since the engine made compaction rarer), so after a save it
//     holds at most 2*live + compactSlack + the records of one transaction (a version
//     record per checkpoint, which also carries the retention drop, plus a drop record
//     when the count does not fit, plus name records on a first save, plus a durable
//     mark after a durable point; retIndexBound allows two records per checkpoint
//     and its name records); the prefaulter
//     keeps it pfIndexAhd (256 KiB) ahead of its end and it grows in 1 MiB chunks:
//     alignUp(HeaderSize + records*RecordSize + pfIndexAhd, indexChunk) (retIndexBound).
//     With compactSlack at 1<<18 the 10,000-save test never reaches it (one record per
//     checkpoint per save), so TestRetentionIndexCompacts drives many small checkpoints
//     through several compactions.

// retRegion is a registered region of a retention test.
type retRegion struct {
	name   string
	r      int // crashFill region id
	region []byte
	c      *Checkpoint
}

// retSlot is the most the allocator's frontier can owe to one version of n bytes
// called name (see the file comment).
func retSlot(n int, name string) int64 {
	return alignUp(slot.Footprint(int64(n), len(name)), slotUnit) + (slot.PayloadAlign(int64(n)) - slotUnit) + (tailAbsorb - slotUnit)
}

// retFrontier bounds the allocator's frontier when each region has slots live slots.
func retFrontier(slots int, regs []*retRegion) int64 {
	b := int64(slot.HeaderSize)
	for _, rg := range regs {
		b += int64(slots) * retSlot(len(rg.region), rg.name)
	}
	return b
}

// retDataBound bounds the data file's size when each region has at most slots live
// slots: one more set for the prefaulter's plan, its lookahead, and the chunk rounding.
func retDataBound(slots int, regs []*retRegion, chunk int64) int64 {
	return alignUp(retFrontier(slots+1, regs)+pfLookahead, chunk)
}

// retIndexBound returns the most records the index holds after a save and the most
// bytes its file takes, for checkpoints keeping keep versions each.
func retIndexBound(keep int, regs []*retRegion) (records, size int64) {
	var live, perSave int64
	for _, rg := range regs {
		live += int64(keep) + int64(index.NameRecordCount(len(rg.name)))
		perSave += 2 + int64(index.NameRecordCount(len(rg.name))) // version, drop (names on the first save)
	}
	records = 2*live + compactSlack + perSave
	size = alignUp(index.HeaderSize+records*index.RecordSize+pfIndexAhd, indexChunk)
	return records, size
}

// retSizes returns the sizes of the data and index files at path.
func retSizes(t *testing.T, path string) (data, idx int64) {
	t.Helper()
	d, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	i, err := os.Stat(path + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	return d.Size(), i.Size()
}

func retOpen(t *testing.T, path string, o *Options) *File {
	t.Helper()
	f, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open(%+v): %v", o, err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// retRegister registers one region per size, named names[i], with crashFill region
// ids 0, 1, ...
func retRegister(t *testing.T, f *File, names []string, sizes []int) []*retRegion {
	t.Helper()
	regs := make([]*retRegion, len(sizes))
	for i, n := range sizes {
		rg := &retRegion{name: names[i], r: i, region: make([]byte, n)}
		c, err := f.Register(rg.name, rg.region)
		if err != nil {
			t.Fatalf("Register(%q): %v", rg.name, err)
		}
		rg.c = c
		regs[i] = rg
	}
	return regs
}

// retNums returns the version numbers of vs.
func retNums(vs []VersionInfo) []int {
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = v.Version
	}
	return out
}

// retRange returns lo, lo+1, ..., hi.
func retRange(lo, hi int) []int {
	var out []int
	for v := lo; v <= hi; v++ {
		out = append(out, v)
	}
	return out
}

func retInfo(t *testing.T, f *File) FileInfo {
	t.Helper()
	fi, err := f.Info()
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// retRestoreCheck restores version v of rg and checks it holds the crashFill pattern
// (rg.r, pat).
func retRestoreCheck(t *testing.T, rg *retRegion, v, pat int) {
	t.Helper()
	crashFill(rg.region, 200, v) // something else, so a restore that writes nothing is caught
	if err := rg.c.Restore(v); err != nil {
		t.Fatalf("%s: Restore(%d): %v", rg.name, v, err)
	}
	if err := crashCheck(rg.region, rg.r, pat); err != nil {
		t.Fatalf("%s: Restore(%d): %v", rg.name, v, err)
	}
}

// retWantErr restores v of rg expecting an error of class want and an untouched region.
func retWantErr(t *testing.T, rg *retRegion, v int, want error) {
	t.Helper()
	before := bytes.Clone(rg.region)
	err := rg.c.Restore(v)
	if !errors.Is(err, want) {
		t.Fatalf("%s: Restore(%d) = %v, want %v", rg.name, v, err, want)
	}
	if !bytes.Equal(before, rg.region) {
		t.Fatalf("%s: failed Restore(%d) changed the region", rg.name, v)
	}
}

// Steady state: the required test.

// The steady-state test refills its regions with a new crashFill pattern (an epoch)
// only every retEpochLen saves, and stamps every save (retStamp), so that it costs
// little more than the saves themselves (refilling 9 MiB is cheap, but under the race
// detector it makes the next save's reads several times slower). The three saves
// before each full check (and the last three) each get an epoch of their own: then
// every version checked differs in every block from whatever its slot held before.
const (
	retEpochLen   = 50
	retCheckEvery = 500
)

// retEpoch is the crashFill version of save s in a run of n saves.
func retEpoch(s, n int) int {
	if k := s % retCheckEvery; k == 0 || k > retCheckEvery-3 || s > n-3 {
		return 1<<20 + s
	}
	return (s - 1) / retEpochLen
}

// retStamp makes version s of region r unique: its first and last 8 bytes.
func retStamp(p []byte, r, s int) {
	tag := uint64(r)<<56 | uint64(s)
	binary.LittleEndian.PutUint64(p, tag)
	binary.LittleEndian.PutUint64(p[len(p)-8:], ^tag)
}

// retExpect writes into p the bytes version s of region r must hold.
func retExpect(p []byte, r, s, n int) {
	crashFill(p, r, retEpoch(s, n))
	retStamp(p, r, s)
}

// TestRetentionSteadyState runs 10,000 SaveAlls (1,000 with -short) of three regions
// (4 KiB, 1 MiB, 8 MiB) with KeepVersions 3. After every save the newest three versions
// and only they are listed, and both files are within their bounds; every 500 saves and
// at the end every kept version of every region is restored and compared byte for
// byte, and dropped ones give ErrVersion.
func TestRetentionSteadyState(t *testing.T) {
	n := 10000
	if testing.Short() || raceEnabled {
		// The race detector makes the 9 MiB copies ~10x slower; .ci/run runs the
		// full 10,000 without it.
		n = 1000
	}
	const keep = 3
	path := filepath.Join(t.TempDir(), "steady.ckp")
	opts := &Options{KeepVersions: keep}
	f := retOpen(t, path, opts)
	regs := retRegister(t, f, []string{"ret-4k", "ret-1m", "ret-8m"}, []int{4 << 10, 1 << 20, 8 << 20})
	scratch := make([][]byte, len(regs))
	for i, rg := range regs {
		scratch[i] = make([]byte, len(rg.region))
	}
	// K+1 live slots per checkpoint. Were the index compacted (a durable point; not
	// within 10,000 saves of three checkpoints with compactSlack at 1<<18), the K
	// versions it covers would be held back once dropped until the next durable
	// point: 2K+1.
	frontierMax := retFrontier(keep+1, regs)
	dataMax := retDataBound(keep+1, regs, defaultChunk)
	recMax, idxMax := retIndexBound(keep, regs)
	t.Logf("bounds: frontier %d, data file %d, index %d records / %d bytes", frontierMax, dataMax, recMax, idxMax)
	compacted := false

	check := func(s int) {
		t.Helper()
		for i, rg := range regs {
			kept := retRange(max(1, s-keep+1), s)
			for _, v := range kept {
				crashFill(rg.region, 201, v)
				if err := rg.c.Restore(v); err != nil {
					t.Fatalf("save %d: %s Restore(%d): %v", s, rg.name, v, err)
				}
				retExpect(scratch[i], rg.r, v, n)
				if !bytes.Equal(rg.region, scratch[i]) {
					t.Fatalf("save %d: %s version %d is not what was saved", s, rg.name, v)
				}
			}
			// Relative numbers count over the kept versions.
			for back := 0; back < len(kept); back++ {
				if err := rg.c.Restore(-back); err != nil {
					t.Fatalf("save %d: %s Restore(%d): %v", s, rg.name, -back, err)
				}
				if got := binary.LittleEndian.Uint64(rg.region); got != uint64(rg.r)<<56|uint64(s-back) {
					t.Fatalf("save %d: %s Restore(%d) holds the stamp %#x", s, rg.name, -back, got)
				}
			}
			retWantErr(t, rg, -len(kept), ErrVersion)
			retWantErr(t, rg, s+1, ErrVersion)
			if s > keep {
				retWantErr(t, rg, s-keep, ErrVersion)
				retWantErr(t, rg, 1, ErrVersion)
			}
		}
	}

	start := time.Now()
	var maxData, maxIdx, maxFrontier, maxRecords int64
	refill := true
	for s := 1; s <= n; s++ {
		if refill || retEpoch(s, n) != retEpoch(s-1, n) {
			for _, rg := range regs {
				crashFill(rg.region, rg.r, retEpoch(s, n))
			}
			refill = false
		}
		for _, rg := range regs {
			retStamp(rg.region, rg.r, s)
		}
		if err := f.SaveAll(); err != nil {
			t.Fatalf("SaveAll %d: %v", s, err)
		}
		want := retRange(max(1, s-keep+1), s)
		for _, rg := range regs {
			if got := retNums(rg.c.Versions()); !slices.Equal(got, want) {
				t.Fatalf("save %d: %s lists versions %v, want %v", s, rg.name, got, want)
			}
		}
		data, idx := retSizes(t, path)
		fi := retInfo(t, f)
		if fi.IndexGeneration > 0 && !compacted {
			compacted = true
			frontierMax = retFrontier(2*keep+1, regs)
			dataMax = retDataBound(2*keep+1, regs, defaultChunk)
			t.Logf("save %d: the index was compacted; bounds now frontier %d, data file %d", s, frontierMax, dataMax)
		}
		maxData, maxIdx = max(maxData, data), max(maxIdx, idx)
		maxFrontier, maxRecords = max(maxFrontier, fi.DataUsed), max(maxRecords, fi.IndexRecords)
		if fi.DataUsed > frontierMax {
			t.Fatalf("save %d: allocation frontier at %d, bound %d", s, fi.DataUsed, frontierMax)
		}
		if data > dataMax {
			t.Fatalf("save %d: data file of %d bytes, bound %d", s, data, dataMax)
		}
		if fi.IndexRecords > recMax {
			t.Fatalf("save %d: index holds %d records, bound %d", s, fi.IndexRecords, recMax)
		}
		if idx > idxMax {
			t.Fatalf("save %d: index file of %d bytes, bound %d", s, idx, idxMax)
		}
		if s%retCheckEvery == 0 || s == n {
			check(s)
			refill = true
		}
	}
	fi := retInfo(t, f)
	t.Logf("%d SaveAlls in %v; max data file %d (frontier %d), max index %d bytes (%d records), index rewritten %d times",
		n, time.Since(start), maxData, maxFrontier, maxIdx, maxRecords, fi.IndexGeneration)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The same view after a reopen.
	f = retOpen(t, path, opts)
	regs = retRegister(t, f, []string{"ret-4k", "ret-1m", "ret-8m"}, []int{4 << 10, 1 << 20, 8 << 20})
	for _, rg := range regs {
		if got, want := retNums(rg.c.Versions()), retRange(n-keep+1, n); !slices.Equal(got, want) {
			t.Fatalf("after reopen: %s lists versions %v, want %v", rg.name, got, want)
		}
	}
	check(n)
}

// Durable points and slot reuse.
//
// The rule the engine keeps (save.go publish, alloc.go pending frees, durable.go): the
// slot of a version that a durable point had covered when a save dropped it is reused
// only once that drop is durable too (else a power loss could leave the durable index
// pointing at overwritten data), under every policy. Since commit 365f072 the slot of
// a version that was never durable is reused at once, even under SyncAlways, SyncEvery
// and SyncInterval; before it every slot freed under a durable policy waited. The
// tests below assert the safety rule and the space bound, which hold under both.

// retExtent is the slot of a version.
func retExtent(v VersionInfo) extent { return extent{v.Offset, v.Offset + v.Stored} }

func retOverlap(a, b extent) bool { return a.off < b.end && b.off < a.end }

// retDropped is a slot freed by a save.
type retDropped struct {
	ext     extent
	version int  // the version that was dropped (written by save number version)
	save    int  // the save (counted from 1 in this File) that dropped it
	durable bool // a durable point had covered the version when it was dropped
}

// TestRetentionDurableReuse saves under each policy (some with File.Sync every few
// saves) with small retention, tracking from the offsets the File reports which slot
// every version takes. Durable points are known: every save under SyncAlways, every
// n-th under SyncEvery(n), each File.Sync. Checked:
//
//   - a slot of a version that was durable when a save dropped it is not reused before
//     the first durable point at or after that save;
//   - kept versions never overlap, and restore byte for byte;
//   - at most `slots` distinct slots per checkpoint are used, and the frontier and file
//     stay within the bounds for that many: K+n under SyncEvery(n) (the bound:
//     at worst every version dropped between two durable points is held back), K+1 where
//     there is no durable point, or one after every save (SyncAlways: a slot freed by a
//     save is free once that save returns). For single-region cases with K+1 the count
//     is exact (the slot freed by one save is the one the next save takes).
//
// Regions are small enough that held-back slots never pass 1 MiB (heldMin), so no
// save forces a durable point of its own.
func TestRetentionDurableReuse(t *testing.T) {
	cases := []struct {
		name      string
		pol       SyncPolicy
		every     int // the policy makes every every-th save a durable point (0: none)
		syncEvery int // File.Sync after every syncEvery-th save (0: never)
		keep      int
		sizes     []int
		slots     int  // live slots per checkpoint, at most
		exact     bool // exactly slots distinct slots are used (single region)
	}{
		{"none-k1", SyncNone, 0, 0, 1, []int{256 << 10}, 2, true},
		{"async-k2", SyncAsync, 0, 0, 2, []int{70000}, 3, true},
		{"always-k1", SyncAlways, 1, 0, 1, []int{256 << 10}, 2, true},
		{"every4-k1", SyncEvery(4), 4, 0, 1, []int{256 << 10}, 5, false},
		{"every4-k1-mixed", SyncEvery(4), 4, 0, 1, []int{4 << 10, 256 << 10}, 5, false},
		{"every3-k2", SyncEvery(3), 3, 0, 2, []int{70000}, 5, false},
		{"none-sync4-k1", SyncNone, 0, 4, 1, []int{256 << 10}, 5, false},
		{"interval-sync3-k2", SyncInterval(time.Hour), 0, 3, 2, []int{70000}, 5, false},
	}
	const saves = 120
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "durable.ckp")
			f := retOpen(t, path, &Options{KeepVersions: tc.keep, Sync: tc.pol})
			names := []string{"d0", "d1", "d2"}[:len(tc.sizes)]
			regs := retRegister(t, f, names, tc.sizes)
			frontierMax := retFrontier(tc.slots, regs)
			dataMax := retDataBound(tc.slots, regs, defaultChunk)
			isDurable := func(p int) bool {
				return (tc.every > 0 && p%tc.every == 0) || (tc.syncEvery > 0 && p%tc.syncEvery == 0)
			}
			// nextDurable is the first durable point at or after save x (or a save
			// beyond the run).
			nextDurable := func(x int) int {
				for p := x; p <= saves; p++ {
					if isDurable(p) {
						return p
					}
				}
				return saves + 1
			}
			durableBetween := func(lo, hi int) bool { // a durable point p with lo <= p < hi
				for p := lo; p < hi; p++ {
					if isDurable(p) {
						return true
					}
				}
				return false
			}
			dropped := make([][]retDropped, len(regs))
			prev := make([][]VersionInfo, len(regs))
			offsets := make([]map[int64]bool, len(regs))
			for i := range offsets {
				offsets[i] = map[int64]bool{}
			}
			var maxFrontier int64
			early := 0 // saves that reused a never-durable version's slot before the drop was durable
			for s := 1; s <= saves; s++ {
				for _, rg := range regs {
					crashFill(rg.region, rg.r, s)
				}
				if err := f.SaveAll(); err != nil {
					t.Fatalf("SaveAll %d: %v", s, err)
				}
				for i, rg := range regs {
					vs := rg.c.Versions()
					if got, want := retNums(vs), retRange(max(1, s-tc.keep+1), s); !slices.Equal(got, want) {
						t.Fatalf("save %d: %s versions %v, want %v", s, rg.name, got, want)
					}
					nv := vs[len(vs)-1]
					ne := retExtent(nv)
					offsets[i][nv.Offset] = true
					reusedEarly := false
					for _, d := range dropped[i] {
						if !retOverlap(ne, d.ext) || s > nextDurable(d.save) {
							continue
						}
						if d.durable {
							t.Fatalf("save %d: %s version %d at [%d,%d) reuses the slot [%d,%d) of version %d, which was durable when save %d dropped it, before that drop is durable (save %d)",
								s, rg.name, nv.Version, ne.off, ne.end, d.ext.off, d.ext.end, d.version, d.save, nextDurable(d.save))
						}
						reusedEarly = true
					}
					if reusedEarly && (tc.every > 0 || tc.syncEvery > 0) {
						early++
					}
					for _, o := range vs[:len(vs)-1] {
						if retOverlap(ne, retExtent(o)) {
							t.Fatalf("save %d: %s version %d overlaps kept version %d", s, rg.name, nv.Version, o.Version)
						}
					}
					for _, o := range prev[i] {
						if o.Version < vs[0].Version {
							dropped[i] = append(dropped[i], retDropped{retExtent(o), o.Version, s, durableBetween(o.Version, s)})
						}
					}
					prev[i] = vs
				}
				if tc.syncEvery > 0 && s%tc.syncEvery == 0 {
					if err := f.Sync(); err != nil {
						t.Fatalf("Sync after save %d: %v", s, err)
					}
				}
				fi := retInfo(t, f)
				maxFrontier = max(maxFrontier, fi.DataUsed)
				if fi.DataUsed > frontierMax {
					t.Fatalf("save %d: frontier %d, bound for %d slots per checkpoint %d", s, fi.DataUsed, tc.slots, frontierMax)
				}
				if data, _ := retSizes(t, path); data > dataMax {
					t.Fatalf("save %d: data file of %d bytes, bound %d", s, data, dataMax)
				}
				if s%10 == 0 {
					for _, rg := range regs {
						for _, v := range rg.c.Versions() {
							retRestoreCheck(t, rg, v.Version, v.Version)
						}
					}
				}
			}
			for i, rg := range regs {
				t.Logf("%s: %d distinct slots (bound %d); max frontier %d, bound %d; %d saves reused a never-durable version's slot before its drop was durable",
					rg.name, len(offsets[i]), tc.slots, maxFrontier, frontierMax, early)
				if len(offsets[i]) > tc.slots {
					t.Errorf("%s used %d distinct slots, more than %d", rg.name, len(offsets[i]), tc.slots)
				}
				if tc.exact && len(offsets[i]) != tc.slots {
					t.Errorf("%s used %d distinct slots, want exactly %d (a freed slot is reused as soon as it may be)", rg.name, len(offsets[i]), tc.slots)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			f = retOpen(t, path, &Options{KeepVersions: tc.keep, Sync: tc.pol})
			regs = retRegister(t, f, names, tc.sizes)
			for _, rg := range regs {
				for _, v := range retRange(saves-tc.keep+1, saves) {
					retRestoreCheck(t, rg, v, v)
				}
			}
		})
	}
}

// TestRetentionSyncIntervalHoldsSlots: under SyncInterval (the interval an hour, so
// only File.Sync makes durable points) the slot of a version that File.Sync made
// durable is not reused while the save that dropped it is not durable; after the next
// Sync it is reused, and the frontier stays within three slots (K=1 kept, one being
// written, and the version the second Sync made durable, held once dropped).
func TestRetentionSyncIntervalHoldsSlots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "interval.ckp")
	f := retOpen(t, path, &Options{KeepVersions: 1, Sync: SyncInterval(time.Hour)})
	rg := retRegister(t, f, []string{"iv"}, []int{64 << 10})[0]
	save := func(s int) extent {
		t.Helper()
		crashFill(rg.region, rg.r, s)
		if err := rg.c.Save(); err != nil {
			t.Fatalf("Save %d: %v", s, err)
		}
		vs := rg.c.Versions()
		if got := retNums(vs); !slices.Equal(got, []int{s}) {
			t.Fatalf("save %d: versions %v, want [%d]", s, got, s)
		}
		return retExtent(vs[0])
	}
	sync := func() {
		t.Helper()
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	var used []extent
	held := save(1)
	sync() // version 1 is durable; save 2 drops it
	for s := 2; s <= 10; s++ {
		e := save(s)
		if retOverlap(e, held) {
			t.Fatalf("save %d at [%d,%d) reuses the slot of durable version 1 before its drop is durable", s, e.off, e.end)
		}
		used = append(used, e)
	}
	t.Logf("saves 2..10 without a durable point: frontier %d", retInfo(t, f).DataUsed)
	sync() // the drop of version 1 is durable; so is version 10, which save 11 drops
	before := retInfo(t, f).DataUsed
	bound := retFrontier(3, []*retRegion{rg})
	held = used[len(used)-1]
	reused := false
	for s := 11; s <= 18; s++ {
		e := save(s)
		reused = reused || retOverlap(e, extent{slot.HeaderSize, before})
		if retOverlap(e, held) {
			t.Fatalf("save %d at [%d,%d) reuses the slot of durable version 10 before its drop is durable", s, e.off, e.end)
		}
		// Live: the kept version, the one being written and, held, version 10.
		if fi := retInfo(t, f); fi.DataUsed > bound {
			t.Errorf("save %d after Sync: frontier %d, bound for 3 slots %d", s, fi.DataUsed, bound)
		}
		retRestoreCheck(t, rg, s, s)
	}
	if !reused {
		t.Errorf("no save after Sync reused freed space")
	}
}

// Reopening with another K.

// TestRetentionReopenSmallerK: a file written keeping everything (20 versions of two
// checkpoints) reopened with K=3 still lists all 20 until the next save of each
// checkpoint, which leaves 3 of it; the space of the 18 dropped is reused, so the
// next saves of the same size do not move the frontier (nor, without the
// prefaulter, the file size).
func TestRetentionReopenSmallerK(t *testing.T) {
	for _, noPF := range []bool{true, false} {
		t.Run(fmt.Sprintf("noPrefault=%v", noPF), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "smallerk.ckp")
			names, sizes := []string{"p", "q"}, []int{256 << 10, 4 << 10}
			f := retOpen(t, path, &Options{NoPrefault: noPF})
			regs := retRegister(t, f, names, sizes)
			for s := 1; s <= 20; s++ {
				for _, rg := range regs {
					crashFill(rg.region, rg.r, s)
				}
				if err := f.SaveAll(); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			k3 := &Options{KeepVersions: 3, NoPrefault: noPF}
			// Opening (and closing) with K=3 drops nothing.
			for round := 0; round < 2; round++ {
				f = retOpen(t, path, k3)
				regs = retRegister(t, f, names, sizes)
				for _, rg := range regs {
					if got := retNums(rg.c.Versions()); !slices.Equal(got, retRange(1, 20)) {
						t.Fatalf("round %d: %s lists %v after reopening with K=3, want 1..20", round, rg.name, got)
					}
					retRestoreCheck(t, rg, 1, 1)
					retRestoreCheck(t, rg, -19, 1)
				}
				if fi := retInfo(t, f); fi.Versions != 40 {
					t.Fatalf("round %d: Info lists %d versions, want 40", round, fi.Versions)
				}
				if round == 0 {
					if err := f.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
			p, q := regs[0], regs[1]
			old := p.c.Versions()
			crashFill(p.region, p.r, 21)
			if err := p.c.Save(); err != nil {
				t.Fatal(err)
			}
			if got := retNums(p.c.Versions()); !slices.Equal(got, []int{19, 20, 21}) {
				t.Fatalf("p after the first save with K=3: %v, want [19 20 21]", got)
			}
			if got := retNums(q.c.Versions()); !slices.Equal(got, retRange(1, 20)) {
				t.Fatalf("q (not saved) after a save of p: %v, want 1..20", got)
			}
			for _, v := range []int{1, 18, -3} {
				retWantErr(t, p, v, ErrVersion)
			}
			retRestoreCheck(t, p, -2, 19)
			retRestoreCheck(t, p, 21, 21)
			retRestoreCheck(t, q, 1, 1)
			var freed []extent
			for _, v := range old[:18] {
				freed = append(freed, retExtent(v))
			}
			fi0 := retInfo(t, f)
			data0, _ := retSizes(t, path)
			for s := 22; s <= 31; s++ {
				crashFill(p.region, p.r, s)
				if err := p.c.Save(); err != nil {
					t.Fatal(err)
				}
				vs := p.c.Versions()
				e := retExtent(vs[len(vs)-1])
				in := false
				for _, d := range freed {
					in = in || retOverlap(e, d)
				}
				if !in {
					t.Errorf("save %d of p at [%d,%d) reuses none of the 18 freed slots", s, e.off, e.end)
				}
				fi := retInfo(t, f)
				if fi.DataUsed > fi0.DataUsed {
					t.Errorf("save %d of p: frontier grew from %d to %d", s, fi0.DataUsed, fi.DataUsed)
				}
				data, _ := retSizes(t, path)
				if noPF && data != data0 {
					t.Errorf("save %d of p: data file grew from %d to %d", s, data0, data)
				}
				if bound := alignUp(fi0.DataUsed+retSlot(len(p.region), p.name)+retSlot(len(q.region), q.name)+pfLookahead, defaultChunk); data > bound {
					t.Errorf("save %d of p: data file of %d bytes, bound %d", s, data, bound)
				}
				if got := retNums(vs); !slices.Equal(got, retRange(s-2, s)) {
					t.Fatalf("save %d of p: versions %v", s, got)
				}
			}
			crashFill(q.region, q.r, 21)
			if err := q.c.Save(); err != nil {
				t.Fatal(err)
			}
			if got := retNums(q.c.Versions()); !slices.Equal(got, []int{19, 20, 21}) {
				t.Fatalf("q after its first save with K=3: %v, want [19 20 21]", got)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			f = retOpen(t, path, k3)
			regs = retRegister(t, f, names, sizes)
			for _, v := range []int{29, 30, 31} {
				retRestoreCheck(t, regs[0], v, v)
			}
			for _, v := range []int{19, 20, 21} {
				retRestoreCheck(t, regs[1], v, v)
			}
		})
	}
}

// TestRetentionRegionChangesSize: a checkpoint saved at one size is reopened with a
// bigger region. Saves continue the numbering; the versions of the old size give
// ErrSize until retention drops them in turn; the frontier stays bounded and stops
// growing. Then the same back to the smaller size.
func TestRetentionRegionChangesSize(t *testing.T) {
	const keep = 3
	path := filepath.Join(t.TempDir(), "resize.ckp")
	opts := &Options{KeepVersions: keep}
	small, big := 64<<10, 200000
	f := retOpen(t, path, opts)
	rg := retRegister(t, f, []string{"g"}, []int{small})[0]
	for s := 1; s <= 5; s++ {
		crashFill(rg.region, rg.r, s)
		if err := rg.c.Save(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f = retOpen(t, path, opts)
	rg = retRegister(t, f, []string{"g"}, []int{big})[0]
	crashFill(rg.region, 99, 0)
	for _, v := range []int{3, 4, 5, 0, -2} {
		retWantErr(t, rg, v, ErrSize)
	}
	retWantErr(t, rg, 2, ErrVersion)
	// Live: K+1 slots of the big size, and the small versions. Those Close made
	// durable, so once dropped their K slots are held back until the next durable
	// point (none comes under SyncNone: 3 x 64 KiB is far below heldMin); before the
	// reopen there were at most K+1 small slots.
	smallSlot, bigSlot := retSlot(small, "g"), retSlot(big, "g")
	frontierMax := int64(slot.HeaderSize) + (keep+1)*(smallSlot+bigSlot)
	var early, late int64
	const saves = 108
	for s := 6; s <= saves; s++ {
		crashFill(rg.region, rg.r, s)
		if err := rg.c.Save(); err != nil {
			t.Fatal(err)
		}
		vs := rg.c.Versions()
		if got := retNums(vs); !slices.Equal(got, retRange(s-2, s)) {
			t.Fatalf("save %d: versions %v", s, got)
		}
		for _, v := range vs {
			want := big
			if v.Version <= 5 {
				want = small
			}
			if v.Size != int64(want) {
				t.Fatalf("save %d: version %d has size %d, want %d", s, v.Version, v.Size, want)
			}
		}
		switch s {
		case 6:
			retWantErr(t, rg, 4, ErrSize)
			retWantErr(t, rg, 5, ErrSize)
			retWantErr(t, rg, -1, ErrSize)
			retWantErr(t, rg, 3, ErrVersion)
			retRestoreCheck(t, rg, 6, 6)
		case 8:
			for _, v := range []int{3, 4, 5} {
				retWantErr(t, rg, v, ErrVersion)
			}
			for _, v := range []int{6, 7, 8} {
				retRestoreCheck(t, rg, v, v)
			}
			crashFill(rg.region, rg.r, s)
		}
		fi := retInfo(t, f)
		if fi.DataUsed > frontierMax {
			t.Fatalf("save %d: frontier %d, bound %d", s, fi.DataUsed, frontierMax)
		}
		if data, _ := retSizes(t, path); data > alignUp(frontierMax+bigSlot+pfLookahead, defaultChunk) {
			t.Fatalf("save %d: data file of %d bytes", s, data)
		}
		if s <= 58 {
			early = max(early, fi.DataUsed)
		} else {
			late = max(late, fi.DataUsed)
		}
	}
	t.Logf("frontier: max %d over saves 6..58, %d over 59..%d (bound %d)", early, late, saves, frontierMax)
	if late > early {
		t.Errorf("the frontier kept growing: %d over saves 6..58, %d later", early, late)
	}
	for _, v := range retRange(saves-2, saves) {
		retRestoreCheck(t, rg, v, v)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// Back to the small size.
	f = retOpen(t, path, opts)
	rg = retRegister(t, f, []string{"g"}, []int{small})[0]
	retWantErr(t, rg, 0, ErrSize)
	for s := saves + 1; s <= saves+3; s++ {
		crashFill(rg.region, rg.r, s)
		if err := rg.c.Save(); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range retRange(saves+1, saves+3) {
		retRestoreCheck(t, rg, v, v)
	}
	retWantErr(t, rg, saves, ErrVersion)
}

// TestRetentionUnregistered: retention applies at each save of a checkpoint, so an
// unregistered checkpoint keeps its versions however often the others are saved, and
// across a reopen with a smaller K, until it is registered and saved again.
func TestRetentionUnregistered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unreg.ckp")
	f := retOpen(t, path, &Options{KeepVersions: 2})
	regs := retRegister(t, f, []string{"a", "b"}, []int{4 << 10, 70000})
	a, b := regs[0], regs[1]
	for s := 1; s <= 5; s++ {
		crashFill(a.region, a.r, s)
		crashFill(b.region, b.r, s)
		if err := f.SaveAll(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.c.Unregister(); err != nil {
		t.Fatal(err)
	}
	for s := 6; s <= 15; s++ {
		crashFill(a.region, a.r, s)
		if err := a.c.Save(); err != nil {
			t.Fatal(err)
		}
	}
	for s := 16; s <= 18; s++ {
		crashFill(a.region, a.r, s)
		if err := f.SaveAll(); err != nil {
			t.Fatal(err)
		}
	}
	wantB := []int{4, 5}
	if vs, err := f.VersionsOf("b"); err != nil || !slices.Equal(retNums(vs), wantB) {
		t.Fatalf("VersionsOf(b) while unregistered = %v, %v; want %v", retNums(vs), err, wantB)
	}
	if got := retNums(a.c.Versions()); !slices.Equal(got, []int{17, 18}) {
		t.Fatalf("a: %v, want [17 18]", got)
	}
	if got := f.Checkpoints(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Checkpoints() = %q", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f = retOpen(t, path, &Options{KeepVersions: 1})
	if vs, err := f.VersionsOf("b"); err != nil || !slices.Equal(retNums(vs), wantB) {
		t.Fatalf("VersionsOf(b) after reopening with K=1 = %v, %v; want %v", retNums(vs), err, wantB)
	}
	if vs, err := f.VersionsOf("a"); err != nil || !slices.Equal(retNums(vs), []int{17, 18}) {
		t.Fatalf("VersionsOf(a) after reopening with K=1 = %v, %v", retNums(vs), err)
	}
	regs = retRegister(t, f, []string{"b"}, []int{70000})
	b = regs[0]
	b.r = 1
	retRestoreCheck(t, b, 4, 4)
	retRestoreCheck(t, b, 5, 5)
	crashFill(b.region, b.r, 6)
	if err := b.c.Save(); err != nil {
		t.Fatal(err)
	}
	if got := retNums(b.c.Versions()); !slices.Equal(got, []int{6}) {
		t.Fatalf("b after a save with K=1: %v, want [6]", got)
	}
	retRestoreCheck(t, b, 6, 6)
	retWantErr(t, b, 5, ErrVersion)
	if vs, err := f.VersionsOf("a"); err != nil || !slices.Equal(retNums(vs), []int{17, 18}) {
		t.Fatalf("VersionsOf(a) (unregistered, not saved) = %v, %v", retNums(vs), err)
	}
}

// TestRetentionIndexCompacts saves many small checkpoints under retention until the
// index has been compacted at least twice (once with -short), checking after every SaveAll that the
// index holds no more records, and its file no more bytes, than the bound (see the
// file comment): the index stops growing too. Compaction is a durable point (under
// every policy since commit 365f072), after which the versions it covered are held
// back when dropped, until the next durable point: the data bound is that of 2K+1 slots
// per checkpoint under SyncNone, K+4 under SyncEvery(4). The kept versions are intact
// after the compactions and after a reopen.
func TestRetentionIndexCompacts(t *testing.T) {
	const keep = 2
	const nregs = 128
	for _, tc := range []struct {
		name  string
		pol   SyncPolicy
		slots int // live slots per checkpoint, at most
	}{
		// Compaction is a durable point: the K versions it covers are held back
		// once dropped, until the next durable point: K+1 live plus K held.
		{"none", SyncNone, 2*keep + 1},
		// SyncEvery(4): K+4 (the bound), which covers 2K+1 too.
		{"every4", SyncEvery(4), keep + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "compact.ckp")
			opts := &Options{KeepVersions: keep, Sync: tc.pol}
			f := retOpen(t, path, opts)
			names := make([]string, nregs)
			sizes := make([]int, nregs)
			for i := range names {
				names[i], sizes[i] = fmt.Sprintf("ix%03d", i), 8
			}
			regs := retRegister(t, f, names, sizes)
			recMax, idxMax := retIndexBound(keep, regs)
			frontierMax := retFrontier(tc.slots, regs)
			dataMax := retDataBound(tc.slots, regs, defaultChunk)
			maxSaves := 4 * int(recMax) / nregs
			gens := uint64(2)
			if testing.Short() {
				gens = 1
			}
			var maxIdx, maxRecords, maxFrontier int64
			s := 0
			for gen := uint64(0); gen < gens; {
				s++
				if s > maxSaves {
					t.Fatalf("the index was compacted %d times in %d SaveAlls (%d records each), bound %d records", gen, s-1, nregs, recMax)
				}
				for _, rg := range regs {
					binary.LittleEndian.PutUint64(rg.region, uint64(rg.r)<<32|uint64(s))
				}
				if err := f.SaveAll(); err != nil {
					t.Fatalf("SaveAll %d: %v", s, err)
				}
				fi := retInfo(t, f)
				gen = fi.IndexGeneration
				data, idx := retSizes(t, path)
				maxIdx, maxRecords, maxFrontier = max(maxIdx, idx), max(maxRecords, fi.IndexRecords), max(maxFrontier, fi.DataUsed)
				if fi.IndexRecords > recMax {
					t.Fatalf("SaveAll %d: index holds %d records, bound %d", s, fi.IndexRecords, recMax)
				}
				if idx > idxMax {
					t.Fatalf("SaveAll %d: index file of %d bytes, bound %d", s, idx, idxMax)
				}
				if fi.DataUsed > frontierMax {
					t.Fatalf("SaveAll %d: frontier %d, bound %d", s, fi.DataUsed, frontierMax)
				}
				if data > dataMax {
					t.Fatalf("SaveAll %d: data file of %d bytes, bound %d", s, data, dataMax)
				}
			}
			t.Logf("%d SaveAlls of %d checkpoints: index compacted %d times; max %d records, %d bytes (bounds %d, %d); max frontier %d (bound %d)",
				s, nregs, gens, maxRecords, maxIdx, recMax, idxMax, maxFrontier, frontierMax)
			check := func(when string) {
				t.Helper()
				for _, rg := range regs {
					if got := retNums(rg.c.Versions()); !slices.Equal(got, []int{s - 1, s}) {
						t.Fatalf("%s: %s lists %v, want [%d %d]", when, rg.name, got, s-1, s)
					}
					for _, v := range []int{s - 1, s} {
						if err := rg.c.Restore(v); err != nil {
							t.Fatalf("%s: %s Restore(%d): %v", when, rg.name, v, err)
						}
						if got := binary.LittleEndian.Uint64(rg.region); got != uint64(rg.r)<<32|uint64(v) {
							t.Fatalf("%s: %s version %d holds %#x", when, rg.name, v, got)
						}
					}
					retWantErr(t, rg, s-2, ErrVersion)
				}
			}
			check("after compaction")
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			f = retOpen(t, path, opts)
			regs = retRegister(t, f, names, sizes)
			check("after reopen")
		})
	}
}

// TestRetentionReopenFewerThanManyVersions reopens a keep-all file holding 65,537
// versions of one checkpoint with K = 1, 2 and 3. The first save then drops 65,536 or
// more versions: more than the 16-bit drop count a version record carries, so the
// engine writes a separate drop record. Exactly the newest K must remain, before and
// after a reopen, and the next saves must reuse the freed space.
func TestRetentionReopenFewerThanManyVersions(t *testing.T) {
	const n = 1<<16 + 1
	for _, keep := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("K=%d", keep), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "many.ckp")
			f := retOpen(t, path, &Options{NoPrefault: true})
			rg := retRegister(t, f, []string{"m"}, []int{8})[0]
			for v := 1; v <= n; v++ {
				binary.LittleEndian.PutUint64(rg.region, uint64(v))
				if err := rg.c.Save(); err != nil {
					t.Fatalf("Save %d: %v", v, err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			opts := &Options{KeepVersions: keep}
			f = retOpen(t, path, opts)
			rg = retRegister(t, f, []string{"m"}, []int{8})[0]
			if got := len(rg.c.Versions()); got != n {
				t.Fatalf("%d versions after reopening with K=%d, want %d", got, keep, n)
			}
			binary.LittleEndian.PutUint64(rg.region, n+1)
			if p, err := retSaveRecovering(rg.c); p != nil {
				t.Fatalf("the first save with K=%d over %d kept versions panicked: %v", keep, n, p)
			} else if err != nil {
				t.Fatalf("the first save with K=%d over %d kept versions: %v", keep, n, err)
			}
			verify := func(when string, last int) {
				t.Helper()
				want := retRange(last-keep+1, last)
				if got := retNums(rg.c.Versions()); !slices.Equal(got, want) {
					t.Fatalf("%s: versions %v, want %v", when, got, want)
				}
				for _, v := range want {
					if err := rg.c.Restore(v); err != nil {
						t.Fatalf("%s: Restore(%d): %v", when, v, err)
					}
					if got := binary.LittleEndian.Uint64(rg.region); got != uint64(v) {
						t.Fatalf("%s: version %d holds %d", when, v, got)
					}
				}
				retWantErr(t, rg, last-keep, ErrVersion)
				retWantErr(t, rg, 1, ErrVersion)
			}
			verify("after the first save", n+1)
			front := retInfo(t, f).DataUsed
			for v := n + 2; v <= n+11; v++ {
				binary.LittleEndian.PutUint64(rg.region, uint64(v))
				if err := rg.c.Save(); err != nil {
					t.Fatal(err)
				}
				if fi := retInfo(t, f); fi.DataUsed > front {
					t.Fatalf("save %d: frontier grew from %d to %d though %d slots were freed", v, front, fi.DataUsed, n+1-keep)
				}
			}
			verify("after more saves", n+11)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			f = retOpen(t, path, opts)
			rg = retRegister(t, f, []string{"m"}, []int{8})[0]
			verify("after reopen", n+11)
		})
	}
}

// retSaveRecovering saves c and turns a panic into a value, so that an engine panic
// fails one test instead of killing the test binary.
func retSaveRecovering(c *Checkpoint) (p any, err error) {
	defer func() { p = recover() }()
	return nil, c.Save()
}
