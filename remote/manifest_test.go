package remote

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

func TestManifestRoundTrip(t *testing.T) {
	m := &manifest{Name: "a/b\x00c", Version: 7, Length: 3 << 20, Hash: 0, Time: 12345, Txn: 9, TxnSize: 2,
		Rank: 3, Ranks: 4, Session: 0xabc, Life: 2, Table: make([]byte, 24),
		Extents: []extentRef{{0, 1 << 20, 0, 1, "d/3/x"}, {1 << 20, 2 << 20, 5, 2, "d/3/yy"}}}
	m.Hash = combineOf(m.Table)
	b := m.encode()
	got, err := decodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 1
		if _, err := decodeManifest(c); !errors.Is(err, base.ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
}

func TestNameSegment(t *testing.T) {
	for _, name := range []string{"grid", "a b", ".tmp-x", ".", "..", "~x", "a/b", "%41", "\xff\x00", strings.Repeat("x", 255), strings.Repeat("é", 60)} {
		seg := nameSegment(name)
		if err := store.CheckKey("m/0/" + seg + "/00000000000000000001"); err != nil {
			t.Errorf("%q: segment %q: %v", name, seg, err)
		}
		if got, ok := segmentName(seg); ok && got != name {
			t.Errorf("%q: segment %q decodes to %q", name, seg, got)
		} else if !ok && !strings.HasPrefix(seg, "~") {
			t.Errorf("%q: segment %q does not decode", name, seg)
		}
	}
}

func combineOf(table []byte) uint64 { return crc.Combine(table) }

// FuzzManifest: no input crashes the manifest decoder; what it accepts encodes back to
// a manifest that decodes the same.
func FuzzManifest(f *testing.F) {
	m := &manifest{Name: "grid", Version: 3, Length: 2<<20 + 1, Time: 7, Txn: 2, TxnSize: 2, Members: 2,
		Rank: 1, Ranks: 4, Session: 9, Life: 1, Table: make([]byte, 24),
		Extents: []extentRef{{0, 1 << 20, 0, 5, "d/1/aa-1"}, {1 << 20, 1<<20 + 1, 0, 6, "d/1/bb-2"}}}
	m.Hash = crc.Combine(m.Table)
	f.Add(m.encode())
	f.Add([]byte("CKPMANIF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeManifest(b)
		if err != nil {
			if !errors.Is(err, base.ErrCorrupt) {
				t.Fatalf("decode error %v does not wrap base.ErrCorrupt", err)
			}
			return
		}
		again, err := decodeManifest(m.encode())
		if err != nil {
			t.Fatalf("re-encoded manifest does not decode: %v", err)
		}
		if fmt.Sprintf("%+v", again) != fmt.Sprintf("%+v", m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, m)
		}
	})
}
