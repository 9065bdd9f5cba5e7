package engine

import (
	"encoding/binary"
	"os"

	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/internal/slot"
)

// forgeIndex decodes every record of the index at path, lets edit change them, and
// writes them back with a fresh CRC chain (what anyone can do: CRC-32C is no secret).
func forgeIndex(t *testing.T, path string, edit func(i int, r *index.Record)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, seed, err := index.DecodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	var recs []index.Record
	prev := seed
	for off := index.HeaderSize; off+index.RecordSize <= len(b); off += index.RecordSize {
		var r index.Record
		c, ok := index.Decode(b[off:], prev, &r)
		if !ok {
			break
		}
		r.Name = append([]byte(nil), r.Name...)
		recs = append(recs, r)
		prev = c
	}
	prev = seed
	for i := range recs {
		edit(i, &recs[i])
		prev = index.Encode(b[index.HeaderSize+i*index.RecordSize:], &recs[i], prev)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// craftShortDelta writes a file whose delta v2 claims 2 blocks (0 and 5, 4096 bytes
// each) in a payload of 4097 bytes: every CRC verifies, slot.ReadTrailer and the replay accept
// it (the payload is within [(K-1)*B, K*B]), and the data file ends right after the slot.
func craftShortDelta(t *testing.T) string {
	path := apiPath(t)
	f := apiOpen(t, path, &Options{Differential: true, NoTracking: true, NoPrefault: true})
	region := diffRegion(64 << 10)
	c := apiReg(t, f, "r", region)
	apiNoErr(t, c.Save(), "v1")
	region[10]++
	region[5*4096+10]++
	apiNoErr(t, c.Save(), "v2")
	v2 := c.Versions()[1]
	if !v2.Delta {
		t.Fatal("v2 is not a delta")
	}
	seed := f.seed
	apiNoErr(t, f.Close(), "Close")

	lay := slot.Layout{RegionLen: int64(len(region)), Shift: 12, Base: 1, K: 2, Payload: 4097}
	buf := make([]byte, pad8(lay.Payload)+lay.Footprint(1))
	tr := buf[pad8(lay.Payload):]
	idx, hashes := slot.BlockParts(tr, &lay)
	idx[0], idx[4] = 0, 5
	binary.LittleEndian.PutUint64(hashes, xxhash.Sum64(region[:4096])) // block 0 is intact
	slot.WriteBlockTrailer(tr, seed, &slot.Trailer{Hash: v2.Hash, Length: uint64(lay.Payload), Version: 2, Txn: v2.Txn, TxnCount: 1}, &lay, "r")
	apiPatchFile(t, path, v2.Offset+pad8(lay.Payload), tr)
	if err := os.Truncate(path, v2.Offset+int64(len(buf))); err != nil {
		t.Fatal(err)
	}
	forgeIndex(t, path+".idx", func(i int, r *index.Record) {
		if r.Kind == index.KindBlocks && r.Version == 2 {
			r.Offset = uint64(lay.Payload)
		}
		if r.Kind == index.KindVersion && r.Version == 2 {
			r.Slack = 0
		}
	})
	return path
}

// TestCraftedDeltaVerifyReportsDamage: Verify of that file reports damage and does not
// kill the process: the blocks of a delta are checked against its payload before any
// of them is read.
func TestCraftedDeltaVerifyReportsDamage(t *testing.T) {
	path := craftShortDelta(t)
	g := apiOpen(t, path, &Options{ReadOnly: true})
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Verify panicked out of the API (the process would die): %v", r)
		}
	}()
	rep, err := g.Verify(nil)
	t.Logf("Verify: %v %+v", err, rep)
}

