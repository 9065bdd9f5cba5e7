package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/index"
	"golang.org/x/sys/unix"
)

func TestCat(t *testing.T) {
	fx := mainFixture(t)
	for _, tc := range []struct {
		arg  string
		name string
		v    int
	}{
		{"alpha", "alpha", 7},
		{"alpha@0", "alpha", 7},
		{"alpha@5", "alpha", 5},
		{"alpha@6", "alpha", 6},
		{"alpha@-1", "alpha", 6},
		{"alpha@-2", "alpha", 5},
		{"alpha@+5", "alpha", 5},
		{"beta@2", "beta@2", 5},    // "beta" is no checkpoint: the whole argument is the name
		{"beta@2@3", "beta@2", 3},  // split at the last '@'
		{"beta@2@-1", "beta@2", 4}, // relative
		{"space name@4", "space name", 4},
		{"日本語@-2", "日本語", 3},
		{`"ctl\x01\n"@3`, "ctl\x01\n", 3}, // the quoted form, with a version
		{`"\xff\xferaw"`, "\xff\xferaw", 5},
		{"ctl\x01\n@-1", "ctl\x01\n", 4}, // the raw bytes
	} {
		r := mustRun(t, 0, fx.dir, "cat", fx.file, tc.arg)
		if want := fx.want[tc.name][tc.v]; r.stdout != string(want) {
			t.Fatalf("cat %q: got %d bytes, want version %d of %q (%d bytes)", tc.arg, len(r.stdout), tc.v, tc.name, len(want))
		}
		if r.stderr != "" {
			t.Fatalf("cat %q: stderr %q", tc.arg, r.stderr)
		}
	}
	for _, tc := range []struct{ arg, msg string }{
		{"alpha@2", "no longer kept"},
		{"alpha@9", "does not exist"},
		{"alpha@-3", "only 3 kept"},
		{"nope", `no checkpoint nope`},
		{"ctl", `no checkpoint ctl`},
		{"\x01x@2", `no checkpoint "\x01x"`},
	} {
		r := mustRun(t, 2, fx.dir, "cat", fx.file, tc.arg)
		oneErrorLine(t, r, tc.msg)
		if r.stdout != "" {
			t.Fatalf("cat %q wrote to stdout on error", tc.arg)
		}
	}
}

func TestSplitVersion(t *testing.T) {
	for _, tc := range []struct {
		arg, name string
		v         int
		has       bool
	}{
		{"a", "a", 0, false},
		{"a@3", "a", 3, true},
		{"a@-1", "a", -1, true},
		{"a@0", "a", 0, true},
		{"a@b", "a@b", 0, false},
		{"a@b@2", "a@b", 2, true},
		{"a@", "a@", 0, false},
		{"@2", "", 2, true},
		{"a@2x", "a@2x", 0, false},
		{"a@99999999999999999999999", "a@99999999999999999999999", 0, false},
	} {
		name, v, has := splitVersion(tc.arg)
		if name != tc.name || v != tc.v || has != tc.has {
			t.Errorf("splitVersion(%q) = %q, %d, %v; want %q, %d, %v", tc.arg, name, v, has, tc.name, tc.v, tc.has)
		}
	}
}

func TestShowName(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"alpha", "alpha"},
		{"space name", "space name"},
		{"日本語", "日本語"},
		{"a@b", "a@b"},
		{"ctl\x01", `"ctl\x01"`},
		{"new\nline", `"new\nline"`},
		{"\xff", `"\xff"`},
		{`"quoted"`, `"\"quoted\""`},
		{" lead", `" lead"`},
		{"trail ", `"trail "`},
		{"nbsp\u00a0", `"nbsp\u00a0"`},
		{"esc\x1b[31m", `"esc\x1b[31m"`},
	} {
		if got := showName(tc.in); got != tc.out {
			t.Errorf("showName(%q) = %s, want %s", tc.in, got, tc.out)
		}
		if n, ok := findName([]string{tc.in}, showName(tc.in)); !ok || n != tc.in {
			t.Errorf("findName does not map %s back to %q", showName(tc.in), tc.in)
		}
	}
}

