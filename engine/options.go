package engine

import (
	"os"
	"runtime"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/internal/detect"
	"github.com/ckp-go/ckp/remote"
)

// Options configure Open. A nil *Options, and every field left at its zero value, mean
// the defaults documented on each field.
type Options struct {
	// Sync is the durability policy. The zero value is SyncNone: every completed save
	// survives the death of the process, but not a crash of the operating system or a
	// power loss unless File.Sync or Close ran after it. See docs/DURABILITY.md.
	Sync SyncPolicy

	// KeepVersions bounds the versions kept per checkpoint: after each save only the
	// newest KeepVersions versions of that checkpoint stay, and the space of the others
	// is reused. 0 keeps every version. Negative values are invalid.
	KeepVersions int

	// ReadOnly opens an existing file without writing to it and without taking the
	// writer's lock: it may run while a writer is active and sees the versions that were
	// complete when it opened. Saves return ErrReadOnly.
	ReadOnly bool

	// Perm is the mode of newly created files; 0 means 0600 (the files hold process
	// memory).
	Perm os.FileMode

	// MaxSize is the largest the data file may grow to, in bytes; 0 means 1 TiB. It is a
	// limit, not a reservation: the File reserves virtual address space (not memory) as
	// the data file grows, about twice what it holds (at least 1 GiB; 64 MiB more for
	// the index), so thousands of Files fit in one process whatever their MaxSize.
	MaxSize int64

	// ChunkSize is the step in which the data file grows; 0 means 8 MiB.
	ChunkSize int64

	// Workers is the number of goroutines that copy and hash one large save or restore
	// together, the caller's included. 0 means GOMAXPROCS; 1 does all work on the
	// caller's goroutine.
	Workers int

	// NoPrefault turns off the background goroutine that allocates and pre-faults the
	// space the next saves will write, while the program computes.
	NoPrefault bool

	// NoHugePages turns off the request for 2 MiB page-cache folios on the data mapping.
	NoHugePages bool

	// Differential makes a save of a large region (16 blocks or more) write only the
	// blocks that changed since the region's previous version, plus a block map; a full
	// version is written now and then so that a restore never reads an unbounded chain.
	// Which blocks changed is found by hashing every block, or by the kernel's
	// written-page tracking (Linux 6.7+, userfaultfd allowed) where the engine measures
	// it to cost less; a save whose process has memory pinned for devices (which the
	// kernel writes without telling) hashes every block, and ScrubSaves checks the
	// tracking. FileInfo.Detection says which way each region goes, and why. See
	// docs/FORMAT.md ("Differential saves") for the rules.
	Differential bool

	// BlockSize is the unit of differential saves, a power of two from 4 KiB to 2 MiB;
	// 0 means 4 KiB (a page: what the kernel tracks, so sparse writes cost the least).
	BlockSize int

	// NoTracking makes differential saves find changed blocks by hashing every block,
	// never by the kernel's written-page tracking.
	NoTracking bool

	// ScrubSaves bounds the tracked saves of a region after which each of its blocks has
	// been checked by hashing: every tracked save also hashes 1/ScrubSaves of the
	// region's blocks and compares those the kernel did not report as written with the
	// previous version, to catch writes the kernel cannot see (through memory pinned for
	// a device). 0 means 256; a negative value turns the check off.
	ScrubSaves int

	// Remote, when not nil, copies saved versions to a store (an S3 bucket, a shared
	// directory) in the background, so that a job can restart on other nodes: see
	// Remote, File.Flush, File.JobVersion and docs/REMOTE.md. Not with ReadOnly.
	Remote *Remote

	// remote is Remote checked, with its defaults (set by withDefaults).
	remote *remote.Settings
	// bootID, when set, replaces the kernel's boot id (tests simulate a reboot with it).
	bootID *[16]byte
	// syncWhole makes durable points fdatasync whole files instead of msync'ing the
	// written ranges (BenchmarkDurablePoint compares the two).
	syncWhole bool
	// chainLimit, when set, replaces maxChain (tests reach it sooner).
	chainLimit int
	// firstReserve, when set, replaces the virtual range each of the two files reserves
	// when it opens (tests cross into a larger one sooner).
	firstReserve int64
	// trackAlways tracks every differential region the kernel can track, whatever the
	// cost model says (tests of the tracking path).
	trackAlways bool
	// costs, when set, replaces what the cost model measures (tests of its decisions,
	// which measurements on a loaded machine make unpredictable).
	costs *detect.Costs
}

const (
	defaultMaxSize    = 1 << 40
	defaultChunk      = 8 << 20
	indexMaxSize      = 64 << 30
	indexFirstReserve = 64 << 20 // a million records: compaction keeps most indexes below
	indexChunk        = 1 << 20
	defaultPerm       = 0o600
	maxWorkers        = 64
	heldMin           = 1 << 20 // held-back slots below this never force a durable point
)

// scrubSaves is ScrubSaves with its default: 0 for no scrub.
func (o *Options) scrubSaves() int {
	switch {
	case o.ScrubSaves < 0:
		return 0
	case o.ScrubSaves == 0:
		return defaultScrubSaves
	}
	return o.ScrubSaves
}

// withDefaults returns a copy of o with the zero values replaced, or an error.
func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	if r.KeepVersions < 0 {
		return r, errf(ErrInvalid, "KeepVersions %d is negative", r.KeepVersions)
	}
	if err := r.Sync.validate(); err != nil {
		return r, err
	}
	if r.Perm == 0 {
		r.Perm = defaultPerm
	}
	if r.MaxSize < 0 || r.ChunkSize < 0 || r.Workers < 0 {
		return r, errf(ErrInvalid, "negative MaxSize, ChunkSize or Workers")
	}
	if r.MaxSize == 0 {
		r.MaxSize = defaultMaxSize
	}
	if r.ChunkSize == 0 {
		r.ChunkSize = defaultChunk
	}
	if r.BlockSize != 0 {
		if r.BlockSize < 1<<base.MinBlockShift || r.BlockSize > 1<<base.MaxBlockShift || r.BlockSize&(r.BlockSize-1) != 0 {
			return r, errf(ErrInvalid, "BlockSize %d: a power of two from %d to %d", r.BlockSize, 1<<base.MinBlockShift, 1<<base.MaxBlockShift)
		}
	}
	if r.Workers == 0 {
		r.Workers = runtime.GOMAXPROCS(0)
	}
	r.Workers = min(r.Workers, maxWorkers)
	if r.Remote != nil { // remote tier (package remote)
		if r.ReadOnly {
			return r, errf(ErrInvalid, "Remote with ReadOnly")
		}
		rs, err := r.Remote.Resolve(r.KeepVersions)
		if err != nil {
			return r, err
		}
		r.remote = &rs
	}
	return r, nil
}
