package remote

import (
	"context"
	"encoding/binary"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// Fetching versions from the store: parallel ranged GETs into their destination,
// every block checked against the manifest's hashes before anything uses the bytes.
// A destination is a buffer the bytes are read straight into, or a file written
// through a small buffer per GET (Incoming.Fill's write): each block is read into the
// buffer, checked there while it is in the cache, and written, so that the file's
// pages are written once and never zeroed or faulted in first.

const (
	fetchPiece   = 8 << 20 // bytes per ranged GET (a multiple of every block size)
	fetchWorkers = 4       // GETs in flight per version
)

// streams is the number of ranged GETs of one object to run at once on st: what st
// says serves it best (store.ReadStreamer: one on a local disk), at most fetchWorkers.
func streams(st store.Store) int {
	if r, ok := st.(store.ReadStreamer); ok {
		return max(1, min(fetchWorkers, r.ReadStreams()))
	}
	return fetchWorkers
}

// fetchInto downloads the payload that m describes (m.Length bytes) into dst and checks
// it. With write nil, the bytes are read straight into dst. Otherwise each piece is
// handed to write (bytes p of the payload at off) from a buffer, checked block by block
// before it is written, and dst is read only to check what could not be checked on the
// way (a block cut by pieces, a version of one block): write must make the bytes
// visible in dst. dst may be a mapping: faults become base.ErrCorrupt. It returns nil
// only when every byte of dst matches the manifest's hashes.
func fetchInto(ctx context.Context, st store.Store, m *manifest, dst []byte, write func(p []byte, off int64) error, workers int) error {
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
	chunk := bs // what goes through the buffer at a time: a block, or a version of one
	if len(m.Table) == 0 {
		chunk = max(m.Length, 1)
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		// The blocks that lie within a piece are checked as soon as they have arrived,
		// while other pieces are still coming; the rest at the end.
		checked := make([]atomic.Bool, nb)
		var firstBad atomic.Int64
		firstBad.Store(-1)
		check := func(p []byte, lo int64) {
			if len(m.Table) == 0 {
				return
			}
			for b := (lo + bs - 1) >> shift; ; b++ {
				blo, bhi := b<<shift, min((b+1)<<shift, m.Length)
				if blo >= m.Length || bhi > lo+int64(len(p)) {
					break
				}
				if crc.Block(p[blo-lo:bhi-lo]) != binary.LittleEndian.Uint64(m.Table[8*b:]) {
					firstBad.CompareAndSwap(-1, b)
				}
				checked[b].Store(true)
			}
		}
		err := parallel(ctx, len(ps), workers, func(ctx context.Context, i int) (err error) {
			p := ps[i]
			defer base.Catch(&err)
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			var buf *[]byte
			if write != nil {
				buf = chunkBufs.Get().(*[]byte)
				defer chunkBufs.Put(buf)
				if int64(cap(*buf)) < chunk {
					*buf = make([]byte, chunk)
				}
			}
			// A failed write is local: it ends the retries.
			wctx, stop := context.WithCancel(ctx)
			defer stop()
			var werr error
			err = retry(wctx, p.n, func(ctx context.Context) error {
				rc, err := st.Get(ctx, p.key, p.objOff, p.n)
				if err != nil {
					return err
				}
				defer rc.Close()
				if write == nil {
					if _, err := io.ReadFull(rc, dst[p.off:p.off+p.n]); err != nil {
						return err
					}
					check(dst[p.off:p.off+p.n], p.off)
					return nil
				}
				for o := p.off; o < p.off+p.n; {
					// Up to the next block boundary: a whole block, but where a piece
					// cuts one.
					end := min((o/chunk+1)*chunk, p.off+p.n)
					b := (*buf)[:end-o]
					if _, err := io.ReadFull(rc, b); err != nil {
						return err
					}
					check(b, o)
					if werr = write(b, o); werr != nil {
						stop()
						return werr
					}
					o = end
				}
				return nil
			})
			if werr != nil {
				return werr
			}
			return err
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

// chunkBufs holds the buffers that fetches write through (a block each).
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, crc.BlockSize); return &b }}

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