func TestRefuseTerminal(t *testing.T) {
	for _, tc := range []struct {
		data          string
		term, force   bool
		refuse, isBin bool
	}{
		{"hello\n", true, false, false, false},
		{"tab\tcr\r\n", true, false, false, false},
		{"日本語\n", true, false, false, false},
		{"nul\x00", true, false, true, true},
		{"esc\x1b[2J", true, false, true, true},
		{"\xff\xfe", true, false, true, true},
		{"c1\u0085", true, false, true, true},
		{"del\x7f", true, false, true, true},
		{"nul\x00", false, false, false, true},
		{"nul\x00", true, true, false, true},
	} {
		if got := isBinary([]byte(tc.data)); got != tc.isBin {
			t.Errorf("isBinary(%q) = %v", tc.data, got)
		}
		if got := refuseTerminal(tc.term, []byte(tc.data), tc.force); got != tc.refuse {
			t.Errorf("refuseTerminal(%v, %q, %v) = %v", tc.term, tc.data, tc.force, got)
		}
	}
}

// TestCatTerminal runs cat with its standard output on a pseudo-terminal.
func TestCatTerminal(t *testing.T) {
	fx := mainFixture(t)
	master, slave, err := openPty()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer master.Close()
	defer slave.Close()
	go func() { // drain what reaches the terminal
		buf := make([]byte, 4096)
		for {
			if _, err := master.Read(buf); err != nil {
				return
			}
		}
	}()
	run := func(args ...string) result {
		r, err := runWithStdout(fx.dir, slave, args...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := run("cat", fx.file, "alpha")
	if r.code != 2 {
		t.Fatalf("cat of binary data to a terminal: %s", r)
	}
	oneErrorLine(t, r, "alpha@7", "--force", "terminal")
	if r := run("cat", fx.file, "text"); r.code != 0 || r.stderr != "" {
		t.Fatalf("cat of text to a terminal: %s", r)
	}
	if r := run("cat", "--force", fx.file, "alpha"); r.code != 0 || r.stderr != "" {
		t.Fatalf("cat --force of binary data to a terminal: %s", r)
	}
}

func TestVerifyIntact(t *testing.T) {
	fx := mainFixture(t)
	r := mustRun(t, 0, fx.dir, "verify", fx.file)
	if !strings.Contains(r.stdout, "OK: 21 version(s) of 7 checkpoint(s)") {
		t.Fatalf("verify: %s", r)
	}
}

// versionsOf reads the kept versions with the engine.
func versionsOf(t *testing.T, path, name string) []engine.VersionInfo {
	t.Helper()
	f, err := engine.Open(path, &engine.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vs, err := f.VersionsOf(name)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// flipByte inverts the byte at off of the file at path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDamagedPayload(t *testing.T) {
	fx := mainFixture(t)
	var v4 engine.VersionInfo
	for _, v := range versionsOf(t, fx.path(), "beta@2") {
		if v.Version == 4 {
			v4 = v
		}
	}
	flipByte(t, fx.path(), v4.Offset+1234)
	r := mustRun(t, 1, fx.dir, "verify", fx.file)
	if !strings.Contains(r.stdout, fmt.Sprintf("damaged: beta@2@4 at offset %d", v4.Offset)) ||
		!strings.Contains(r.stdout, "DAMAGED: 1 damaged version(s)") || strings.Count(r.stdout, "damaged:") != 1 {
		t.Fatalf("verify after a flipped payload byte: %s", r)
	}
	r = mustRun(t, 1, fx.dir, "verify", "--json", fx.file)
	var out verifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.OK || len(out.Damaged) != 1 || out.Damaged[0].Name != "beta@2" || out.Damaged[0].Version != 4 ||
		out.Damaged[0].Offset != v4.Offset || out.Versions != 21 {
		t.Fatalf("verify --json: %s", r.stdout)
	}
	// The damaged version is never written; its neighbours still are.
	r = mustRun(t, 2, fx.dir, "cat", fx.file, "beta@2@4")
	oneErrorLine(t, r, "hash mismatch")
	if r.stdout != "" {
		t.Fatal("cat wrote damaged data")
	}
	if r := mustRun(t, 0, fx.dir, "cat", fx.file, "beta@2@5"); r.stdout != string(fx.want["beta@2"][5]) {
		t.Fatal("cat of an intact neighbour differs")
	}
	// Repair leaves the damaged version out; the SaveAll it belonged to goes with it.
	r = mustRun(t, 0, fx.dir, "repair", fx.file)
	if !strings.Contains(r.stdout, "version(s) with a damaged payload left out") {
		t.Fatalf("repair: %s", r)
	}
	mustRun(t, 0, fx.dir, "verify", fx.file)
}

func TestVerifyMissingIndex(t *testing.T) {
	fx := mainFixture(t)
	if err := os.Remove(fx.path() + ".idx"); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, 1, fx.dir, "verify", fx.file)
	if !strings.Contains(r.stdout, "DAMAGED") || !strings.Contains(r.stdout, "ckp repair g.ckp") {
		t.Fatalf("verify without an index: %s", r)
	}
	r = mustRun(t, 1, fx.dir, "verify", "--json", fx.file)
	if !strings.Contains(r.stdout, `"ok": false`) || !strings.Contains(r.stdout, "missing") {
		t.Fatalf("verify --json without an index: %s", r)
	}
	for _, c := range []string{"ls", "info"} {
		r := mustRun(t, 2, fx.dir, c, fx.file)
		oneErrorLine(t, r, "missing", "ckp repair g.ckp")
	}
}

// checkAll checks with cat that every version fx wrote that ls lists reads back exactly,
// and that the newest of each is listed.
func checkAll(t *testing.T, fx *fixture) {
	t.Helper()
	r := mustRun(t, 0, fx.dir, "ls", "--json", fx.file)
	var ls struct {
		Checkpoints []lsCheckpointJSON `json:"checkpoints"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.Checkpoints) != len(fx.want) {
		t.Fatalf("ls lists %d checkpoints, want %d", len(ls.Checkpoints), len(fx.want))
	}
	for _, c := range ls.Checkpoints {
		name := c.Name
		if c.NameBase64 != "" {
			name = string(mustB64(t, c.NameBase64))
		}
		newest := 0
		for v := range fx.want[name] {
			newest = max(newest, v)
		}
		if c.Last != newest {
			t.Fatalf("%q: newest listed %d, want %d", name, c.Last, newest)
		}
		for v := c.First; v <= c.Last; v++ {
			r := mustRun(t, 0, fx.dir, "cat", fx.file, strconv.Quote(name)+"@"+strconv.Itoa(v))
			if r.stdout != string(fx.want[name][v]) {
				t.Fatalf("%q@%d differs", name, v)
			}
		}
	}
}

func TestRepairMissingIndex(t *testing.T) {
	fx := mainFixture(t)
	idx := fx.path() + ".idx"
	if err := os.Remove(idx); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, 0, fx.dir, "repair", "--dry-run", fx.file)
	if !strings.Contains(r.stdout, "dry run") || !strings.Contains(r.stdout, "the old index could not be read") {
		t.Fatalf("repair --dry-run: %s", r)
	}
	if _, err := os.Stat(idx); !os.IsNotExist(err) {
		t.Fatal("repair --dry-run wrote an index")
	}
	r = mustRun(t, 0, fx.dir, "repair", fx.file)
	if !strings.Contains(r.stdout, "of 7 checkpoint(s) recovered") || !strings.Contains(r.stdout, "wrote g.ckp.idx") ||
		!strings.Contains(r.stdout, `checkpoint "ctl\x01\n"`) {
		t.Fatalf("repair: %s", r)
	}
	mustRun(t, 0, fx.dir, "verify", fx.file)
	checkAll(t, fx)
	r = mustRun(t, 0, fx.dir, "info", fx.file)
	if !strings.Contains(r.stdout, "unknown (no writer has opened") {
		t.Fatalf("info after repair: %s", r)
	}
}

func TestRepairCorruptIndex(t *testing.T) {
	t.Run("records", func(t *testing.T) {
		fx := mainFixture(t)
		before := mustRun(t, 0, fx.dir, "ls", "--utc", fx.file).stdout
		// Damage a record in the middle of the log: it and everything after it is lost.
		flipByte(t, fx.path()+".idx", index.HeaderSize+20*index.RecordSize+10)
		r := mustRun(t, 1, fx.dir, "verify", fx.file)
		if !strings.Contains(r.stdout, "torn index tail") || !strings.Contains(r.stdout, "ckp repair g.ckp") {
			t.Fatalf("verify after index damage: %s", r)
		}
		if got := mustRun(t, 0, fx.dir, "ls", "--utc", fx.file).stdout; got == before {
			t.Fatal("index damage lost nothing?")
		}
		r = mustRun(t, 0, fx.dir, "repair", fx.file)
		if !strings.Contains(r.stdout, "old index is kept as g.ckp.idx.bak") {
			t.Fatalf("repair: %s", r)
		}
		mustRun(t, 0, fx.dir, "verify", fx.file)
		checkAll(t, fx)
	})
	t.Run("header", func(t *testing.T) {
		fx := mainFixture(t)
		flipByte(t, fx.path()+".idx", 3)
		r := mustRun(t, 1, fx.dir, "verify", fx.file)
		if !strings.Contains(r.stdout, "ckp repair g.ckp") {
			t.Fatalf("verify after index header damage: %s", r)
		}
		oneErrorLine(t, mustRun(t, 2, fx.dir, "ls", fx.file), "ckp repair g.ckp")
		mustRun(t, 0, fx.dir, "repair", fx.file)
		mustRun(t, 0, fx.dir, "verify", fx.file)
		checkAll(t, fx)
	})
}

var hostileRegions = []region{
	{name: "../x", size: 16},
	{name: "/etc/y", size: 17},
	{name: "nul\x00byte", size: 18},
	{name: "a/b", size: 19},
	{name: "a%2Fb", size: 20},
	{name: "A", size: 21},
	{name: "a", size: 22},
	{name: ".hidden", size: 23},
	{name: "..", size: 24},
	{name: ".", size: 25},
	{name: strings.Repeat("/", 255), size: 26},
	{name: strings.Repeat("/", 254) + "x", size: 27},
	{name: strings.Repeat("é", 127), size: 28},
	{name: "\xff\n", size: 29},
}

func TestExportHostileNames(t *testing.T) {
	top := t.TempDir()
	if err := os.MkdirAll(filepath.Join(top, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	fx := makeFixture(t, filepath.Join(top, "in"), "h.ckp", hostileRegions, 0, 3, 0)
	out := filepath.Join(top, "in", "out")
	r := mustRun(t, 0, fx.dir, "export", "--json", fx.file, "out")
	var res struct {
		Files []exportJSON `json:"files"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != len(hostileRegions) {
		t.Fatalf("exported %d files, want %d", len(res.Files), len(hostileRegions))
	}
	// Every file lies directly in out/, and holds the newest version of its name.
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(hostileRegions) {
		t.Fatalf("out/ holds %d entries, want %d", len(ents), len(hostileRegions))
	}
	byFile := map[string]bool{}
	for _, f := range res.Files {
		name := f.Name
		if f.NameBase64 != "" {
			name = string(mustB64(t, f.NameBase64))
		}
		if filepath.Dir(f.File) != "out" || byFile[f.File] || strings.HasPrefix(filepath.Base(f.File), ".") {
			t.Fatalf("%q exported as %q", name, f.File)
		}
		byFile[f.File] = true
		if len(filepath.Base(f.File)) > 255 {
			t.Fatalf("file name of %d bytes", len(filepath.Base(f.File)))
		}
		b, err := os.ReadFile(filepath.Join(fx.dir, f.File))
		if err != nil {
			t.Fatal(err)
		}
		if f.Version != 3 || !bytes.Equal(b, fx.want[name][3]) {
			t.Fatalf("%q: version %d, content differs", name, f.Version)
		}
	}
	// Nothing escaped.
	for _, p := range []string{filepath.Join(top, "x"), filepath.Join(top, "in", "x"), filepath.Join(fx.dir, "etc")} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists", p)
		}
	}
	// No clobbering: a second export fails before writing anything.
	before := snapshot(t, out)
	r = mustRun(t, 2, fx.dir, "export", fx.file, "out")
	oneErrorLine(t, r, "exists", "--force")
	if r.stdout != "" || snapshot(t, out) != before {
		t.Fatal("a refused export wrote something")
	}
	// Not even through a symlink planted at a target.
	if err := os.Remove(filepath.Join(out, "A")); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(top, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(out, "A")); err != nil {
		t.Fatal(err)
	}
	mustRun(t, 2, fx.dir, "export", fx.file, "out", "A")
	// --force replaces the files (the symlink itself, not what it points to).
	r = mustRun(t, 0, fx.dir, "export", "--force", "--version", "-1", fx.file, "out")
	if strings.Count(r.stdout, "\n") != len(hostileRegions) {
		t.Fatalf("export --force: %s", r)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatal("export --force wrote through a symlink")
	}
	if b, _ := os.ReadFile(filepath.Join(out, "A")); !bytes.Equal(b, fx.want["A"][2]) {
		t.Fatal("export --force --version -1 did not write version 2")
	}
	if ents, _ := os.ReadDir(out); len(ents) != len(hostileRegions) {
		t.Fatalf("out/ holds %d entries after --force (temporary files left?)", len(ents))
	}
	// Chosen names, in quoted form, with an absolute version.
	r = mustRun(t, 0, fx.dir, "export", "--version", "1", fx.file, "one", `"nul\x00byte"`, "../x", "../x")
	if strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, `"nul\x00byte"@1 -> one/nul%00byte`) ||
		!strings.Contains(r.stdout, "../x@1 -> one/%2E.%2Fx") {
		t.Fatalf("export of chosen names: %s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(fx.dir, "one", "%2E.%2Fx")); !bytes.Equal(b, fx.want["../x"][1]) {
		t.Fatal("export of ../x@1 differs")
	}
	oneErrorLine(t, mustRun(t, 2, fx.dir, "export", fx.file, "two", "nope"), "no checkpoint nope")
	oneErrorLine(t, mustRun(t, 2, fx.dir, "export", "--version", "9", fx.file, "two"), "version 9")
	if _, err := os.Stat(filepath.Join(fx.dir, "two")); err == nil {
		if ents, _ := os.ReadDir(filepath.Join(fx.dir, "two")); len(ents) != 0 {
			t.Fatal("a failed export wrote files")
		}
	}
}

func snapshot(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s strings.Builder
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		fmt.Fprintf(&s, "%s %x\n", e.Name(), b)
	}
	return s.String()
}

