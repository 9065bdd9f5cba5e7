package cpio

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

type parsed struct {
	ino, mode, nlink, rmaj, rmin uint32
	name                         string
	data                         []byte
}

// parse is an independent newc reader used to check the writer.
func parse(t *testing.T, b []byte) []parsed {
	t.Helper()
	var out []parsed
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("entry at offset %d not 4-aligned", off)
		}
		if len(b)-off < 110 {
			t.Fatalf("short header at %d", off)
		}
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatalf("field %d: %v", i, err)
			}
			f[i] = uint32(v)
		}
		namesize := int(f[11])
		nameEnd := off + 110 + namesize
		if b[nameEnd-1] != 0 {
			t.Fatalf("name not NUL terminated at %d", off)
		}
		name := string(b[off+110 : nameEnd-1])
		dataOff := pad4(nameEnd)
		for _, c := range b[nameEnd:dataOff] {
			if c != 0 {
				t.Fatalf("non-zero name padding in %q", name)
			}
		}
		size := int(f[6])
		data := b[dataOff : dataOff+size]
		next := pad4(dataOff + size)
		for _, c := range b[dataOff+size : next] {
			if c != 0 {
				t.Fatalf("non-zero data padding in %q", name)
			}
		}
		out = append(out, parsed{ino: f[0], mode: f[1], nlink: f[4], rmaj: f[9], rmin: f[10], name: name, data: data})
		off = next
		if name == Trailer {
			if off != len(b) {
				t.Fatalf("%d bytes after trailer", len(b)-off)
			}
			return out
		}
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Dir("dev", 0o755))
	must(w.CharDev("dev/console", 0o600, 5, 1))
	must(w.File("/init", 0o755, []byte("#!")))
	for n := 0; n < 9; n++ { // every name and data length modulo 4
		must(w.File(strings.Repeat("n", n+1), 0o644, bytes.Repeat([]byte{byte(n + 1)}, n)))
	}
	must(w.Symlink("sh", "init"))
	must(w.Close())
	if err := w.Add(Entry{Name: "x", Mode: TypeReg}); err == nil {
		t.Fatal("Add after Close succeeded")
	}

	got := parse(t, buf.Bytes())
	if len(got) != 3+9+1+1 {
		t.Fatalf("got %d entries", len(got))
	}
	check := func(i int, name string, mode uint32, data string) {
		t.Helper()
		e := got[i]
		if e.name != name || e.mode != mode || string(e.data) != data {
			t.Errorf("entry %d = %q %o %q, want %q %o %q", i, e.name, e.mode, e.data, name, mode, data)
		}
	}
	check(0, "dev", TypeDir|0o755, "")
	check(1, "dev/console", TypeChar|0o600, "")
	if got[1].rmaj != 5 || got[1].rmin != 1 {
		t.Errorf("console rdev = %d:%d", got[1].rmaj, got[1].rmin)
	}
	check(2, "init", TypeReg|0o755, "#!")
	for n := 0; n < 9; n++ {
		check(3+n, strings.Repeat("n", n+1), TypeReg|0o644, string(bytes.Repeat([]byte{byte(n + 1)}, n)))
	}
	check(12, "sh", TypeLink|0o777, "init")
	check(13, Trailer, 0, "")
	seen := map[uint32]bool{}
	for _, e := range got[:len(got)-1] {
		if e.ino == 0 || seen[e.ino] {
			t.Errorf("%s: inode %d not unique", e.name, e.ino)
		}
		seen[e.ino] = true
	}
}

func TestGolden(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.File("ab", 0o644, []byte("xyz")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "070701" + "00000001" + "000081a4" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000003" + "00000000" + "00000000" + "00000000" + "00000000" + "00000003" + "00000000" +
		"ab\x00" + "\x00\x00\x00" + // 110+3 = 113 -> pad to 116
		"xyz\x00" +
		"070701" + "00000000" + "00000000" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "0000000b" + "00000000" +
		"TRAILER!!!\x00" + "\x00\x00\x00" // 110+11 = 121 -> 124
	if got := buf.String(); got != want {
		t.Fatalf("archive mismatch\ngot  %q\nwant %q", got, want)
	}
}

func TestErrors(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	for _, e := range []Entry{
		{Name: "", Mode: TypeReg},
		{Name: "/", Mode: TypeReg},
		{Name: Trailer, Mode: TypeReg},
		{Name: "a\x00b", Mode: TypeReg},
		{Name: "notype", Mode: 0o644},
		{Name: "dir", Mode: TypeDir | 0o755, Data: []byte("x")},
	} {
		if err := w.Add(e); err == nil {
			t.Errorf("Add(%q, %o) succeeded", e.Name, e.Mode)
		}
	}
}

// TestCpioTool cross-checks with GNU cpio when it is installed.
func TestCpioTool(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	_ = w.Dir("d", 0o755)
	_ = w.File("d/f", 0o644, []byte("hello"))
	_ = w.CharDev("d/c", 0o600, 5, 1)
	_ = w.Close()
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{" d\n", " d/f\n", "5,", " d/c\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("cpio -t output lacks %q:\n%s", want, s)
		}
	}
}
