package remote

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// Counts of ranks read from a store are bounded: a stray key or a manifest that
// claims billions of ranks is damage (ErrCorrupt), never an allocation of that size.

func TestInspectJobBoundsRanksFromKeys(t *testing.T) {
	st, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := "m/99999999999/x/00000000000000000001"
	if err := st.Create(ctx, key, bytes.NewReader([]byte("junk")), 4); err != nil {
		t.Fatal(err)
	}
	if _, err := InspectJob(ctx, st, 0); !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("InspectJob with key %s: %v, want ErrCorrupt", key, err)
	}
	if _, err := InspectJob(ctx, st, MaxRanks+1); !errors.Is(err, base.ErrInvalid) {
		t.Fatalf("InspectJob of %d ranks: %v, want ErrInvalid", MaxRanks+1, err)
	}
}

func TestInspectJobBoundsRanksFromManifests(t *testing.T) {
	st, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m := &manifest{Name: "x", Version: 1, Length: 5, Hash: crc.Payload([]byte("hello")), Rank: 0, Ranks: 0xFFFFFFF0, Life: 1,
		Extents: []extentRef{{Off: 0, Len: 5, Hash: crc.Payload([]byte("hello")), Key: "d/0/x-5"}}}
	b := m.encode() // a valid CRC over a claim of 4 billion ranks
	if _, err := decodeManifest(b); !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("decode of a manifest of %d ranks: %v, want ErrCorrupt", m.Ranks, err)
	}
	if err := st.Create(ctx, manifestKey(0, 1, "x", 1), bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	js, err := InspectJob(ctx, st, 0)
	if err == nil && js.Ranks > 1 {
		t.Fatalf("InspectJob took %d ranks from a damaged manifest", js.Ranks)
	}
	if err != nil && !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("InspectJob: %v, want ErrCorrupt or one rank", err)
	}
}
