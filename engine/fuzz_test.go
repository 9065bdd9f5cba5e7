package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/slot"
)

// fuzzSeedFiles makes a small valid pair of files and returns their bytes.
func fuzzSeedFiles(f *testing.F) (data, idx []byte) {
	dir := f.TempDir()
	path := filepath.Join(dir, "s.ckp")
	fl, err := Open(path, &Options{ChunkSize: 64 << 10, NoPrefault: true, KeepVersions: 3})
	if err != nil {
		f.Fatal(err)
	}
	a := make([]byte, 300)
	b := make([]byte, 5000)
	if _, err := fl.Register("a", a); err != nil {
		f.Fatal(err)
	}
	if _, err := fl.Register("bb", b); err != nil {
		f.Fatal(err)
	}
	for v := 1; v <= 5; v++ {
		crashFill(a, 0, v)
		crashFill(b, 1, v)
		if err := fl.SaveAll(); err != nil {
			f.Fatal(err)
		}
	}
	fl.Close()
	data, _ = os.ReadFile(path)
	idx, _ = os.ReadFile(path + ".idx")
	// Trim the zeroed growth so the fuzzer works on the meaningful bytes.
	return bytes.TrimRight(data, "\x00"), bytes.TrimRight(idx, "\x00")
}

// fuzzSeedDiff makes a small pair of files with versions stored by blocks: full
// versions and deltas, some pinned by retention.
func fuzzSeedDiff(f *testing.F) (data, idx []byte) {
	path := filepath.Join(f.TempDir(), "d.ckp")
	fl, err := Open(path, &Options{ChunkSize: 64 << 10, NoPrefault: true, KeepVersions: 2, Differential: true, NoTracking: true, chainLimit: 3})
	if err != nil {
		f.Fatal(err)
	}
	a := make([]byte, 16*4096+100)
	if _, err := fl.Register("d", a); err != nil {
		f.Fatal(err)
	}
	for v := 1; v <= 6; v++ {
		a[v*4096+v]++
		if err := fl.SaveAll(); err != nil {
			f.Fatal(err)
		}
	}
	fl.Close()
	data, _ = os.ReadFile(path)
	idx, _ = os.ReadFile(path + ".idx")
	return bytes.TrimRight(data, "\x00"), bytes.TrimRight(idx, "\x00")
}

// fuzzHash is the hash a version's bytes must have: the payload hash of a version stored
// whole, the hash of its block table for one stored by blocks.
func fuzzHash(b []byte, info VersionInfo) uint64 {
	if info.BlockSize == 0 {
		return crc.Payload(b)
	}
	var table []byte
	for off := 0; off < len(b); off += info.BlockSize {
		table = binary.LittleEndian.AppendUint64(table, xxhash.Sum64(b[off:min(off+info.BlockSize, len(b))]))
	}
	return xxhash.Sum64(table)
}

// FuzzOpen opens arbitrary file contents. Open must never crash or hang; when it
// succeeds, every version it lists is either served with bytes that match its hash or
// refused with ErrCorrupt, and a writer can save again.
func FuzzOpen(f *testing.F) {
	data, idx := fuzzSeedFiles(f)
	f.Add(data, idx)
	f.Add(data, idx[:len(idx)-10])
	f.Add(data[:5000], idx)
	f.Add([]byte("not a checkpoint"), []byte{})
	ddata, didx := fuzzSeedDiff(f)
	f.Add(ddata, didx)
	f.Add(ddata, didx[:len(didx)-70])
	f.Fuzz(func(t *testing.T, data, idx []byte) {
		dir := fuzzDir(t)
		path := filepath.Join(dir, "f.ckp")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".idx", idx, 0o600); err != nil {
			t.Fatal(err)
		}
		other := [16]byte{1} // as after a reboot: recovery checks unsynced data
		for _, ro := range []bool{true, false} {
			fl, err := Open(path, &Options{ReadOnly: ro, NoPrefault: true, ChunkSize: 64 << 10, MaxSize: 1 << 30, bootID: &other})
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("open (ro=%v): %v", ro, err)
				}
				continue
			}
			for _, name := range fl.Checkpoints() {
				vs, err := fl.VersionsOf(name)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range vs {
					b, info, err := fl.ReadVersion(name, v.Version)
					if err != nil {
						// ErrVersion: a read-only File found the slot reused.
						if !errors.Is(err, ErrCorrupt) && !(ro && errors.Is(err, ErrVersion)) {
							t.Fatalf("read %q@%d: %v", name, v.Version, err)
						}
						continue
					}
					if fuzzHash(b, info) != info.Hash || int64(len(b)) != info.Size {
						t.Fatalf("read %q@%d served bytes that do not match", name, v.Version)
					}
				}
			}
			if _, err := fl.Verify(nil); err != nil {
				t.Fatal(err)
			}
			if !ro {
				r := make([]byte, 100)
				c, err := fl.Register("fuzz-new", r)
				if err == nil {
					if err := c.Save(); err != nil {
						t.Fatalf("save after recovery: %v", err)
					}
					if err := c.Restore(0); err != nil {
						t.Fatalf("restore after recovery: %v", err)
					}
				}
			}
			if err := fl.Close(); err != nil && !ro {
				t.Fatalf("close: %v", err)
			}
		}
	})
}

