package remote

import (
	"context"
	"encoding/binary"
	"io"
	"runtime"
	"runtime/debug"
	"sync/atomic"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// Fetching versions from the store: parallel ranged GETs straight into their
// destination (a slot of the data mapping, or a buffer), then a check of every block
// against the manifest's hashes before anything uses the bytes.

const (
	fetchPiece   = 8 << 20 // bytes per ranged GET (a multiple of the 1 MiB block)
	fetchWorkers = 4       // GETs in flight per version
)

// fetchInto downloads the payload that m describes into dst (m.Length bytes) and
// checks it. dst may be part of the data mapping: faults become base.ErrCorrupt. prepare,
// if not nil, is called for each piece of dst before it is written (to pre-fault it).
func fetchInto(ctx context.Context, st store.Store, m *manifest, dst []byte, prepare func(off, n int64), workers int) error {
	if int64(len(dst)) != m.Length {
		return base.Errf(base.ErrInvalid, "fetch of %d bytes into %d", m.Length, len(dst))
	}
	type piece struct {
		off, n, objOff int64
		key            string
	}
	var ps []piece
	for _, e := range m.Extents {
		for o := int64(0); o < e.Len; o += fetchPiece {
			ps = append(ps, piece{e.Off + o, min(fetchPiece, e.Len-o), e.ObjOff + o, e.Key})
		}
	}
	if len(m.Table) > 0 && crc.Combine(m.Table) != m.Hash {
		return base.Errf(base.ErrCorrupt, "version %d of %q in %s: block table does not match the hash", m.Version, m.Name, st)
	}
	shift := m.blockShift()
	bs := int64(1) << shift
	nb := max(int64(1), int64(len(m.Table)/8))
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		// The blocks that lie within a piece are checked as soon as it has arrived,
		// while other pieces are still coming; the rest at the end.
		checked := make([]atomic.Bool, nb)
		var firstBad atomic.Int64
		firstBad.Store(-1)
		err := parallel(ctx, len(ps), workers, func(ctx context.Context, i int) (err error) {
			p := ps[i]
			defer base.Catch(&err)
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			if prepare != nil && attempt == 0 {
				prepare(p.off, p.n)
			}
			err = retry(ctx, p.n, func(ctx context.Context) error {
				rc, err := st.Get(ctx, p.key, p.objOff, p.n)
				if err != nil {
					return err
				}
				defer rc.Close()
				_, err = io.ReadFull(rc, dst[p.off:p.off+p.n])
				return err
			})
			if err != nil || len(m.Table) == 0 {
				return err
			}
			for b := (p.off + bs - 1) >> shift; ; b++ {
				lo, hi := b<<shift, min((b+1)<<shift, m.Length)
				if lo >= m.Length || hi > p.off+p.n {
					break
				}
				if crc.Block(dst[lo:hi]) != binary.LittleEndian.Uint64(m.Table[8*b:]) {
					firstBad.CompareAndSwap(-1, b)
				}
				checked[b].Store(true)
			}
			return nil
		})
		if err != nil {
			return err
		}
		bad := firstBad.Load()
		if bad < 0 {
			if bad, err = checkRest(dst, m.Hash, m.Table, shift, checked); err != nil {
				return err
			}
		}
		if bad < 0 {
			return nil
		}
		// A block that does not match: fetch everything once more (a transfer that
		// went wrong), then give up.
		lastErr = base.Errf(base.ErrCorrupt, "version %d of %q in %s: block %d does not match its hash", m.Version, m.Name, st, bad)
	}
	return lastErr
}

// checkRest checks p against its hash (and block table, for more than one block),
// hashing the blocks not checked yet on every core. It returns the first bad block, or
// -1.
func checkRest(p []byte, hash uint64, table []byte, shift uint8, checked []atomic.Bool) (bad int64, err error) {
	if len(table) == 0 {
		defer base.Catch(&err)
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		if crc.Payload(p) != hash {
			return 0, nil
		}
		return -1, nil
	}
	if crc.Combine(table) != hash {
		return 0, base.Errf(base.ErrCorrupt, "block table does not match the hash")
	}
	n := int64(len(table) / 8)
	var next atomic.Int64
	var first atomic.Int64
	first.Store(-1)
	err = parallel(context.Background(), runtime.GOMAXPROCS(0), runtime.GOMAXPROCS(0), func(_ context.Context, _ int) (err error) {
		defer base.Catch(&err)
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		for {
			b := next.Add(1) - 1
			if b >= n {
				return nil
			}
			if checked[b].Load() {
				continue
			}
			lo, hi := b<<shift, min((b+1)<<shift, int64(len(p)))
			if crc.Block(p[lo:hi]) != binary.LittleEndian.Uint64(table[8*b:]) {
				first.CompareAndSwap(-1, b)
				return nil
			}
		}
	})
	return first.Load(), err
}