// TestCraftedDeltaRecoveryAfterReboot: the same file opened by a writer after a
// (simulated) reboot, when recovery checks the unsynced tail, opens without a crash.
func TestCraftedDeltaRecoveryAfterReboot(t *testing.T) {
	path := craftShortDelta(t)
	other := [16]byte{1, 2, 3}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Open panicked (the process would die): %v", r)
		}
	}()
	// Make the tail unsynced in the eyes of recovery: drop the durable marks.
	forgeIndex(t, path+".idx", func(i int, r *index.Record) {
		r.Flags &^= index.FlagDurable
	})
	g, err := Open(path, &Options{bootID: &other})
	t.Logf("Open: %v, %+v", err, g.Recovered())
	if g != nil {
		g.Close()
	}
}

// craftShortDeltaAtLimit: 2 MiB blocks, a delta v2 claiming blocks 0 and 5 in a payload
// of 2 MiB + 1 bytes, whose slot ends exactly at MaxSize (a multiple of 2 MiB, so the
// mapping's capacity ends there too).
func craftShortDeltaAtLimit(t *testing.T) (string, *Options) {
	path := apiPath(t)
	const maxSize = 42 << 20
	opts := &Options{Differential: true, NoTracking: true, BlockSize: 2 << 20, MaxSize: maxSize, ChunkSize: 1 << 20, NoPrefault: true}
	f := apiOpen(t, path, opts)
	region := make([]byte, 32<<20)
	c := apiReg(t, f, "r", region)
	apiNoErr(t, c.Save(), "v1")
	region[10]++
	region[5*(2<<20)+10]++
	apiNoErr(t, c.Save(), "v2")
	v2 := c.Versions()[1]
	if !v2.Delta {
		t.Fatal("v2 is not a delta")
	}
	seed := f.seed
	apiNoErr(t, f.Close(), "Close")

	lay := slot.Layout{RegionLen: int64(len(region)), Shift: 21, Base: 1, K: 2, Payload: 2<<20 + 1}
	fp := lay.Footprint(1)
	p := int64(maxSize) - fp
	if p%8 != 0 {
		t.Fatalf("offset %d", p)
	}
	tr := make([]byte, fp-pad8(lay.Payload))
	idx, hashes := slot.BlockParts(tr, &lay)
	idx[0], idx[4] = 0, 5
	binary.LittleEndian.PutUint64(hashes, xxhash.Sum64(region[:2<<20]))
	slot.WriteBlockTrailer(tr, seed, &slot.Trailer{Hash: v2.Hash, Length: uint64(lay.Payload), Version: 2, Txn: v2.Txn, TxnCount: 1}, &lay, "r")
	if err := os.Truncate(path, maxSize); err != nil {
		t.Fatal(err)
	}
	apiPatchFile(t, path, p, region[:2<<20])
	apiPatchFile(t, path, p+pad8(lay.Payload), tr)
	forgeIndex(t, path+".idx", func(i int, r *index.Record) {
		if r.Kind == index.KindBlocks && r.Version == 2 {
			r.Offset = uint64(lay.Payload)
		}
		if r.Kind == index.KindVersion && r.Version == 2 {
			r.Offset, r.Slack = uint64(p), 0
		}
	})
	return path, opts
}

func TestCraftedDeltaAtLimitVerifyReportsDamage(t *testing.T) {
	path, opts := craftShortDeltaAtLimit(t)
	g := apiOpen(t, path, &Options{ReadOnly: true, MaxSize: opts.MaxSize})
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Verify panicked out of the API (the process would die): %v", r)
		}
	}()
	rep, err := g.Verify(nil)
	t.Logf("Verify: %v %+v", err, rep)
}

func TestCraftedDeltaAtLimitRecoveryAfterReboot(t *testing.T) {
	path, opts := craftShortDeltaAtLimit(t)
	forgeIndex(t, path+".idx", func(i int, r *index.Record) { r.Flags &^= index.FlagDurable })
	other := [16]byte{1, 2, 3}
	o := *opts
	o.bootID = &other
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Open panicked (the process would die): %v", r)
		}
	}()
	g, err := Open(path, &o)
	t.Logf("Open: %v", err)
	if g != nil {
		t.Logf("%+v", g.Recovered())
		g.Close()
	}
}
