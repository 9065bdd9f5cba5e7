package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ckp-go/ckp/index"
)

// durableFlags replays the index file at path and returns, per committed transaction,
// whether it carries a durable claim (FlagDurable on its commit, or a durable mark), as
// a string of 'D' (durable) and '.' per transaction, marks as 'M'.
func durableFlags(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	_, seed, err := index.DecodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	_, err = index.Scan(b[index.HeaderSize:], seed, func(txn []index.Record) error {
		last := txn[len(txn)-1]
		switch {
		case last.Kind == index.KindSession:
			out = append(out, 'S')
		case last.Kind == index.KindMark:
			out = append(out, 'M')
		case last.Flags&index.FlagDurable != 0:
			out = append(out, 'D')
		default:
			out = append(out, '.')
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestSyncPolicyDurablePoints checks each policy's durable points in the index: which
// saves are durable when they return, and that Sync and Close add a durable mark.
func TestSyncPolicyDurablePoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    SyncPolicy
		want string // after 6 SaveAlls, then Sync, then Close
	}{
		{"none", SyncNone, "S......M"},
		{"async", SyncAsync, "S......M"},
		// A durable save's commit claims everything before it (its own data is
		// synced together with the record); SyncEvery adds a mark after each
		// durable point, since the next one is n saves away.
		{"always", SyncAlways, "SDDDDDD"},
		{"every3", SyncEvery(3), "S...M...M"},
		{"every4", SyncEvery(4), "S....M..M"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.ckp")
			f, err := Open(path, &Options{Sync: tc.p})
			if err != nil {
				t.Fatal(err)
			}
			a, b := make([]byte, 100), make([]byte, 5000)
			f.Register("a", a)
			f.Register("b", b)
			for v := 1; v <= 6; v++ {
				if err := f.SaveAll(); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil { // nothing new: no second mark
				t.Fatal(err)
			}
			if err := f.Close(); err != nil { // nothing new: no mark either
				t.Fatal(err)
			}
			if got := durableFlags(t, path); got != tc.want {
				t.Fatalf("durable points %q, want %q (S session, D durable save, M mark, . not durable)", got, tc.want)
			}
		})
	}
}

// TestSyncIntervalRunsAndStops: the interval goroutine makes saves durable on its own,
// and Close stops it.
func TestSyncIntervalRunsAndStops(t *testing.T) {
	before := runtime.NumGoroutine()
	path := filepath.Join(t.TempDir(), "i.ckp")
	f, err := Open(path, &Options{Sync: SyncInterval(10 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := f.Register("a", make([]byte, 1000))
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if g := durableFlags(t, path); len(g) >= 3 && g[2] == 'M' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no durable mark 5 s after a save under SyncInterval(10ms): %q", durableFlags(t, path))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; runtime.NumGoroutine() > before && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before Open", n, before)
	}
}

// TestRebootChecksUnsyncedTail: after a reboot (a new boot id) the data of saves that no
// durable point covers may have been lost with the page cache. Recovery checks it, and
// drops the first transaction whose data does not verify, with everything after it;
// without a reboot nothing is checked (a killed process loses nothing).
func TestRebootChecksUnsyncedTail(t *testing.T) {
	for _, tc := range []struct {
		name         string
		p            SyncPolicy
		saves        int
		wantVerified int // versions checked after the reboot
	}{
		// none: no durable point, so all 10 versions are checked; once the damaged
		// fifth SaveAll is dropped, the 8 versions before it are checked again (what
		// the dropped transaction had dropped comes back and must be checked too).
		{"none", SyncNone, 5, 18},
		{"every2", SyncEvery(2), 5, 2}, // covered up to save 4: only save 5
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.ckp")
			boot := [16]byte{1, 2, 3}
			f, err := Open(path, &Options{Sync: tc.p, bootID: &boot})
			if err != nil {
				t.Fatal(err)
			}
			regions := [][]byte{make([]byte, 3000), make([]byte, 2<<20+7)}
			for i, r := range regions {
				f.Register(fmt.Sprintf("r%d", i), r)
			}
			for v := 1; v <= tc.saves; v++ {
				for i, r := range regions {
					crashFill(r, i, v)
				}
				if err := f.SaveAll(); err != nil {
					t.Fatal(err)
				}
			}
			vs, _ := f.VersionsOf("r1")
			last := vs[len(vs)-1]
			// Simulate a crash: no Close. Copy the files as they are.
			crashed := filepath.Join(t.TempDir(), "crashed.ckp")
			damageCopy(t, path, crashed)
			f.Close()
			// The newest save's big region lost a page in the crash.
			b, _ := os.ReadFile(crashed)
			b[last.Offset+4096] ^= 0xff
			os.WriteFile(crashed, b, 0o600)

			// Same boot: nothing is checked; the damage shows as ErrCorrupt on restore.
			g, err := Open(crashed, &Options{ReadOnly: true, bootID: &boot})
			if err != nil {
				t.Fatal(err)
			}
			if r := g.Recovered(); r.Verified != 0 {
				t.Fatalf("same boot: %d versions checked, want none", r.Verified)
			}
			if vs, _ := g.VersionsOf("r1"); len(vs) != tc.saves {
				t.Fatalf("same boot: %d versions", len(vs))
			}
			g.Close()

			// Another boot: the unsynced tail is checked and the damaged SaveAll dropped.
			other := [16]byte{9}
			g, err = Open(crashed, &Options{bootID: &other})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			r := g.Recovered()
			// (The check stops at the damaged version: its SaveAll partner may come
			// before or after it.)
			if r.Verified < tc.wantVerified-1 || r.Verified > tc.wantVerified || r.DroppedTxns != 1 {
				t.Fatalf("after reboot: %+v, want about %d verified and 1 dropped", r, tc.wantVerified)
			}
			for i, reg := range regions {
				c, err := g.Register(fmt.Sprintf("r%d", i), reg)
				if err != nil {
					t.Fatal(err)
				}
				if n := len(c.Versions()); n != tc.saves-1 {
					t.Fatalf("r%d: %d versions after reboot, want %d", i, n, tc.saves-1)
				}
			}
			if err := g.RestoreAll(0); err != nil {
				t.Fatal(err)
			}
			for i, reg := range regions {
				if err := crashCheck(reg, i, tc.saves-1); err != nil {
					t.Fatal(err)
				}
			}
			// And the writer continues from there.
			if err := g.SaveAll(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
