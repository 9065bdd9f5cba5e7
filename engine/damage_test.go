package engine

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// The damage test: random byte flips and truncations of both files. Open either refuses
// with ErrCorrupt or succeeds; no restore ever returns bytes that differ from what was
// saved; and a writer that opened the damaged file can append again.

var damageSizes = []int{100, 4096, 70000, 1<<20 + 5}

// damageMake writes versions 1..n of every region and returns the paths.
func damageMake(t *testing.T, dir string, n int, opts *Options) string {
	t.Helper()
	path := filepath.Join(dir, "d.ckp")
	f, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	regions := make([][]byte, len(damageSizes))
	for i, sz := range damageSizes {
		regions[i] = make([]byte, sz)
		if _, err := f.Register(fmt.Sprintf("r%d", i), regions[i]); err != nil {
			t.Fatal(err)
		}
	}
	for v := 1; v <= n; v++ {
		for i := range regions {
			crashFill(regions[i], i, v)
		}
		if err := f.SaveAll(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// damageCopy copies both files of src to dst, in the kernel (copy_file_range): the
// bytes never pass through the test's memory, which the race detector would check
// byte by byte.
func damageCopy(t *testing.T, src, dst string) {
	t.Helper()
	for _, suffix := range []string{"", ".idx"} {
		in, err := os.Open(src + suffix)
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(dst+suffix, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err == nil {
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// damageApply flips or truncates at random and says what it did. It reads and writes
// only the bytes it changes (and, to find the end of the used part, the last pages).
func damageApply(t *testing.T, path string, r *rand.Rand) string {
	t.Helper()
	target := path
	if r.IntN(2) == 0 {
		target += ".idx"
	}
	fl, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	st, err := fl.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size := int(st.Size())
	flip := func(i int, x byte) {
		var b [1]byte
		if _, err := fl.ReadAt(b[:], int64(i)); err != nil {
			t.Fatal(err)
		}
		b[0] ^= x
		if _, err := fl.WriteAt(b[:], int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	var what string
	switch r.IntN(4) {
	case 0:
		n := r.IntN(size + 1)
		if err := fl.Truncate(int64(n)); err != nil {
			t.Fatal(err)
		}
		what = fmt.Sprintf("truncate %s to %d", filepath.Base(target), n)
	case 1:
		// Damage near the end of the used part, where torn writes happen.
		k := 1 + r.IntN(8)
		what = fmt.Sprintf("flip %d bytes near the end of %s", k, filepath.Base(target))
		used := damageUsed(t, fl, size)
		for i := 0; i < k && used > 0; i++ {
			flip(max(0, used-1-r.IntN(min(used, 4096))), byte(1+r.IntN(255)))
		}
	default:
		k := 1 + r.IntN(16)
		what = fmt.Sprintf("flip %d random bytes of %s", k, filepath.Base(target))
		for i := 0; i < k && size > 0; i++ {
			flip(r.IntN(size), byte(1+r.IntN(255)))
		}
	}
	return what
}

// damageUsed returns the length of fl (size bytes) without its trailing zero bytes.
func damageUsed(t *testing.T, fl *os.File, size int) int {
	t.Helper()
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		n := min(end, len(buf))
		if _, err := fl.ReadAt(buf[:n], int64(end-n)); err != nil {
			t.Fatal(err)
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				return end - n + i + 1
			}
		}
		end -= n
	}
	return 0
}

// damageCheck opens a damaged copy and checks that nothing wrong is ever served.
func damageCheck(t *testing.T, path string, readOnly bool, what string) (opened bool, restored int) {
	t.Helper()
	f, err := Open(path, &Options{ReadOnly: readOnly})
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: open: %v, want ErrCorrupt or success", what, err)
		}
		return false, 0
	}
	defer f.Close()
	regions := make([][]byte, len(damageSizes))
	cks := make([]*Checkpoint, len(damageSizes))
	for i, sz := range damageSizes {
		regions[i] = make([]byte, sz)
		if cks[i], err = f.Register(fmt.Sprintf("r%d", i), regions[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cks {
		for _, vi := range c.Versions() {
			crashFill(regions[i], 99, 99) // sentinel: must survive a failed restore
			err := c.Restore(vi.Version)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s: restore r%d@%d: %v", what, i, vi.Version, err)
				}
				if cerr := crashCheck(regions[i], 99, 99); cerr != nil {
					t.Fatalf("%s: failed restore modified the region: %v", what, cerr)
				}
				continue
			}
			if cerr := crashCheck(regions[i], i, vi.Version); cerr != nil {
				t.Fatalf("%s: restore served wrong bytes: %v", what, cerr)
			}
			restored++
		}
	}
	if !readOnly {
		// Appending after recovery works, and the new version restores.
		for i := range regions {
			crashFill(regions[i], i, 1000)
		}
		if err := f.SaveAll(); err != nil {
			t.Fatalf("%s: save after recovery: %v", what, err)
		}
		for i, c := range cks {
			crashFill(regions[i], 99, 99)
			if err := c.Restore(0); err != nil {
				t.Fatalf("%s: restore of the new version: %v", what, err)
			}
			if err := crashCheck(regions[i], i, 1000); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	return true, restored
}

func TestDamage(t *testing.T) {
	dir := t.TempDir()
	orig := damageMake(t, dir, 6, &Options{KeepVersions: 4})
	r := rand.New(rand.NewPCG(42, uint64(os.Getpid())))
	rounds := 150
	if testing.Short() {
		rounds = 40
	}
	opened, restored := 0, 0
	for i := 0; i < rounds; i++ {
		path := filepath.Join(dir, fmt.Sprintf("c%d.ckp", i))
		damageCopy(t, orig, path)
		what := damageApply(t, path, r)
		if r.IntN(3) == 0 {
			what += " then " + damageApply(t, path, r)
		}
		// Read-only first: it must not change anything the writer then sees.
		damageCheck(t, path, true, what+" (read-only)")
		ok, n := damageCheck(t, path, false, what)
		if ok {
			opened++
			restored += n
		}
		os.Remove(path)
		os.Remove(path + ".idx")
	}
	t.Logf("%d rounds: %d opened, %d versions restored intact", rounds, opened, restored)
	if opened == 0 || restored == 0 {
		t.Fatal("the damage never left anything usable: the test is not testing recovery")
	}
}

// TestDamageKeepsPrefix: a flip in the index's last record drops only that transaction.
func TestDamageKeepsPrefix(t *testing.T) {
	dir := t.TempDir()
	path := damageMake(t, dir, 5, nil)
	b, err := os.ReadFile(path + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	// Find the last non-zero record and flip a byte in it.
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	last := (end - 1) / 64 * 64
	b[last+10] ^= 0xff
	if err := os.WriteFile(path+".idx", b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec := f.Recovered()
	if !rec.TornTail || rec.DroppedRecords == 0 {
		t.Fatalf("recovery did not report the damage: %+v", rec)
	}
	regions := make([][]byte, len(damageSizes))
	for i, sz := range damageSizes {
		regions[i] = make([]byte, sz)
		c, err := f.Register(fmt.Sprintf("r%d", i), regions[i])
		if err != nil {
			t.Fatal(err)
		}
		// Close appended a durable mark after version 5: losing the mark loses nothing.
		if n := len(c.Versions()); n != 5 {
			t.Fatalf("r%d: %d versions after losing the last record, want 5", i, n)
		}
	}
}
