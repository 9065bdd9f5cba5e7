package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ckp-go/ckp/engine"
	"github.com/spf13/cobra"
)

type exportOptions struct {
	file    string
	dir     string
	names   []string // none: every checkpoint
	version int      // absolute, or relative to the newest when <= 0
	force   bool
	json    bool
}

func newExportCmd(e *env) *cobra.Command {
	var o exportOptions
	c := &cobra.Command{
		Use:   "export FILE DIR [NAME...]",
		Short: "Write versions of checkpoints as files into a directory",
		Long: `export writes one version of each chosen checkpoint (every checkpoint when no NAME
is given) as a file under DIR, which it creates if needed. The version is the newest
unless --version says otherwise: absolute (1, 2, ...) or relative to the newest (0,
-1, ...), the same for every chosen name. The versions come from one view of the file
(the versions complete when export opened it; only if a running writer drops a version
while export reads it does export read that one from a fresh view), and each is
checked against its hash before it is written.

Checkpoint names are arbitrary bytes, so file names are encoded: every byte outside
[A-Za-z0-9._-], and a leading '.', is percent-encoded (%2F for '/', %00 for NUL, %2E
for a leading dot), so a name can neither leave DIR nor hide as a dot file, and
different names give different file names. Encoded names longer than 200 bytes are
cut and end in '~' and a hash of the whole name. Names whose file names differ only in
case (which would collide on a case-insensitive file system) get '~' and a hash of the
name too. Each line of output says which file holds which version.

export never replaces an existing file unless --force is given: without it, it checks
every target first and writes nothing if one exists, and creates each file
exclusively (O_EXCL). With --force, each file is written to a temporary file in DIR
and renamed over the target.`,
		Example: `  ckp export run.ckp out/                  # the newest version of every checkpoint
  ckp export run.ckp out/ model optimizer  # just these two
  ckp export --version -1 run.ckp prev/    # the version before the newest of each`,
		Args: nArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file, o.dir, o.names = args[0], args[1], args[2:]
			e.code = runExport(e, o)
			return nil
		},
	}
	c.Flags().IntVar(&o.version, "version", 0, "version to export: absolute (1..N) or relative to the newest (0, -1, ...)")
	c.Flags().BoolVarP(&o.force, "force", "f", false, "replace existing files")
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

type exportJSON struct {
	jsonName
	Version int    `json:"version"`
	Size    int64  `json:"size"`
	File    string `json:"file"`
}

func runExport(e *env, o exportOptions) int {
	f, err := openFile(o.file)
	if err != nil {
		return e.fail(err)
	}
	r := &reader{path: o.file, f: f}
	defer r.Close()

	// Choose the names and check that each has the version asked for, before writing.
	var names []string
	seen := map[string]bool{}
	if len(o.names) == 0 {
		for _, n := range f.Checkpoints() {
			if vs, err := f.VersionsOf(n); err == nil && len(vs) > 0 {
				names = append(names, n)
			}
		}
	}
	for _, arg := range o.names {
		n, err := nameArg(f, arg)
		if err != nil {
			return e.fail(err)
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, n := range names {
		vs, err := f.VersionsOf(n)
		if err == nil {
			err = hasVersion(vs, n, o.version)
		}
		if err != nil {
			return e.fail(err)
		}
	}
	files := exportFileNames(names)
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return e.fail(err)
	}
	if !o.force {
		for _, n := range names {
			p := filepath.Join(o.dir, files[n])
			if _, err := os.Lstat(p); err == nil {
				return e.fail(fmt.Errorf("%s exists (for %s); use --force to replace it", p, showName(n)))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return e.fail(err)
			}
		}
	}

	var out []exportJSON
	for _, n := range names {
		b, vi, err := r.read(n, o.version)
		if err != nil {
			return e.fail(err)
		}
		p := filepath.Join(o.dir, files[n])
		if err := writeExport(o.dir, p, b, o.force); err != nil {
			return e.fail(err)
		}
		if o.json {
			out = append(out, exportJSON{mkJSONName(n), vi.Version, vi.Size, p})
		} else {
			fmt.Fprintf(e.stdout, "%s -> %s (%s)\n", at(n, vi.Version), p, humanSize(vi.Size))
		}
	}
	if o.json {
		res := struct {
			Dir   string       `json:"dir"`
			Files []exportJSON `json:"files"`
		}{o.dir, append([]exportJSON{}, out...)}
		if err := writeJSON(e.stdout, res); err != nil {
			return e.fail(err)
		}
	}
	return exitOK
}

// hasVersion checks that version v (as in the engine API) of name is kept.
func hasVersion(vs []engine.VersionInfo, name string, v int) error {
	if v <= 0 {
		if len(vs)-1+v < 0 {
			return fmt.Errorf("version %d of %s: only %d kept", v, showName(name), len(vs))
		}
		return nil
	}
	for _, x := range vs {
		if x.Version == v {
			return nil
		}
	}
	if len(vs) == 0 {
		return fmt.Errorf("%s has no kept version", showName(name))
	}
	return fmt.Errorf("version %d of %s is not kept (kept: %d..%d)", v, showName(name), vs[0].Version, vs[len(vs)-1].Version)
}

// writeExport writes b to path: exclusively (O_EXCL) without force; through a temporary
// file in dir renamed over path with force.
func writeExport(dir, path string, b []byte, force bool) error {
	if !force {
		w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s exists; use --force to replace it", path)
			}
			return err
		}
		_, err = w.Write(b)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	// Encoded names never start with '.', so the temporary name cannot be a target.
	w, err := os.CreateTemp(dir, ".ckp-export-*")
	if err != nil {
		return err
	}
	tmp := w.Name()
	if err := w.Chmod(0o600); err != nil {
		w.Close()
		os.Remove(tmp)
		return err
	}
	_, err = w.Write(b)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// maxEncoded bounds an encoded file name; longer ones are cut and get a hash suffix,
// which keeps every name within NAME_MAX (255 bytes).
const maxEncoded = 200

// safeFileName encodes a checkpoint name as a file name: bytes outside [A-Za-z0-9._-]
// and a leading '.' are percent-encoded. The encoding is injective ('%' itself is
// encoded), never yields "", ".", ".." or a name with '/' or NUL, and is at most
// maxEncoded+17 bytes long.
func safeFileName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isSafeByte(c) && !(i == 0 && c == '.') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	s := b.String()
	if s == "" {
		s = "%" // not reachable: names are never empty
	}
	if len(s) > maxEncoded {
		cut := maxEncoded
		// Do not split a %XX escape.
		if i := strings.LastIndexByte(s[:cut], '%'); i >= cut-2 {
			cut = i
		}
		s = s[:cut] + "~" + nameHash(name)
	}
	return s
}

func isSafeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// nameHash is 16 hex digits of the SHA-256 of name.
func nameHash(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:8])
}

// exportFileNames maps each name to its file name. Names whose encodings are equal
// regardless of case (possible only for names differing in case, or for cut names)
// get the hash of the name appended, so that no two names share a file even on a
// case-insensitive file system.
func exportFileNames(names []string) map[string]string {
	out := make(map[string]string, len(names))
	used := map[string]bool{}
	for _, n := range names {
		fn := safeFileName(n)
		for i := 0; used[strings.ToLower(fn)]; i++ {
			suffix := "~" + nameHash(n)
			if i > 0 {
				suffix += fmt.Sprintf("~%d", i)
			}
			fn = safeFileName(n) + suffix
		}
		used[strings.ToLower(fn)] = true
		out[n] = fn
	}
	return out
}
