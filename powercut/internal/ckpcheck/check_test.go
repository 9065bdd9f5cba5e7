package ckpcheck

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/engine"
)

func TestPattern(t *testing.T) {
	for _, n := range []int{1, 7, 8, 23, 24, 25, 4096, 2<<20 + 100} {
		a := make([]byte, n)
		Fill(a, 7, 2, 5)
		if err := Check(a, 7, 2, 5, nil); err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		for _, other := range [][3]int{{8, 2, 5}, {7, 1, 5}, {7, 2, 6}} {
			if n < 32 { // the header has no seed; shorter regions may not differ
				continue
			}
			if err := Check(a, uint64(other[0]), other[1], other[2], nil); err == nil {
				t.Errorf("size %d: pattern (7,2,5) passes as %v", n, other)
			}
		}
	}
	a := make([]byte, 64<<10)
	Fill(a, 1, 0, 9)
	b := make([]byte, len(a))
	Fill(b, 1, 0, 4)
	copy(a[8192:12288], b[8192:12288]) // a block of version 4 in version 9
	err := Check(a, 1, 0, 9, nil)
	if err == nil || !strings.Contains(err.Error(), "the word of version 4") || !strings.Contains(err.Error(), "[8192, 12288]") {
		t.Errorf("mixed versions: %v", err)
	}
	clear(a[100:200])
	if err := Check(a, 1, 0, 9, nil); err == nil || !strings.Contains(err.Error(), "at byte 100: zero bytes") {
		t.Errorf("zeroed bytes: %v", err)
	}
}

func TestParseSizes(t *testing.T) {
	got, err := ParseSizes("4096,2x64,262144")
	if err != nil || !reflect.DeepEqual(got, []int{4096, 64, 64, 262144}) {
		t.Errorf("ParseSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "x4", "2x", "-1", "4k"} {
		if _, err := ParseSizes(bad); err == nil {
			t.Errorf("ParseSizes(%q) succeeded", bad)
		}
	}
}

func TestProblems(t *testing.T) {
	ok := &Report{Kept: []int{3, 4, 5}, Restored: 9}
	if p, st := ok.Problems(Expect{Acked: 4, Saved: 5, Keep: 3}); len(p) != 0 || st.AckedVersions != 2 {
		t.Errorf("fine report: %q %+v", p, st)
	}
	cases := []struct {
		r    Report
		e    Expect
		want string
	}{
		{Report{Kept: []int{1, 2}}, Expect{Acked: 3, Saved: 3}, "acknowledged version 3 lost"},
		{Report{Kept: []int{1, 2, 3, 4}}, Expect{Acked: 1, Saved: 2}, "no SaveAll after version 2"},
		{Report{Kept: []int{2, 3}}, Expect{Acked: 3, Saved: 3}, "KeepVersions 0, yet versions before 2 are gone"},
		{Report{Kept: []int{3}}, Expect{Acked: 3, Saved: 3, Keep: 2}, "KeepVersions 2 and newest version 3, yet 1 versions"},
		{Report{Kept: []int{1, 3}}, Expect{Acked: 3, Saved: 3}, "not contiguous"},
		{Report{Kept: []int{1}, Differ: "x"}, Expect{Acked: 1, Saved: 1}, "regions keep different versions"},
		{Report{Kept: []int{1, 2}, Failures: []Failure{{V: 2, R: 1, Kind: "corrupt"}}}, Expect{Acked: 2, Saved: 2}, "acknowledged version 2 of region 1 is corrupt"},
		{Report{Kept: []int{1, 2}, Failures: []Failure{{V: 2, R: 0, Kind: "mismatch"}}}, Expect{Acked: 1, Saved: 2}, "other bytes than were saved"},
		{Report{Kept: []int{1}, RestoreAll: "boom"}, Expect{Acked: 1, Saved: 1}, "RestoreAll(0): boom"},
		{Report{OpenError: "bad"}, Expect{}, "open: bad"},
	}
	for _, c := range cases {
		p, _ := c.r.Problems(c.e)
		if !strings.Contains(strings.Join(p, "\n"), c.want) {
			t.Errorf("%+v with %+v: problems %q, want %q", c.r, c.e, p, c.want)
		}
	}
	// An unacknowledged version refused as corrupt is allowed, and counted.
	r := &Report{Kept: []int{1, 2}, Failures: []Failure{{V: 2, R: 0, Kind: "corrupt"}, {V: 2, R: 1, Kind: "corrupt"}}}
	if p, st := r.Problems(Expect{Acked: 1, Saved: 2}); len(p) != 0 || st.CorruptUnacked != 1 {
		t.Errorf("unacknowledged corrupt version: %q %+v", p, st)
	}
}

// TestInspect runs the inspection on a real file on the host: every version
// byte-exact, then one damaged on purpose.
func TestInspect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.ckp")
	cfg := Config{Sizes: []int{4096, 100, 300<<10 + 3}, Seed: 42}
	opts := &engine.Options{Sync: engine.SyncNone, KeepVersions: 3, NoPrefault: true}
	s, err := Open(path, opts, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 5; v++ {
		for i, r := range s.Regions {
			Fill(r, cfg.Seed, i, v)
		}
		if err := s.F.SaveAll(); err != nil {
			t.Fatal(err)
		}
	}
	r := Inspect(s, cfg, "host")
	if p, st := r.Problems(Expect{Acked: 5, Saved: 5, Keep: 3}); len(p) != 0 || st.AckedVersions != 3 || r.Restored != 9 {
		t.Fatalf("problems %q, stats %+v, report %+v", p, st, r)
	}
	// Save a wrong pattern as version 6: served bytes that differ.
	for i, reg := range s.Regions {
		Fill(reg, cfg.Seed, i, 7)
	}
	if err := s.F.SaveAll(); err != nil {
		t.Fatal(err)
	}
	r = Inspect(s, cfg, "host")
	p, _ := r.Problems(Expect{Acked: 6, Saved: 6, Keep: 3})
	if len(r.Failures) != 3 || r.Failures[0].Kind != "mismatch" || !strings.Contains(strings.Join(p, "\n"), "RestoreAll(0): restored bytes differ") {
		t.Errorf("wrong bytes not caught: problems %q, report %+v", p, r)
	}
	if err := s.F.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSparsePattern(t *testing.T) {
	const n = 5*4096 + 100
	a := make([]byte, n)
	FillSparse(a, 3, 1, 1, 0)
	for v := 2; v <= 40; v++ {
		FillSparse(a, 3, 1, v, v-1) // only the changed blocks
		if err := CheckSparse(a, 3, 1, v, nil); err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if err := CheckSparse(a, 3, 1, v-1, nil); err == nil {
			t.Fatalf("v%d passes as v%d", v, v-1)
		}
	}
	b := make([]byte, n)
	FillSparse(b, 3, 1, 40, 0)
	if !bytes.Equal(a, b) {
		t.Fatal("incremental fill differs from a full one")
	}
	// Some block other than block 0 keeps an older version's bytes.
	kept := false
	for blk := 1; blk*4096 < n; blk++ {
		kept = kept || !SparseChanged(3, 1, blk, 40)
	}
	if !kept {
		t.Fatal("every block changed at version 40")
	}
}
