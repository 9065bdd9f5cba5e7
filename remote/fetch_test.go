package remote

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/internal/pattern"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/mem"
)

// countingGets counts the Gets of a store.
type countingGets struct {
	store.Store
	gets atomic.Int32
}

func (s *countingGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key, off, n)
}

// storedWhole puts payload p into st as one data object and returns the manifest of a
// version stored whole that names it with the given extents (cuts: where they start
// and end within p; nil: one extent).
func storedWhole(t *testing.T, st store.Store, p []byte, cuts []int64) *manifest {
	t.Helper()
	n := int64(len(p))
	var table []byte
	for off := int64(0); off < n; off += crc.BlockSize {
		table = binary.LittleEndian.AppendUint64(table, crc.Block(p[off:min(off+crc.BlockSize, n)]))
	}
	key := dataKey(0, 1, 1, crc.Payload(p), n)
	if err := st.Create(t.Context(), key, bytes.NewReader(p), n); err != nil {
		t.Fatal(err)
	}
	m := &manifest{Name: "r", Version: 1, Length: n, Hash: crc.Payload(p), Table: table}
	if cuts == nil {
		cuts = []int64{0, n}
	}
	for i := 0; i+1 < len(cuts); i++ {
		lo, hi := cuts[i], cuts[i+1]
		m.Extents = append(m.Extents, extentRef{Off: lo, Len: hi - lo, ObjOff: lo, Hash: crc.Payload(p[lo:hi]), Key: key})
	}
	return m
}

// TestFetchThroughWrite: a fetch that writes through a buffer (Incoming.Fill with a
// write function, as a restore into the data file does) puts every byte where it
// belongs and checks it, also where extents cut blocks (checked in dst at the end),
// and refuses damaged bytes with ErrCorrupt.
func TestFetchThroughWrite(t *testing.T) {
	const n = 3*fetchPiece + 5<<20 + 123 // several pieces, a short last block
	p := make([]byte, n)
	pattern.Fill(p, 1, 2)
	for _, tc := range []struct {
		name string
		cuts []int64
	}{
		{"one extent", nil},
		{"extents that cut blocks", []int64{0, 1<<20 + 7, 9<<20 + 1, n}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := mem.New("fetch")
			m := storedWhole(t, st, p, tc.cuts)
			dst := make([]byte, n)
			write := func(b []byte, off int64) error {
				copy(dst[off:], b)
				return nil
			}
			if err := fetchInto(t.Context(), st, m, dst, write, fetchWorkers); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, p) {
				t.Fatal("the bytes written differ from the object's")
			}
			// The stored object damaged, in a block checked on the way or in one that
			// the extents cut: refused.
			for _, at := range []int{2<<20 + 3, 1<<20 + 3} {
				bad := bytes.Clone(p)
				bad[at] ^= 1
				key := m.Extents[0].Key
				if err := st.Put(t.Context(), key, bytes.NewReader(bad), n); err != nil {
					t.Fatal(err)
				}
				clear(dst)
				if err := fetchInto(t.Context(), st, m, dst, write, fetchWorkers); !errors.Is(err, base.ErrCorrupt) {
					t.Fatalf("fetch of an object damaged at %d = %v, want ErrCorrupt", at, err)
				}
			}
		})
	}
}

// TestFetchWriteFails: a write that fails (the local disk) ends the fetch with its
// error, without retrying the store.
func TestFetchWriteFails(t *testing.T) {
	const n = 2*fetchPiece + 100
	p := make([]byte, n)
	pattern.Fill(p, 3, 4)
	st := &countingGets{Store: mem.New("fetch")}
	m := storedWhole(t, st, p, nil)
	disk := errors.New("disk says no")
	err := fetchInto(t.Context(), st, m, make([]byte, n), func([]byte, int64) error { return disk }, fetchWorkers)
	if !errors.Is(err, disk) {
		t.Fatalf("fetch with a failing write = %v, want its error", err)
	}
	if g := st.gets.Load(); g > 3 {
		t.Fatalf("%d Gets for 3 pieces: the failed write was retried", g)
	}
}

// TestFetchStreams: a fetch reads a store in as many ranged GETs at once as it says
// serve it best (one on a local disk), at most fetchWorkers; a store that says nothing
// (a network store) in fetchWorkers.
func TestFetchStreams(t *testing.T) {
	if n := streams(mem.New("m")); n != fetchWorkers {
		t.Errorf("a store without ReadStreams: %d streams, want %d", n, fetchWorkers)
	}
	for _, c := range []struct{ says, want int }{{1, 1}, {0, 1}, {2, 2}, {64, fetchWorkers}} {
		if n := streams(streamer{mem.New("m"), c.says}); n != c.want {
			t.Errorf("a store that says %d: %d streams, want %d", c.says, n, c.want)
		}
	}
}

type streamer struct {
	*mem.Store
	n int
}

func (s streamer) ReadStreams() int { return s.n }

// TestParallelEndedContext: calls that parallel left out because ctx ended are not a
// success. It returns ctx's cause (a fetch, a listing of manifests or Open's reads
// would otherwise take what was never read as done), and a call's own error still
// comes first.
func TestParallelEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stopped")
	cancel(stop)
	var ran atomic.Int32
	for _, k := range []int{1, 4} {
		err := parallel(ctx, 8, k, func(context.Context, int) error { ran.Add(1); return nil })
		if !errors.Is(err, stop) || ran.Load() != 0 {
			t.Fatalf("k=%d: %v after %d calls, want %v after none", k, err, ran.Load(), stop)
		}
	}
	// Ended halfway: the calls after it are left out.
	ctx, cancel = context.WithCancelCause(context.Background())
	err := parallel(ctx, 8, 1, func(_ context.Context, i int) error {
		if i == 3 {
			cancel(stop)
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("ended halfway: %v, want %v", err, stop)
	}
	// A call's error is returned, not the cancellation it causes.
	boom := errors.New("boom")
	err = parallel(context.Background(), 8, 1, func(_ context.Context, i int) error {
		if i == 2 {
			return boom
		}
		return nil
	})
	if err != boom {
		t.Fatalf("%v, want %v", err, boom)
	}
}
