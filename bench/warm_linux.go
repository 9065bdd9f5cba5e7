//go:build linux

package bench

import (
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Warm touches n bytes of anonymous memory and gives it back. On a virtual machine
// whose host reclaims idle guest memory, the page cache a benchmark is about to fill
// would otherwise be backed page by page by the host, and the run would measure the
// host. Call it right before a run that writes about n new bytes.
func Warm(n int64) {
	if n <= 0 {
		return
	}
	b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return
	}
	if unix.Madvise(b, unix.MADV_POPULATE_WRITE) != nil {
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
	}
	_ = unix.Munmap(b)
}

// DropCache asks the kernel to drop the cached pages of every file under path (a file
// or a directory), as if another node read them: the next read comes from the disk.
// Dirty pages are written back first. Errors are ignored: it is a hint.
func DropCache(path string) {
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		_ = unix.Fdatasync(int(f.Fd()))
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		return nil
	})
}
