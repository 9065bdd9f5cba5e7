package remote

import (
	"time"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// Config configures the remote tier of a File (engine.Options.Remote, where it is
// called engine.Remote). A nil Config means no remote tier.
type Config struct {
	// Store is where versions are copied. It is required.
	Store store.Store

	// Every uploads every n-th version of each checkpoint: version v is uploaded when
	// v is a multiple of Every. 0 or 1 uploads every version. Every rank of a job must
	// use the same rule, or their versions never line up (JobVersion).
	Every int

	// MaxPending bounds the bytes saved but not yet uploaded to the store: a Save or
	// SaveAll that would go past it waits until uploads catch up (back-pressure). A save
	// larger than MaxPending on its own waits until nothing is pending. A save that
	// waits longer than Timeout (the store is unreachable) returns ErrRemote and is not
	// made. 0 means DefaultMaxPending. The pending versions' slots stay in the local
	// data file until they are uploaded, so this also bounds the extra local disk the
	// tier takes.
	MaxPending int64

	// Keep is the number of committed versions kept in the store per checkpoint; older
	// ones are deleted once newer ones are committed, but never the job version (see
	// File.JobVersion) or anything newer. 0 means Options.KeepVersions (and so, when
	// that is 0, every version is kept).
	Keep int

	// Rank is this process's rank in a job of Ranks processes (0..Ranks-1). Rank 0 of
	// Ranks 0 (the zero values) is a job of one process.
	Rank, Ranks int

	// Timeout bounds how long Open waits for the store when it must ask it what is
	// committed (an unreachable store then fails Open with ErrRemote), how long a save
	// waits for room under MaxPending, how long a restore waits for a version from the
	// store, and how long Close waits for uploads to finish before it gives up on them.
	// 0 means DefaultTimeout.
	Timeout time.Duration

	// Launch, when not empty, names this launch of the job: the same string on every
	// rank started together (the job scheduler's job and restart ids, or random bytes
	// rank 0 broadcasts), and another one at the next restart. A rank then never joins a
	// life of another launch, even when a process of an older launch outlives the
	// restart. Empty relies on every process of the old launch being dead before the
	// new one starts (docs/REMOTE.md, "The job protocol").
	Launch string

	// Workers is the number of goroutines that upload in the background; 0 means 4. A
	// negative Workers uploads nothing in the background: Flush and Close upload what
	// was saved, on the caller's goroutine, and the tier starts no goroutine of its own.
	Workers int

	// Backoff is the first wait after a transient store error, doubling after each
	// further one up to 100 times it; 0 means 50 ms.
	Backoff time.Duration
}

// Defaults of the remote tier.
const (
	// DefaultMaxPending is Config.MaxPending's default: 1 GiB.
	DefaultMaxPending = 1 << 30
	// DefaultTimeout is Config.Timeout's default.
	DefaultTimeout = time.Minute
	// MaxRanks bounds Config.Ranks, and any count of ranks read from a store.
	MaxRanks = 1 << 20
	// MaxLaunch bounds the length of Config.Launch, in bytes.
	MaxLaunch = maxLaunch
)

// Settings is a Config checked and with its defaults applied (Resolve): what Open,
// Pull and the tools run on.
type Settings struct {
	st         store.Store
	every      uint64
	maxPending int64
	keep       int
	rank       int
	ranks      int
	timeout    time.Duration
	launch     string
	workers    int
	backoff    time.Duration
}

// Resolve checks c and applies its defaults; keepVersions is the local file's
// KeepVersions (Keep's default). A bad field is an error wrapping ErrInvalid.
func (c *Config) Resolve(keepVersions int) (Settings, error) {
	s := Settings{st: c.Store, every: 1, maxPending: c.MaxPending, keep: c.Keep,
		rank: c.Rank, ranks: c.Ranks, timeout: c.Timeout, launch: c.Launch, workers: c.Workers, backoff: c.Backoff}
	switch {
	case c.Store == nil:
		return s, base.Errf(base.ErrInvalid, "Remote.Store is nil")
	case c.Every < 0, c.MaxPending < 0, c.Keep < 0, c.Timeout < 0, keepVersions < 0:
		return s, base.Errf(base.ErrInvalid, "negative Remote.Every, MaxPending, Keep or Timeout")
	case c.Ranks < 0 || c.Rank < 0:
		return s, base.Errf(base.ErrInvalid, "negative Remote.Rank or Ranks")
	case c.Ranks == 0 && c.Rank != 0:
		return s, base.Errf(base.ErrInvalid, "Remote.Rank %d without Remote.Ranks", c.Rank)
	case c.Ranks > 0 && c.Rank >= c.Ranks:
		return s, base.Errf(base.ErrInvalid, "Remote.Rank %d is not below Remote.Ranks %d", c.Rank, c.Ranks)
	case c.Ranks > MaxRanks:
		return s, base.Errf(base.ErrInvalid, "Remote.Ranks %d is more than %d", c.Ranks, MaxRanks)
	case len(c.Launch) > maxLaunch:
		return s, base.Errf(base.ErrInvalid, "Remote.Launch of %d bytes (at most %d)", len(c.Launch), maxLaunch)
	case c.Backoff < 0:
		return s, base.Errf(base.ErrInvalid, "negative Remote.Backoff")
	}
	if c.Every > 1 {
		s.every = uint64(c.Every)
	}
	if s.maxPending == 0 {
		s.maxPending = DefaultMaxPending
	}
	if s.keep == 0 {
		s.keep = keepVersions
	}
	if s.ranks == 0 {
		s.ranks = 1
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	switch {
	case s.workers == 0:
		s.workers = uploadWorkers
	case s.workers < 0:
		s.workers = -1
	}
	if s.backoff == 0 {
		s.backoff = 50 * time.Millisecond
	}
	return s, nil
}

// Store returns the store.
func (s Settings) Store() store.Store { return s.st }

// Rank returns this process's rank.
func (s Settings) Rank() int { return s.rank }

// Ranks returns the number of ranks of the job (1 for a job of one).
func (s Settings) Ranks() int { return s.ranks }

// Timeout returns the bound on every wait for the store.
func (s Settings) Timeout() time.Duration { return s.timeout }

// Selected reports whether version v is uploaded under the Every rule.
func (s Settings) Selected(v uint64) bool { return s.every <= 1 || v%s.every == 0 }
