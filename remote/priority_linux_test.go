//go:build linux

package remote

import (
	"testing"

	"golang.org/x/sys/unix"
)

// ThreadNice returns the nice value of the calling thread (the remote_test package's
// tests use it too).
func ThreadNice(t testing.TB) int {
	t.Helper()
	raw, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	return 20 - raw // the system call returns 20 - nice
}

// TestBackground: an upload runs on a thread at nice 19, and the thread gets its
// priority back afterwards (other goroutines run on it next).
func TestBackground(t *testing.T) {
	before := ThreadNice(t)
	var rl unix.Rlimit
	if unix.Geteuid() != 0 && (unix.Getrlimit(unix.RLIMIT_NICE, &rl) != nil || int64(rl.Cur) < int64(20-before)) {
		t.Skip("this process may not raise a thread's priority back (not root, RLIMIT_NICE too low): an upload's thread then stays at nice 19 and ends with its goroutine")
	}
	restore := background()
	if n := ThreadNice(t); n != 19 {
		t.Fatalf("nice %d inside background, want 19", n)
	}
	tid := unix.Gettid()
	restore()
	raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		t.Fatal(err)
	}
	if 20-raw != before {
		t.Fatalf("the thread's nice is %d after restore, was %d", 20-raw, before)
	}
}
