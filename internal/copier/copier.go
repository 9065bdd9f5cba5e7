// Package copier is ckp's copy engine: a save copies each region into the data mapping
// and hashes it in the same pass (each 16 KiB piece of the source is hashed, then
// copied while it is still in L1); a restore verifies the mapping's bytes against their
// hashes, then copies them out. Large batches are cut into pieces of two hash blocks
// (2 MiB, one huge page) that the caller and the pool's goroutines claim in turn, so
// both cores fault, copy and hash. A memory fault during a piece (a file truncated
// under its mapping) becomes the batch's error.
package copier

import (
	"encoding/binary"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
)

// Threshold: batches of at least this many bytes use the pool's helpers.
const Threshold = 4 << 20

// l1Chunk is the piece of a source hashed then copied while in L1.
const l1Chunk = 16 << 10

// PieceBytes is the size of the pieces a batch is cut into: two hash blocks.
const PieceBytes = 2 * crc.BlockSize

// Kind is what a batch does with its jobs.
type Kind uint8

// The kinds of batch.
const (
	Save   Kind = iota // copy src→dst and hash src into table / hash
	Verify             // hash src and compare with table / hash
	Copy               // copy src→dst
	Hash               // hash src into table
)

// Job is one region's part of a Batch.
type Job struct {
	Src, Dst []byte  // the bytes read, and where they go (Save, Copy)
	Table    []byte  // multi-block payloads: the block-hash table in the trailer
	Hash     *uint64 // single-block payloads: where the hash goes (save) or is (verify)
	Shift    uint8   // log2 of the hash block size; 0 means crc.BlockShift (1 MiB)

	// A group of runs of a version stored by blocks (restore): each run's blocks are
	// in data at r.Data and go to dst at r.Region; table holds every block's hash. Such
	// a Job is one piece.
	Runs []Run
	Data []byte
}

// Batch is a set of jobs of one kind, cut into pieces claimed by atomic counter.
type Batch struct {
	kind   Kind
	jobs   []Job
	starts []int // starts[i] is the first piece of jobs[i]; starts[len(jobs)] the total
	next   atomic.Int64
	bad    atomic.Bool  // a verify mismatch
	fault  atomic.Value // first recovered fault (error)
	wg     sync.WaitGroup
}

// Reset empties b for a batch of the kind given.
func (b *Batch) Reset(kind Kind) {
	b.kind = kind
	b.jobs = b.jobs[:0]
	b.starts = b.starts[:0]
	b.next.Store(0)
	b.bad.Store(false)
	b.fault = atomic.Value{}
}

// Len returns the jobs added.
func (b *Batch) Len() int { return len(b.jobs) }

// Add adds a job.
func (b *Batch) Add(j Job) { b.jobs = append(b.jobs, j) }

// seal computes the piece table; call after the last add.
func (b *Batch) seal() {
	b.starts = b.starts[:0]
	total := 0
	for _, j := range b.jobs {
		b.starts = append(b.starts, total)
		total += (len(j.Src) + PieceBytes - 1) / PieceBytes
		if len(j.Src) == 0 {
			total++
		}
	}
	b.starts = append(b.starts, total)
}

func (b *Batch) bytes() int {
	n := 0
	for _, j := range b.jobs {
		n += len(j.Src)
		for _, r := range j.Runs {
			n += int(r.N)
		}
	}
	return n
}

