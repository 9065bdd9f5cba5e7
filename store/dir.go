package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ckp-go/ckp/store/internal/body"
)

// Dir returns a Store of the files under the directory path, on a local disk or a
// shared parallel file system (Lustre, GPFS, NFS), creating the directory if it is
// missing. Each key is a file; its segments but the last are directories.
//
// Put writes a temporary file in the object's directory, fsyncs it, renames it over
// the object and fsyncs the directory. Create does the same but publishes with
// link(2), which fails atomically with EEXIST on every POSIX file system including
// shared ones (where O_EXCL on NFS historically was not atomic); an EEXIST that is the
// echo of the same link retried by an NFS client is recognised as success. Readers
// thus see whole files only. Temporary files are named ".tmp-*" (TempPrefix), which no
// key may use; List skips them, so a writer killed mid-write leaves a stale temporary
// file that nothing sees, and CleanTemps removes. Delete removes the directories it
// leaves empty, best-effort.
//
// A file system that cannot make hard links makes Create fail with ErrUnsupported.
func Dir(path string) (Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty directory path", ErrInvalid)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: directory %q: %w", ErrInvalid, path, err)
	}
	d := &dirStore{root: abs}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, d.fail("open", "", err)
	}
	d.streams = readStreams(abs)
	return d, nil
}

type dirStore struct {
	root    string
	streams int // ReadStreams
}

// ReadStreams is 1 on a local file system: the kernel's readahead keeps a sequential
// read ahead of its reader, and ranges read at once compete for the disk (a cold 32
// MiB object on the disk of the machine that measured it: 12.5 ms in one stream, 16.4
// ms in four). It is 4 on a network or parallel file system (NFS, Lustre, GPFS,
// CephFS, BeeGFS, SMB, FUSE, ...), where each read waits for a round trip.
func (d *dirStore) ReadStreams() int { return d.streams }

func (d *dirStore) String() string { return "dir:" + d.root }

func (d *dirStore) path(key string) string { return filepath.Join(d.root, filepath.FromSlash(key)) }

// fail wraps an error of the file system with the operation and the key, mapping
// permission errors to ErrDenied and a key whose path is too long to ErrInvalid.
func (d *dirStore) fail(op, key string, err error) error {
	what := d.String()
	if key != "" {
		what += ": " + op + " " + fmt.Sprintf("%q", key)
	} else {
		what += ": " + op
	}
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: %s: %w", ErrDenied, what, err)
	case errors.Is(err, syscall.ENAMETOOLONG):
		return fmt.Errorf("%w: %s: %w", ErrInvalid, what, err)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

// conflict is the error for a key that collides with a directory or a file on the
// way to it ("a" and "a/b" cannot both be objects).
func (d *dirStore) conflict(op, key string, err error) error {
	return fmt.Errorf("%w: %s: %s %q: the key collides with a directory of other keys or an object on its path (\"a\" and \"a/b\" cannot both be objects): %w",
		ErrInvalid, d, op, key, err)
}

// Create writes the object unless one exists under key.
func (d *dirStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return d.write(ctx, "create", key, r, size)
}

// Put writes or replaces the object under key.
func (d *dirStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return d.write(ctx, "put", key, r, size)
}

func (d *dirStore) write(ctx context.Context, op, key string, r io.Reader, size int64) (err error) {
	if err := CheckKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("%w: %s: %s %q: negative size %d", ErrInvalid, d, op, key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s %q: %w", d, op, key, err)
	}
	final := d.path(key)
	dir := filepath.Dir(final)
	tmp, err := d.createTemp(op, key, dir)
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		if tmpName != "" {
			os.Remove(tmpName)
		}
	}()

	bufSize := min(max(size, 512), 1<<20)
	br := body.NewReader(ctx, r, size)
	if _, err := io.CopyBuffer(struct{ io.Writer }{tmp}, br, make([]byte, bufSize)); err != nil {
		switch {
		case errors.Is(err, body.ErrSize):
			return fmt.Errorf("%w: %s: %s %q: %w", ErrInvalid, d, op, key, err)
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%s: %s %q: %w", d, op, key, err)
		}
		return d.fail(op, key, err)
	}
	if err := tmp.Sync(); err != nil {
		return d.fail(op, key, err)
	}
	err = tmp.Close()
	tmp = nil
	if err != nil {
		return d.fail(op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s %q: %w", d, op, key, err)
	}

	if op == "create" {
		if err := d.link(op, key, tmpName, final); err != nil {
			return err
		}
	} else {
		if err := os.Rename(tmpName, final); err != nil {
			if isDirConflict(err) {
				return d.conflict(op, key, err)
			}
			return d.fail(op, key, err)
		}
		tmpName = ""
	}
	if err := syncDir(dir); err != nil {
		return d.fail(op, key, err)
	}
	return nil
}

// link publishes tmp as final with link(2), which fails if final exists.
func (d *dirStore) link(op, key, tmp, final string) error {
	err := os.Link(tmp, final)
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		fi, serr := os.Lstat(final)
		if serr == nil && fi.IsDir() {
			return d.conflict(op, key, err)
		}
		// An NFS client that retransmits a link whose reply was lost gets EEXIST for
		// its own link: then final is the temporary file.
		if ti, terr := os.Stat(tmp); serr == nil && terr == nil && os.SameFile(fi, ti) {
			return nil
		}
		return fmt.Errorf("%w: %s: %s %q", ErrExists, d, op, key)
	}
	switch {
	case errors.Is(err, syscall.ENOTDIR):
		return d.conflict(op, key, err)
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.EMLINK):
		return fmt.Errorf("%w: %s: %s %q: the file system cannot make hard links, which Create needs: %w", ErrUnsupported, d, op, key, err)
	}
	return d.fail(op, key, err)
}

