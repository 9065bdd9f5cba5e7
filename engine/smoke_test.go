package engine

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestSmoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.ckp")
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := make([]byte, 5000)
	b := make([]byte, 9<<20)
	ca, err := f.Register("a", a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := f.Register("b", b)
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 5; v++ {
		for i := range a {
			a[i] = byte(v + i)
		}
		for i := range b {
			b[i] = byte(v * i)
		}
		if err := f.SaveAll(); err != nil {
			t.Fatal(err)
		}
	}
	if err := ca.Restore(2); err != nil {
		t.Fatal(err)
	}
	if err := cb.Restore(-3); err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if a[i] != byte(2+i) {
			t.Fatalf("a[%d]", i)
		}
	}
	for i := range b {
		if b[i] != byte(2*i) {
			t.Fatalf("b[%d]", i)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a2 := make([]byte, 5000)
	c, err := f.Register("a", a2)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Versions()) != 5 {
		t.Fatalf("versions %v", c.Versions())
	}
	if err := c.Restore(0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 5000)
	for i := range want {
		want[i] = byte(5 + i)
	}
	if !bytes.Equal(a2, want) {
		t.Fatal("reopen restore mismatch")
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if v := c.Versions(); v[len(v)-1].Version != 6 {
		t.Fatalf("numbering did not continue: %v", v)
	}
	t.Logf("%+v", f.Recovered())
	f.Close()
}
