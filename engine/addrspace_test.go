package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ckp-go/ckp/mmapfile"
)

// Files take virtual address space as their files grow, not MaxSize of it up front: a
// thousand Files are open at once in one process, and a File that outgrows the range it
// reserved first keeps saving, restoring and dropping versions across the boundary.

// TestThousandFilesOpenAtOnce: 1,000 Files with the default MaxSize (1 TiB), each in its
// own directory, are open at once, and each is saved to and restored from while all are
// open; each reserves 1 GiB of address space for its data and 64 MiB for its index.
// Reserving MaxSize per File stopped at about the 120th (ENOMEM): user space on x86-64
// is 128 TiB.
func TestThousandFilesOpenAtOnce(t *testing.T) {
	const n = 1000
	// No prefaulter (it would allocate and fault 16 MiB ahead in each file) and a small
	// growth step: each data file holds 64 KiB on disk, not 8 MiB.
	opts := &Options{NoPrefault: true, ChunkSize: 64 << 10}
	files := make([]*File, 0, n)
	t.Cleanup(func() {
		for _, f := range files {
			_ = f.Close()
		}
	})
	cps := make([]*Checkpoint, n)
	regions := make([][]byte, n)
	root := fuzzDir(t) // in memory where it can be: each File syncs as it is created and closed
	for i := range n {
		dir := filepath.Join(root, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		f, err := Open(filepath.Join(dir, "rank.ckp"), opts)
		if err != nil {
			t.Fatalf("File %d of %d: %v", i+1, n, err)
		}
		files = append(files, f)
		regions[i] = make([]byte, 8<<10)
		cps[i] = apiReg(t, f, "state", regions[i])
		for v := 1; v <= 2; v++ {
			crashFill(regions[i], i, v)
			apiNoErr(t, cps[i].Save(), fmt.Sprintf("File %d: save %d", i, v))
		}
	}
	for i, f := range files {
		if d, x := f.data.Reserved(), f.idx.Reserved(); d != mmapfile.DefaultFirstReserve || x != indexFirstReserve {
			t.Fatalf("File %d reserves %d bytes for its data and %d for its index, want %d and %d", i, d, x, mmapfile.DefaultFirstReserve, indexFirstReserve)
		}
	}
	for i, c := range cps {
		for _, v := range []int{1, 2} {
			clear(regions[i])
			apiNoErr(t, c.Restore(v), fmt.Sprintf("File %d: restore %d", i, v))
			if err := crashCheck(regions[i], i, v); err != nil {
				t.Fatalf("File %d: %v", i, err)
			}
		}
	}
	for i, f := range files {
		if err := f.Close(); err != nil {
			t.Fatalf("File %d: close: %v", i, err)
		}
	}
}

// TestFileGrowsPastFirstReserve: with a first reserve of 2 MiB (for the data file and the
// index alike), a File grows its data file to about 100 MiB and its index past 2 MiB,
// saving regions of growing sizes under retention (so new versions land both beyond the
// old ranges and in space freed inside them), while another goroutine restores an early
// checkpoint over and over through whatever mapping is current. Every kept version then
// restores byte for byte, in the open File, after reopening, and read-only.
func TestFileGrowsPastFirstReserve(t *testing.T) {
	for _, prefault := range []bool{false, true} {
		t.Run(fmt.Sprintf("prefault=%v", prefault), func(t *testing.T) {
			growPastFirstReserve(t, !prefault)
		})
	}
}

func growPastFirstReserve(t *testing.T, noPrefault bool) {
	const (
		first = mmapfile.HugePageSize
		keep  = 2
		saves = 3 // per growing region: the first version is dropped, its space reused
		grow  = 28
		small = 64 // regions saved together: each SaveAll appends a record per region
	)
	path := apiPath(t)
	opts := &Options{KeepVersions: keep, ChunkSize: 256 << 10, NoPrefault: noPrefault, firstReserve: first}
	f := apiOpen(t, path, opts)
	if r := f.data.Reserved(); r != first {
		t.Fatalf("data file reserved %d bytes at first, want %d", r, first)
	}
	reserves := map[int64]bool{first: true} // the data file's, seen between saves

	// Small regions saved together push the index past its first reserve (before the
	// other regions are registered: SaveAll saves them all).
	smalls := make([][]byte, small)
	for i := range smalls {
		smalls[i] = make([]byte, 64)
		apiReg(t, f, fmt.Sprintf("small%d", i), smalls[i])
	}
	var smallSaves int
	for f.idx.Reserved() == first && smallSaves < 2000 {
		smallSaves++
		for i, b := range smalls {
			crashFill(b, 100+i, smallSaves)
		}
		apiNoErr(t, f.SaveAll(), fmt.Sprintf("SaveAll %d", smallSaves))
		reserves[f.data.Reserved()] = true
	}

	// The reader: restores versions 1 and 2 of "early" until told to stop.
	early := make([]byte, 192<<10)
	ec := apiReg(t, f, "early", early)
	for v := 1; v <= keep; v++ {
		crashFill(early, 0, v)
		apiNoErr(t, ec.Save(), "save early")
	}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		restores atomic.Int64
		readErr  error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := 1; !stop.Load(); v = 3 - v {
			err := ec.Restore(v)
			if err == nil {
				err = crashCheck(early, 0, v)
			}
			if err != nil {
				readErr = err
				stop.Store(true)
				return
			}
			restores.Add(1)
		}
	}()

	// Regions of growing sizes push the data file past several reserves.
	regions := make([][]byte, grow+1)
	cps := make([]*Checkpoint, grow+1)
	for r := 1; r <= grow && !stop.Load(); r++ {
		regions[r] = make([]byte, r*128<<10+r*4096)
		cps[r] = apiReg(t, f, fmt.Sprintf("grow%d", r), regions[r])
		for v := 1; v <= saves; v++ {
			crashFill(regions[r], r, v)
			if err := cps[r].Save(); err != nil {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("region %d: save %d: %v", r, v, err)
			}
			reserves[f.data.Reserved()] = true
		}
		// The region saved before this one: its versions were written through an
		// older mapping than the one its restore reads.
		if p := r - 1; p >= 1 {
			for v := saves - keep + 1; v <= saves; v++ {
				clear(regions[p])
				apiNoErr(t, cps[p].Restore(v), fmt.Sprintf("restore %d of region %d", v, p))
				if err := crashCheck(regions[p], p, v); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	if readErr != nil {
		t.Fatalf("restoring the early region while the file grew: %v", readErr)
	}
	if f.idx.Reserved() == first {
		t.Fatalf("index of %d bytes is still in its first reserve", f.idx.Size())
	}
	if len(reserves) < 4 || f.data.Reserved() < 32*first {
		t.Fatalf("data file of %d bytes: reserves seen between saves %v, want four at least, the last 32 times the first at least", f.data.Size(), reserves)
	}
	if restores.Load() == 0 {
		t.Fatal("the reader never restored")
	}
	t.Logf("data file %d MiB, %d reserves up to %d MiB; index %d KiB (%d SaveAlls); %d restores alongside",
		f.data.Size()>>20, len(reserves), f.data.Reserved()>>20, f.idx.Size()>>10, smallSaves, restores.Load())

	// locate returns g's checkpoint name, registering it over b in a File just opened.
	locate := func(g *File, name string, b []byte) *Checkpoint {
		if c, err := g.Locate(name); err == nil {
			return c
		}
		return apiReg(t, g, name, b)
	}
	check := func(g *File, how string) {
		t.Helper()
		for r := 1; r <= grow; r++ {
			c := locate(g, fmt.Sprintf("grow%d", r), regions[r])
			vs := apiVersionNums(c.Versions())
			if len(vs) != keep || vs[keep-1] != saves {
				t.Fatalf("%s: region %d keeps versions %v, want the last %d of %d", how, r, vs, keep, saves)
			}
			for _, v := range vs {
				clear(regions[r])
				apiNoErr(t, c.Restore(v), fmt.Sprintf("%s: restore %d of region %d", how, v, r))
				if err := crashCheck(regions[r], r, v); err != nil {
					t.Fatalf("%s: %v", how, err)
				}
			}
		}
		for i, b := range smalls {
			c := locate(g, fmt.Sprintf("small%d", i), b)
			apiNoErr(t, c.Restore(0), fmt.Sprintf("%s: restore small%d", how, i))
			if err := crashCheck(b, 100+i, smallSaves); err != nil {
				t.Fatalf("%s: %v", how, err)
			}
		}
	}
	check(f, "open File")
	apiNoErr(t, f.Close(), "close")
	g := apiOpen(t, path, opts)
	check(g, "reopened")
	apiNoErr(t, g.Close(), "close the reopened File")
	check(apiOpen(t, path, &Options{ReadOnly: true}), "read-only")
}

// TestMaxSizeExactAcrossReserves: with a first reserve far below a MaxSize that is no
// multiple of 2 MiB, saves fill the data file up to MaxSize exactly, across reserves, and
// the save that does not fit fails with ErrFull leaving every earlier version intact.
func TestMaxSizeExactAcrossReserves(t *testing.T) {
	const maxSize = 10_000_000
	path := apiPath(t)
	f := apiOpen(t, path, &Options{MaxSize: maxSize, ChunkSize: 1 << 20, NoPrefault: true, firstReserve: mmapfile.HugePageSize})
	region := make([]byte, 1<<20)
	c := apiReg(t, f, "r", region)
	limitsSaveUntil(t, c, region, ErrFull)
	if st, err := os.Stat(path); err != nil || st.Size() > maxSize {
		t.Fatalf("data file %v (%v), MaxSize %d", st.Size(), err, maxSize)
	}
	if r := f.data.Reserved(); r != 5*mmapfile.HugePageSize {
		t.Fatalf("reserved %d bytes at the limit, want MaxSize rounded up to 2 MiB", r)
	}
	if err := c.Save(); !errors.Is(err, ErrFull) {
		t.Fatalf("save at the limit: %v, want ErrFull", err)
	}
}
