package engine

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

func repairCheck(t *testing.T, path string, want map[string][]int) {
	t.Helper()
	f, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i, sz := range damageSizes {
		name := fmt.Sprintf("r%d", i)
		vs, err := f.VersionsOf(name)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, v := range vs {
			got = append(got, v.Version)
			b, _, err := f.ReadVersion(name, v.Version)
			if err != nil {
				t.Fatalf("%s@%d: %v", name, v.Version, err)
			}
			if len(b) != sz {
				t.Fatalf("size %d", len(b))
			}
			if err := crashCheck(b, i, v.Version); err != nil {
				t.Fatal(err)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want[name]) {
			t.Fatalf("%s: versions %v, want %v", name, got, want[name])
		}
	}
}

func TestRepairLostIndex(t *testing.T) {
	path := damageMake(t, t.TempDir(), 5, nil)
	if err := os.Remove(path + ".idx"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open without index: %v", err)
	}
	rep, err := Repair(path, &RepairOptions{DryRun: true})
	if err != nil || rep.Versions != 20 {
		t.Fatalf("dry run: %+v %v", rep, err)
	}
	if _, err := os.Stat(path + ".idx"); !os.IsNotExist(err) {
		t.Fatal("dry run wrote an index")
	}
	rep, err = Repair(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Versions != 20 || len(rep.Checkpoints) != 4 || rep.Backup != "" {
		t.Fatalf("report %+v", rep)
	}
	all := []int{1, 2, 3, 4, 5}
	repairCheck(t, path, map[string][]int{"r0": all, "r1": all, "r2": all, "r3": all})
	// A writer can continue the file.
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.Register("r0", make([]byte, damageSizes[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if v := c.Versions(); v[len(v)-1].Version != 6 {
		t.Fatalf("numbering after repair: %v", v)
	}
	f.Close()
}

func TestRepairDropsIncompleteSaveAll(t *testing.T) {
	path := damageMake(t, t.TempDir(), 4, nil)
	// Damage the payload of version 3 of r2: the whole third SaveAll must go.
	f, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	vs, _ := f.VersionsOf("r2")
	off := vs[2].Offset
	f.Close()
	b, _ := os.ReadFile(path)
	b[off+100] ^= 1
	os.WriteFile(path, b, 0o600)
	if err := os.WriteFile(path+".idx", []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Repair(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.DamagedPayload != 1 || rep.Incomplete != 3 || rep.Backup == "" {
		t.Fatalf("report %+v", rep)
	}
	if got, _ := os.ReadFile(rep.Backup); string(got) != "garbage" {
		t.Fatal("old index not kept")
	}
	v := []int{1, 2, 4}
	repairCheck(t, path, map[string][]int{"r0": v, "r1": v, "r2": v, "r3": v})
}

func TestRepairRefusesWhileWriterActive(t *testing.T) {
	path := damageMake(t, t.TempDir(), 1, nil)
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Repair(path, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("repair under a writer: %v", err)
	}
	if active, err := WriterActive(path); err != nil || !active {
		t.Fatalf("WriterActive: %v %v", active, err)
	}
}