// FuzzTrailer decodes arbitrary bytes as a slot trailer: a whole one, or one of a
// version stored by blocks (full or delta).
func FuzzTrailer(f *testing.F) {
	b := make([]byte, 256)
	slot.WriteTrailer(b, 7, &slot.Trailer{Hash: 1, Length: 3 << 20, Version: 2, Txn: 3, TxnCount: 1}, "name")
	f.Add(b, uint32(7))
	for _, lay := range []slot.Layout{
		{RegionLen: 5*4096 + 3, Shift: 12, K: 6, Payload: 5*4096 + 3},
		{RegionLen: 9 * 4096, Shift: 12, Base: 4, K: 2, Payload: 2 * 4096},
		{RegionLen: 9 * 4096, Shift: 12, Base: 4},
	} {
		b := make([]byte, slot.Fixed+lay.ExtLen(3))
		idx, hashes := slot.BlockParts(b, &lay)
		for i := range lay.K {
			if idx != nil {
				binary.LittleEndian.PutUint32(idx[4*i:], uint32(2*i+1))
			}
			binary.LittleEndian.PutUint64(hashes[8*i:], uint64(i)*77)
		}
		slot.WriteBlockTrailer(b, 9, &slot.Trailer{Hash: 5, Length: uint64(lay.Payload), Version: 5, Txn: 8, TxnCount: 2}, &lay, "abc")
		f.Add(b, uint32(9))
	}
	f.Fuzz(func(t *testing.T, b []byte, seed uint32) {
		tr, ok := slot.ReadTrailer(b, seed)
		if !ok {
			return
		}
		if len(tr.Name) == 0 || len(tr.Name) > MaxNameLen {
			t.Fatalf("accepted an inconsistent trailer: %+v", tr)
		}
		if tr.Kind == slot.KindClassic {
			if len(tr.Table) != crc.TableSize(int64(tr.Length)) {
				t.Fatalf("accepted an inconsistent trailer: %+v", tr)
			}
			out := make([]byte, slot.TrailerLen(int64(tr.Length), len(tr.Name)))
			copy(out[slot.Fixed:], tr.Table)
			slot.WriteTrailer(out, seed, &tr, string(tr.Name))
			if !bytes.Equal(out[:slot.Fixed], b[:slot.Fixed]) {
				t.Fatalf("trailer does not round-trip")
			}
			return
		}
		lay := tr.Blocks
		if lay.K < 0 || lay.K > blockCount(lay.RegionLen, lay.Shift) || len(tr.Table) != int(8*lay.K) ||
			(tr.Kind == slot.KindDelta) != (tr.Index != nil) || int64(tr.Length) != lay.Payload {
			t.Fatalf("accepted an inconsistent block trailer: %+v", tr)
		}
		out := make([]byte, slot.Fixed+lay.ExtLen(len(tr.Name)))
		idx, hashes := slot.BlockParts(out, &lay)
		copy(idx, tr.Index)
		copy(hashes, tr.Table)
		slot.WriteBlockTrailer(out, seed, &tr, &lay, string(tr.Name))
		if !bytes.Equal(out[:slot.Fixed], b[:slot.Fixed]) {
			t.Fatalf("block trailer does not round-trip")
		}
	})
}

// FuzzDataHeader decodes arbitrary bytes as a data file header.
func FuzzDataHeader(f *testing.F) {
	b := make([]byte, slot.HeaderLen)
	slot.EncodeHeader(b, slot.Header{FileID: [16]byte{3}, Created: 5})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := slot.DecodeHeader(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v", err)
			}
			return
		}
		out := make([]byte, slot.HeaderLen)
		slot.EncodeHeader(out, h)
		if !bytes.Equal(out, b[:slot.HeaderLen]) {
			t.Fatal("header does not round-trip")
		}
	})
}

// fuzzDir returns a temporary directory, in memory (/dev/shm) where there is one: the
// fuzz targets write and sync files at every execution.
func fuzzDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "ckp-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}
