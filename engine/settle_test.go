package engine

import (
	"path/filepath"
	"testing"
)

// abandon leaves f as a writer killed with SIGKILL leaves its files: nothing flushed,
// no mark, the lock released by the kernel closing the descriptors.
func abandon(t *testing.T, f *File) {
	t.Helper()
	f.closed.Store(true)
	if f.stopBg != nil {
		close(f.stopBg)
		f.bgDone.Wait()
	}
	if err := f.closeFiles(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenSyncsOnlyUnclaimed: a writer that opens a file another writer left behind
// flushes the data of exactly the versions no durable claim covers (those a reboot
// would have to check), never the whole data file unless they are too many; after a
// Close it flushes no data at all, and after durable saves only the last save's slots.
func TestOpenSyncsOnlyUnclaimed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     SyncPolicy
		keep  int
		saves int
		close bool // Close the writer (else it is abandoned, as by SIGKILL)
		want  settled
	}{
		{"none/close", SyncNone, 2, 5, true, settled{slots: 0, index: true}},
		{"always/close", SyncAlways, 2, 5, true, settled{slots: 2, index: true}},
		{"always/kill", SyncAlways, 0, 5, false, settled{slots: 2, index: true}},
		{"every3/kill", SyncEvery(3), 2, 4, false, settled{slots: 2, index: true}},
		{"every3/kill-at-mark", SyncEvery(3), 2, 6, false, settled{slots: 0, index: true}},
		{"none/kill", SyncNone, 2, 5, false, settled{slots: 4, index: true}},
		{"none/kill-many", SyncNone, 0, 40, false, settled{slots: 80, whole: true, index: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "s.ckp")
			f, err := Open(path, &Options{Sync: tc.p, KeepVersions: tc.keep})
			if err != nil {
				t.Fatal(err)
			}
			a, b := make([]byte, 100), make([]byte, 300<<10)
			f.Register("a", a)
			f.Register("b", b)
			for v := 1; v <= tc.saves; v++ {
				crashFill(b, 1, v)
				a[0] = byte(v)
				if err := f.SaveAll(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.close {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				abandon(t, f)
			}

			// What a reboot would have to check, on a copy opened under another boot.
			damageCopy(t, path, filepath.Join(dir, "copy.ckp"))
			other := [16]byte{1, 2, 3}
			rb, err := Open(filepath.Join(dir, "copy.ckp"), &Options{ReadOnly: true, bootID: &other})
			if err != nil {
				t.Fatal(err)
			}
			verified := rb.Recovered().Verified
			rb.Close()

			g, err := Open(path, &Options{Sync: tc.p, KeepVersions: tc.keep})
			if err != nil {
				t.Fatal(err)
			}
			if g.settled != tc.want {
				t.Errorf("Open flushed %+v, want %+v", g.settled, tc.want)
			}
			if g.settled.slots != verified {
				t.Errorf("Open flushed %d slots, a reboot would check %d versions", g.settled.slots, verified)
			}
			cb, _ := g.Register("b", make([]byte, len(b)))
			if err := cb.Restore(0); err != nil {
				t.Fatal(err)
			}
			if err := crashCheck(cb.Region(), 1, tc.saves); err != nil {
				t.Fatal(err)
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			// Nothing left unclaimed: the next Open flushes nothing.
			h, err := Open(path, &Options{Sync: tc.p, KeepVersions: tc.keep})
			if err != nil {
				t.Fatal(err)
			}
			if h.settled.slots != 0 || h.settled.whole {
				t.Errorf("second Open flushed %+v, want no data", h.settled)
			}
			h.Close()
		})
	}
}