func TestSafeFileName(t *testing.T) {
	var names []string
	for _, r := range hostileRegions {
		names = append(names, r.name)
	}
	names = append(names, "%2E.", "%2Ehidden", "a~b", "x", "X", "%", "%25", "\x00", "\x00\x00")
	seen := map[string]string{}
	for _, n := range names {
		fn := safeFileName(n)
		if fn == "" || fn == "." || fn == ".." || strings.ContainsAny(fn, "/\x00") || fn[0] == '.' || len(fn) > 255 {
			t.Fatalf("safeFileName(%q) = %q", n, fn)
		}
		if prev, dup := seen[fn]; dup {
			t.Fatalf("safeFileName(%q) = safeFileName(%q) = %q", n, prev, fn)
		}
		seen[fn] = n
	}
	if got := safeFileName("../x"); got != "%2E.%2Fx" {
		t.Fatalf("safeFileName(../x) = %q", got)
	}
	if got := safeFileName(".hidden"); got != "%2Ehidden" {
		t.Fatalf("safeFileName(.hidden) = %q", got)
	}
	// Case collisions get distinct files.
	m := exportFileNames([]string{"A", "a", "Ab", "aB"})
	if m["A"] != "A" || m["a"] == "a" || m["a"] == m["A"] || strings.EqualFold(m["Ab"], m["aB"]) {
		t.Fatalf("exportFileNames: %q", m)
	}
	// Cut names keep a hash of the whole name.
	long1, long2 := strings.Repeat("/", 254)+"x", strings.Repeat("/", 254)+"y"
	if a, b := safeFileName(long1), safeFileName(long2); a == b || len(a) > 255 {
		t.Fatalf("long names: %q %q", a, b)
	}
}