// work claims and runs pieces until none is left. A memory fault (a file truncated
// underneath the mapping, an I/O error on a mapped page) is recovered and recorded.
func (b *Batch) work() {
	defer func() {
		if r := recover(); r != nil {
			b.fault.CompareAndSwap(nil, base.FaultError(r))
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

// piece runs piece k of Job j: up to two hash blocks.
func (b *Batch) piece(j *Job, k int) {
	if j.Runs != nil {
		b.runsPiece(j)
		return
	}
	lo := k * PieceBytes
	hi := min(lo+PieceBytes, len(j.Src))
	if b.kind == Copy {
		copy(j.Dst[lo:hi], j.Src[lo:hi])
		return
	}
	shift := j.Shift
	if shift == 0 {
		shift = crc.BlockShift
	}
	bs := 1 << shift
	for blk := lo; blk < hi || blk == lo; blk += bs {
		end := min(blk+bs, hi)
		var h uint64
		if b.kind == Save {
			h = CopyHash(j.Dst[blk:end], j.Src[blk:end])
		} else {
			h = xxhash.Sum64(j.Src[blk:end])
		}
		if j.Table == nil {
			if b.kind == Verify {
				if h != *j.Hash {
					b.bad.Store(true)
				}
			} else {
				*j.Hash = h
			}
		} else {
			e := j.Table[8*(blk>>shift):]
			if b.kind == Verify {
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

// CopyHash copies src to dst and returns the xxhash64 of src, hashing each L1-sized
// piece just before copying it so the copy reads it from cache.
func CopyHash(dst, src []byte) uint64 {
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

// Pool runs batches on a fixed set of goroutines plus the caller's.
type Pool struct {
	n    int // helpers (goroutines besides the caller)
	ch   chan *Batch
	mu   sync.Mutex // one Batch at a time uses the helpers
	stop chan struct{}
	done sync.WaitGroup
}

// NewPool starts a pool of workers-1 goroutines (the caller of Run is the last).
func NewPool(workers int) *Pool {
	p := &Pool{n: workers - 1, ch: make(chan *Batch), stop: make(chan struct{})}
	for i := 0; i < p.n; i++ {
		p.done.Add(1)
		go p.helper()
	}
	return p
}

func (p *Pool) helper() {
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

// Run executes b, on the helpers too when it is large enough and they are free.
// The caller's goroutine must have SetPanicOnFault on (see guard).
func (p *Pool) Run(b *Batch) {
	b.seal()
	if p != nil && p.n > 0 && b.bytes() >= Threshold && p.mu.TryLock() {
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

// Close stops the pool's goroutines; a nil pool is closed.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
}

// Mismatch reports whether a Verify batch found bytes that do not match their hash.
func (b *Batch) Mismatch() bool { return b.bad.Load() }

// Helpers returns the pool's goroutines besides the caller's (0 for a nil pool).
func (p *Pool) Helpers() int {
	if p == nil {
		return 0
	}
	return p.n
}

// Err returns the Batch's fault, if any.
func (b *Batch) Err() error {
	if e, ok := b.fault.Load().(error); ok {
		return e
	}
	return nil
}

// runsPiece verifies (Verify) or copies (Copy) the runs of a Job of blocks.
func (b *Batch) runsPiece(j *Job) {
	bs := int64(1) << j.Shift
	for _, r := range j.Runs {
		src := j.Data[r.Data : r.Data+r.N]
		if b.kind == Copy {
			copy(j.Dst[r.Region:r.Region+r.N], src)
			continue
		}
		for o, blk := int64(0), r.B0; o < r.N; o, blk = o+bs, blk+1 {
			if xxhash.Sum64(src[o:min(o+bs, r.N)]) != binary.LittleEndian.Uint64(j.Table[8*blk:]) {
				b.bad.Store(true)
				return
			}
		}
	}
}

// AddRuns adds the runs of a blocks plan to b in groups of about a piece's bytes, so
// that a version made of thousands of short runs is a few hundred jobs, not thousands.
// data is the mapping (or buffer) the runs point into; dst the region (Copy).
func (b *Batch) AddRuns(runs []Run, data, dst, table []byte, shift uint8) {
	for i := 0; i < len(runs); {
		j, n := i, int64(0)
		for j < len(runs) && (n == 0 || n+runs[j].N <= PieceBytes) {
			n += runs[j].N
			j++
		}
		b.Add(Job{Runs: runs[i:j], Data: data, Dst: dst, Table: table, Shift: shift})
		i = j
	}
}

// Run is a run of blocks of a version whose bytes are consecutive in the data
// file.
type Run struct {
	Data, Region int64 // where the run starts in the data file and in the region
	N            int64 // bytes
	B0, B1       int64 // blocks [B0, B1)
}

// Runs coalesces the per-block sources of a version into runs.
func Runs(src []int64, shift uint8, n int64) []Run {
	var runs []Run
	for b := int64(0); b < int64(len(src)); b++ {
		l := base.BlockLen(b, shift, n)
		if k := len(runs) - 1; k >= 0 && runs[k].B1 == b && runs[k].Data+runs[k].N == src[b] {
			runs[k].N += l
			runs[k].B1++
			continue
		}
		runs = append(runs, Run{Data: src[b], Region: b << shift, N: l, B0: b, B1: b + 1})
	}
	return runs
}
