package engine

import (
	"encoding/binary"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
)

// The copy engine: a save copies each region into the data mapping and hashes it in the
// same pass (each 16 KiB piece of the source is hashed, then copied while it is still in
// L1); a restore verifies the mapping's bytes against their hashes, then copies them out.
// Large jobs are cut into pieces of two hash blocks (2 MiB, one huge page) that the
// caller and the pool's goroutines claim in turn, so both cores fault, copy and hash.

const (
	l1Chunk    = 16 << 10
	pieceBytes = 2 * crc.BlockSize
)

type jobKind uint8

const (
	jobSave   jobKind = iota // copy src→dst and hash src into table / hash
	jobVerify                // hash src and compare with table / hash
	jobCopy                  // copy src→dst
	jobHash                  // hash src into table
)

// job is one region's part of a batch.
type job struct {
	src, dst []byte
	table    []byte  // multi-block payloads: the block-hash table in the trailer
	hash     *uint64 // single-block payloads: where the hash goes (save) or is (verify)
	shift    uint8   // log2 of the hash block size; 0 means crc.BlockShift (1 MiB)

	// A group of runs of a version stored by blocks (restore): each run's blocks are
	// in data at r.data and go to dst at r.region; table holds every block's hash. Such
	// a job is one piece.
	runs []blockRun
	data []byte
}

// batch is a set of jobs of one kind, cut into pieces claimed by atomic counter.
type batch struct {
	kind   jobKind
	jobs   []job
	starts []int // starts[i] is the first piece of jobs[i]; starts[len(jobs)] the total
	next   atomic.Int64
	bad    atomic.Bool  // a verify mismatch
	fault  atomic.Value // first recovered fault (error)
	wg     sync.WaitGroup
}

func (b *batch) reset(kind jobKind) {
	b.kind = kind
	b.jobs = b.jobs[:0]
	b.starts = b.starts[:0]
	b.next.Store(0)
	b.bad.Store(false)
	b.fault = atomic.Value{}
}

func (b *batch) add(j job) { b.jobs = append(b.jobs, j) }

// seal computes the piece table; call after the last add.
func (b *batch) seal() {
	b.starts = b.starts[:0]
	total := 0
	for _, j := range b.jobs {
		b.starts = append(b.starts, total)
		total += (len(j.src) + pieceBytes - 1) / pieceBytes
		if len(j.src) == 0 {
			total++
		}
	}
	b.starts = append(b.starts, total)
}

func (b *batch) bytes() int {
	n := 0
	for _, j := range b.jobs {
		n += len(j.src)
		for _, r := range j.runs {
			n += int(r.n)
		}
	}
	return n
}

// work claims and runs pieces until none is left. A memory fault (a file truncated
// underneath the mapping, an I/O error on a mapped page) is recovered and recorded.
func (b *batch) work() {
	defer func() {
		if r := recover(); r != nil {
			b.fault.CompareAndSwap(nil, faultError(r))
			// Stop everyone: claim all remaining pieces.
			b.next.Store(int64(b.starts[len(b.starts)-1]))
		}
	}()
	total := int64(b.starts[len(b.starts)-1])
	ji := 0
	for {
		p := int(b.next.Add(1) - 1)
		if int64(p) >= total {
			return
		}
		for b.starts[ji+1] <= p {
			ji++
		}
		for b.starts[ji] > p {
			ji--
		}
		b.piece(&b.jobs[ji], p-b.starts[ji])
	}
}

// piece runs piece k of job j: up to two hash blocks.
func (b *batch) piece(j *job, k int) {
	if j.runs != nil {
		b.runsPiece(j)
		return
	}
	lo := k * pieceBytes
	hi := min(lo+pieceBytes, len(j.src))
	if b.kind == jobCopy {
		copy(j.dst[lo:hi], j.src[lo:hi])
		return
	}
	shift := j.shift
	if shift == 0 {
		shift = crc.BlockShift
	}
	bs := 1 << shift
	for blk := lo; blk < hi || blk == lo; blk += bs {
		end := min(blk+bs, hi)
		var h uint64
		if b.kind == jobSave {
			h = copyHash(j.dst[blk:end], j.src[blk:end])
		} else {
			h = xxhash.Sum64(j.src[blk:end])
		}
		if j.table == nil {
			if b.kind == jobVerify {
				if h != *j.hash {
					b.bad.Store(true)
				}
			} else {
				*j.hash = h
			}
		} else {
			e := j.table[8*(blk>>shift):]
			if b.kind == jobVerify {
				if binary.LittleEndian.Uint64(e) != h {
					b.bad.Store(true)
				}
			} else {
				binary.LittleEndian.PutUint64(e, h)
			}
		}
		if end == hi {
			break
		}
	}
}