func TestVerifyTornTail(t *testing.T) {
	fx := mainFixture(t)
	f, err := engine.Open(fx.path(), &engine.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Info()
	f.Close()
	// Bytes after the last record: what a writer that died in the middle of appending
	// leaves behind.
	idx, err := os.OpenFile(fx.path()+".idx", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idx.WriteAt([]byte("torn record"), index.HeaderSize+fi.IndexRecords*index.RecordSize); err != nil {
		t.Fatal(err)
	}
	idx.Close()
	r := mustRun(t, 1, fx.dir, "verify", fx.file)
	if !strings.Contains(r.stdout, "1 index record(s) after the last complete transaction") ||
		!strings.Contains(r.stdout, "DAMAGED: torn index tail") {
		t.Fatalf("verify of a torn tail without a writer: %s", r)
	}
	// With a writer holding the file (this process takes its lock), the tail is the save
	// in progress.
	data, err := os.Open(fx.path())
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	if err := unix.Flock(int(data.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, 0, fx.dir, "verify", fx.file)
	if !strings.Contains(r.stdout, "note: 1 index record(s)") || !strings.Contains(r.stdout, "OK: 21 version(s)") {
		t.Fatalf("verify of a torn tail with a writer: %s", r)
	}
	r = mustRun(t, 0, fx.dir, "verify", "--json", fx.file)
	if !strings.Contains(r.stdout, `"tail_ignored": true`) || !strings.Contains(r.stdout, `"writer_active": true`) {
		t.Fatalf("verify --json of a torn tail with a writer: %s", r)
	}
	if r := mustRun(t, 0, fx.dir, "info", fx.file); !strings.Contains(r.stdout, "yes") {
		t.Fatalf("info with a writer: %s", r)
	}
	// Every read-only command works while the lock is held; repair refuses.
	mustRun(t, 0, fx.dir, "ls", fx.file)
	mustRun(t, 0, fx.dir, "cat", fx.file, "alpha")
	mustRun(t, 0, fx.dir, "export", fx.file, "out")
	oneErrorLine(t, mustRun(t, 2, fx.dir, "repair", fx.file), "a writer holds g.ckp")
}

// TestInProcess runs the commands through run, in this (race-checked) process, and
// checks that they say what the built command says.
func TestInProcess(t *testing.T) {
	fx := mainFixture(t)
	for _, args := range [][]string{
		{"ls", "--utc", fx.path()},
		{"ls", "--json", fx.path(), "text"},
		{"info", "--json", fx.path()},
		{"verify", fx.path()},
		{"cat", fx.path(), "beta@2@-2"},
		{"repair", "--dry-run", fx.path()},
		{"ls", fx.path(), "nope"},
		{"cat"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		r := mustRun(t, code, fx.dir, args...)
		if normalize(stdout.String()) != normalize(r.stdout) || stderr.String() != r.stderr {
			t.Fatalf("ckp %q in process:\n%s\n%s\nas a command:\n%s", args, stdout.String(), stderr.String(), r)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"export", fx.path(), out, "text", "alpha"}, &stdout, &stderr); code != 0 {
		t.Fatalf("export in process: exit %d: %s", code, stderr.String())
	}
	for name, v := range map[string]int{"text": 5, "alpha": 7} {
		if b, _ := os.ReadFile(filepath.Join(out, name)); !bytes.Equal(b, fx.want[name][v]) {
			t.Fatalf("export in process: %s differs", name)
		}
	}
}

// TestDifferential: ls shows per version the bytes written and the share of changed
// blocks, info says how the last writer saved, and cat and verify read deltas.
func TestDifferential(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "d.ckp")
	f, err := engine.Open(file, &engine.Options{Differential: true, NoTracking: true})
	if err != nil {
		t.Fatal(err)
	}
	region := make([]byte, 64<<10)
	c, err := f.Register("grid", region)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for v := 1; v <= 3; v++ {
		region[v*4096]++
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
		want = append(want, bytes.Clone(region))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, 0, dir, "ls", file, "grid")
	for _, s := range []string{"WRITTEN", "CHANGED", "100.0% of 4.0 KiB blocks (full)", "6.2% of 4.0 KiB blocks (delta on 2)"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("ls does not show %q:\n%s", s, r.stdout)
		}
	}
	r = mustRun(t, 0, dir, "info", file)
	if !strings.Contains(r.stdout, "4.0 KiB blocks, changed blocks found by hashing every block") {
		t.Errorf("info does not say how the writer saved:\n%s", r.stdout)
	}
	for v := 1; v <= 3; v++ {
		r = mustRun(t, 0, dir, "cat", file, fmt.Sprintf("grid@%d", v))
		if r.stdout != string(want[v-1]) {
			t.Errorf("cat grid@%d: wrong bytes", v)
		}
	}
	mustRun(t, 0, dir, "verify", file)
}
