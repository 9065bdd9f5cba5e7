package remote

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/ckp-go/ckp/internal/base"
)

// FuzzRecords: no input crashes the decoders of the job's records (life records, log
// entries, version records, cleaning marks); whatever one accepts encodes back to the
// same bytes, and every refusal wraps ErrCorrupt.
func FuzzRecords(f *testing.F) {
	life := &lifeRec{n: 3, base: point{2, 40}, sealSeq: 7, ranks: 64, arity: 8, every: 2, launch: "slurm.17.0"}
	entry := &logEntry{seq: 5, sealed: true, rp: point{3, 44}, nonce: 99}
	ver := &verRec{rank: 9, at: point{3, 44}, nonce: 5, ckpts: []verCkpt{
		{name: "grid", manifest: manifestKey(9, 3, "grid", 44), hash: 1},
		{name: "step", manifest: manifestKey(9, 3, "step", 44), hash: 2}}}
	for _, b := range [][]byte{life.encode(), entry.encode(), ver.encode(), cleanRecord(4), joinRecord(1, 2, "x"), nodeRecord(3)} {
		f.Add(b)
	}
	f.Add([]byte("CKPLIFE1"))
	corrupt := func(t *testing.T, what string, err error) {
		if !errors.Is(err, base.ErrCorrupt) {
			t.Fatalf("%s: decode error %v does not wrap ErrCorrupt", what, err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if l, err := decodeLife(b); err != nil {
			corrupt(t, "life", err)
		} else if !bytes.Equal(l.encode(), b) {
			t.Fatalf("life record %+v encodes to other bytes", l)
		}
		if e, err := decodeEntry(b); err != nil {
			corrupt(t, "log entry", err)
		} else if !bytes.Equal(e.encode(), b) {
			t.Fatalf("log entry %+v encodes to other bytes", e)
		}
		if r, err := decodeVerRec(b); err != nil {
			corrupt(t, "version record", err)
		} else if !bytes.Equal(r.encode(), b) {
			t.Fatalf("version record %s encodes to other bytes", fmt.Sprint(*r))
		}
		if n, err := decodeClean(b); err != nil {
			corrupt(t, "cleaning mark", err)
		} else if !bytes.Equal(cleanRecord(n), b) {
			t.Fatalf("cleaning mark %d encodes to other bytes", n)
		}
	})
}