// copyHash copies src to dst and returns the xxhash64 of src, hashing each L1-sized
// piece just before copying it so the copy reads it from cache.
func copyHash(dst, src []byte) uint64 {
	if len(src) <= l1Chunk {
		h := xxhash.Sum64(src)
		copy(dst, src)
		return h
	}
	var d xxhash.Digest
	d.Reset()
	for i := 0; i < len(src); i += l1Chunk {
		e := min(i+l1Chunk, len(src))
		d.Write(src[i:e])
		copy(dst[i:e], src[i:e])
	}
	return d.Sum64()
}

// pool runs batches on a fixed set of goroutines plus the caller's.
type pool struct {
	n    int // helpers (goroutines besides the caller)
	ch   chan *batch
	mu   sync.Mutex // one batch at a time uses the helpers
	stop chan struct{}
	done sync.WaitGroup
}

func newPool(workers int) *pool {
	p := &pool{n: workers - 1, ch: make(chan *batch), stop: make(chan struct{})}
	for i := 0; i < p.n; i++ {
		p.done.Add(1)
		go p.helper()
	}
	return p
}

func (p *pool) helper() {
	defer p.done.Done()
	debug.SetPanicOnFault(true)
	for {
		select {
		case b := <-p.ch:
			b.work()
			b.wg.Done()
		case <-p.stop:
			return
		}
	}
}

// run executes b, on the helpers too when it is large enough and they are free.
// The caller's goroutine must have SetPanicOnFault on (see guard).
func (p *pool) run(b *batch) {
	b.seal()
	if p != nil && p.n > 0 && b.bytes() >= parallelThreshold && p.mu.TryLock() {
		helpers := min(p.n, b.starts[len(b.starts)-1]-1)
		b.wg.Add(helpers)
		for i := 0; i < helpers; i++ {
			p.ch <- b
		}
		b.work()
		b.wg.Wait()
		p.mu.Unlock()
		return
	}
	b.work()
}

func (p *pool) close() {
	if p == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
}

// err returns the batch's fault, if any.
func (b *batch) err() error {
	if e, ok := b.fault.Load().(error); ok {
		return e
	}
	return nil
}

// runsPiece verifies (jobVerify) or copies (jobCopy) the runs of a job of blocks.
func (b *batch) runsPiece(j *job) {
	bs := int64(1) << j.shift
	for _, r := range j.runs {
		src := j.data[r.data : r.data+r.n]
		if b.kind == jobCopy {
			copy(j.dst[r.region:r.region+r.n], src)
			continue
		}
		for o, blk := int64(0), r.b0; o < r.n; o, blk = o+bs, blk+1 {
			if xxhash.Sum64(src[o:min(o+bs, r.n)]) != binary.LittleEndian.Uint64(j.table[8*blk:]) {
				b.bad.Store(true)
				return
			}
		}
	}
}

// addRuns adds the runs of a blocks plan to b in groups of about a piece's bytes, so
// that a version made of thousands of short runs is a few hundred jobs, not thousands.
// data is the mapping (or buffer) the runs point into; dst the region (jobCopy).
func (b *batch) addRuns(runs []blockRun, data, dst, table []byte, shift uint8) {
	for i := 0; i < len(runs); {
		j, n := i, int64(0)
		for j < len(runs) && (n == 0 || n+runs[j].n <= pieceBytes) {
			n += runs[j].n
			j++
		}
		b.add(job{runs: runs[i:j], data: data, dst: dst, table: table, shift: shift})
		i = j
	}
}
