// Package cpio writes cpio archives in the "newc" (SVR4, no CRC) format
// that the Linux kernel accepts as an initramfs.
//
// Format: each entry is a 110-byte ASCII header ("070701" followed by 13
// fields of 8 hex digits), the NUL-terminated name padded to a multiple of
// 4 bytes (counting the header), then the data padded to a multiple of 4.
// The archive ends with an entry named "TRAILER!!!".
package cpio

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// File type bits for Entry.Mode (as in <sys/stat.h>).
const (
	TypeReg  = 0o100000
	TypeDir  = 0o040000
	TypeChar = 0o020000
	TypeBlk  = 0o060000
	TypeLink = 0o120000
	TypeMask = 0o170000
)

// Trailer is the name of the entry that ends an archive.
const Trailer = "TRAILER!!!"

// Entry is one archive member.
type Entry struct {
	Name      string // path inside the archive, without leading "/"
	Mode      uint32 // type bits | permission bits, e.g. TypeReg|0o755
	UID, GID  uint32
	Mtime     uint32
	Data      []byte // file contents, or the target of a symlink
	RdevMajor uint32 // for device nodes
	RdevMinor uint32
}

// Writer writes a newc archive. Call Close to write the trailer.
type Writer struct {
	w      io.Writer
	ino    uint32
	err    error
	closed bool
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Add appends e. Directories must be added before their contents.
func (w *Writer) Add(e Entry) error {
	if w.closed {
		return errors.New("cpio: write after Close")
	}
	name := strings.TrimPrefix(e.Name, "/")
	if name == "" || name == Trailer || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("cpio: bad name %q", e.Name)
	}
	if uint64(len(e.Data)) > math.MaxUint32 {
		return fmt.Errorf("cpio: %s: data too large", name)
	}
	if e.Mode&TypeMask == 0 {
		return fmt.Errorf("cpio: %s: mode %o has no file type", name, e.Mode)
	}
	if t := e.Mode & TypeMask; t != TypeReg && t != TypeLink && len(e.Data) > 0 {
		return fmt.Errorf("cpio: %s: only regular files and symlinks have data", name)
	}
	w.ino++
	nlink := uint32(1)
	if e.Mode&TypeMask == TypeDir {
		nlink = 2
	}
	return w.write(w.ino, e.Mode, e.UID, e.GID, nlink, e.Mtime, e.RdevMajor, e.RdevMinor, name, e.Data)
}

// Dir adds a directory.
func (w *Writer) Dir(name string, perm uint32) error {
	return w.Add(Entry{Name: name, Mode: TypeDir | perm&0o7777})
}

// File adds a regular file.
func (w *Writer) File(name string, perm uint32, data []byte) error {
	return w.Add(Entry{Name: name, Mode: TypeReg | perm&0o7777, Data: data})
}

// CharDev adds a character device node.
func (w *Writer) CharDev(name string, perm, major, minor uint32) error {
	return w.Add(Entry{Name: name, Mode: TypeChar | perm&0o7777, RdevMajor: major, RdevMinor: minor})
}

// Symlink adds a symbolic link to target.
func (w *Writer) Symlink(name, target string) error {
	return w.Add(Entry{Name: name, Mode: TypeLink | 0o777, Data: []byte(target)})
}

// Close writes the trailer. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	return w.write(0, 0, 0, 0, 1, 0, 0, 0, Trailer, nil)
}

func (w *Writer) write(ino, mode, uid, gid, nlink, mtime, rmaj, rmin uint32, name string, data []byte) error {
	if w.err != nil {
		return w.err
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, uid, gid, nlink, mtime, uint32(len(data)),
		0, 0, // devmajor, devminor of the containing device
		rmaj, rmin, uint32(len(name)+1), 0)
	buf := make([]byte, 0, pad4(len(hdr)+len(name)+1)+pad4(len(data)))
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = buf[:pad4(len(buf))] // capacity covers the zero padding
	buf = append(buf, data...)
	buf = buf[:pad4(len(buf))]
	_, w.err = w.w.Write(buf)
	return w.err
}

func pad4(n int) int { return (n + 3) &^ 3 }