// createTemp makes the object's directory and a temporary file in it. A concurrent
// Delete may remove a directory it left empty between the two steps: then it tries
// again.
func (d *dirStore) createTemp(op, key, dir string) (*os.File, error) {
	var err error
	for range 10 {
		if err = d.mkdirs(op, key, dir); err != nil {
			return nil, err
		}
		var f *os.File
		f, err = os.CreateTemp(dir, TempPrefix+"*")
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, syscall.ENOTDIR) {
		return nil, d.conflict(op, key, err)
	}
	return nil, d.fail(op, key, err)
}

// mkdirs makes dir and its missing parents under the root, fsyncing the parent of each
// directory it makes so that the new entries are durable.
func (d *dirStore) mkdirs(op, key, dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return d.conflict(op, key, fmt.Errorf("%s is a file", dir))
	case errors.Is(err, syscall.ENOTDIR):
		return d.conflict(op, key, err)
	case !errors.Is(err, fs.ErrNotExist):
		return d.fail(op, key, err)
	}
	if dir == d.root || len(dir) < len(d.root) {
		return d.fail(op, key, err) // the root itself is gone
	}
	parent := filepath.Dir(dir)
	if err := d.mkdirs(op, key, parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return d.mkdirs(op, key, dir) // made concurrently, or a file
		}
		if errors.Is(err, syscall.ENOTDIR) {
			return d.conflict(op, key, err)
		}
		return d.fail(op, key, err)
	}
	if err := syncDir(parent); err != nil {
		return d.fail(op, key, err)
	}
	return nil
}

// isDirConflict reports whether a rename failed because the target is a directory or a
// path component is a file.
func isDirConflict(err error) bool {
	for _, e := range []error{syscall.EISDIR, syscall.ENOTEMPTY, syscall.EEXIST, syscall.ENOTDIR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// syncDir fsyncs a directory, making the entries made or removed in it durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Get returns n bytes of the object from off (n < 0: to the end).
func (d *dirStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("%w: %s: get %q: negative offset %d", ErrInvalid, d, key, off)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: get %q: %w", d, key, err)
	}
	f, err := os.Open(d.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("%w: %s: get %q", ErrNotExist, d, key)
		}
		return nil, d.fail("get", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, d.fail("get", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s: get %q", ErrNotExist, d, key)
	}
	size := fi.Size()
	if err := CheckRange(off, n, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: get %q: %w", d, key, err)
	}
	if n < 0 {
		n = size - off
	}
	return &fileReader{ctx: ctx, f: f, r: io.NewSectionReader(f, off, n)}, nil
}

// CheckRange returns nil if n bytes from off (n < 0: to the end) lie within an object
// of size bytes, and an error wrapping ErrRange (ErrInvalid for a negative off) that
// says why not otherwise.
func CheckRange(off, n, size int64) error {
	switch {
	case off < 0:
		return fmt.Errorf("%w: negative offset %d", ErrInvalid, off)
	case off > size:
		return fmt.Errorf("%w: offset %d, object size %d", ErrRange, off, size)
	case n >= 0 && n > size-off:
		return fmt.Errorf("%w: %d bytes from offset %d, object size %d", ErrRange, n, off, size)
	}
	return nil
}

// fileReader reads a range of an open file, stopping when the context is done.
type fileReader struct {
	ctx context.Context
	f   *os.File
	r   *io.SectionReader
}

func (r *fileReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func (r *fileReader) Close() error { return r.f.Close() }

// List returns the objects whose keys start with prefix, sorted by key.
func (d *dirStore) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: list %q: %w", d, prefix, err)
	}
	start := d.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = d.path(prefix[:i])
	}
	objs := []Object{}
	err := filepath.WalkDir(start, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil // the prefix's directory does not exist, or it went away
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if path == d.root {
			return nil
		}
		if strings.HasPrefix(de.Name(), TempPrefix) {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(d.root, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if de.IsDir() {
			if path == start || strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				return nil
			}
			return filepath.SkipDir
		}
		if !de.Type().IsRegular() || !strings.HasPrefix(key, prefix) || CheckKey(key) != nil {
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted meanwhile
			}
			return err
		}
		objs = append(objs, Object{Key: key, Size: fi.Size(), Modified: fi.ModTime()})
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: list %q: %w", d, prefix, err)
		}
		return nil, d.fail("list", prefix, err)
	}
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

// Delete removes the object and then the directories it leaves empty.
func (d *dirStore) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: delete %q: %w", d, key, err)
	}
	p := d.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return d.fail("delete", key, err)
	}
	if fi.IsDir() {
		return nil // a directory of other keys, not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return d.fail("delete", key, err)
	}
	dir := filepath.Dir(p)
	if err := syncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return d.fail("delete", key, err)
	}
	for ; dir != d.root && len(dir) > len(d.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break // not empty (or gone): done
		}
	}
	return nil
}

// CleanTemps removes the temporary files older than age that writers killed mid-write
// left under the directory of a Dir store, and returns how many it removed. Writers
// in progress are safe as long as age is longer than any write takes; an hour is.
func CleanTemps(path string, age time.Duration) (int, error) {
	removed := 0
	cutoff := time.Now().Add(-age)
	err := filepath.WalkDir(path, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if de.IsDir() || !strings.HasPrefix(de.Name(), TempPrefix) {
			return nil
		}
		fi, err := de.Info()
		if err != nil || fi.ModTime().After(cutoff) {
			return nil
		}
		if err := os.Remove(p); err == nil {
			removed++
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("store: dir:%s: clean temporary files: %w", path, err)
	}
	return removed, nil
}
