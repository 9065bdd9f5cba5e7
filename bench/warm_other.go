//go:build !linux

package bench

// Warm touches n bytes of memory (see the Linux version).
func Warm(n int64) {
	b := make([]byte, n)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
}

// DropCache does nothing on this system.
func DropCache(path string) {}
