package engine

import (
	"fmt"
	"time"
)

// SyncPolicy says when saved versions are made durable (written to stable storage so
// that they survive a crash of the operating system or a power loss). Every policy
// keeps every completed save across the death of the process: saves land in the page
// cache through a shared mapping. docs/DURABILITY.md has the table of what each policy
// survives and what it costs.
type SyncPolicy struct {
	kind syncKind
	n    int
	d    time.Duration
}

type syncKind uint8

const (
	syncNone syncKind = iota
	syncAsync
	syncAlways
	syncEvery
	syncInterval
)

var (
	// SyncNone never flushes on its own (File.Sync and Close still do). The zero value.
	SyncNone = SyncPolicy{kind: syncNone}
	// SyncAsync starts the write-back of each save's bytes to the device without waiting
	// for it (sync_file_range): it shortens the window in which an OS crash loses data,
	// but promises nothing more than SyncNone.
	SyncAsync = SyncPolicy{kind: syncAsync}
	// SyncAlways makes every Save and SaveAll durable before it returns. A SaveAll is one
	// durable point for all its regions.
	SyncAlways = SyncPolicy{kind: syncAlways}
)

// SyncEvery returns the policy under which every n-th save (Save or SaveAll, counted
// per File) is a durable point that covers it and every save before it. n must be at
// least 1; SyncEvery(1) is SyncAlways.
func SyncEvery(n int) SyncPolicy {
	if n == 1 {
		return SyncAlways
	}
	return SyncPolicy{kind: syncEvery, n: n}
}

// SyncInterval returns the policy under which a background goroutine makes every
// completed save durable at least every d. Saves never wait for it; Close stops it.
// d must be positive.
func SyncInterval(d time.Duration) SyncPolicy { return SyncPolicy{kind: syncInterval, d: d} }

func (p SyncPolicy) validate() error {
	switch p.kind {
	case syncEvery:
		if p.n < 1 {
			return errf(ErrInvalid, "SyncEvery(%d): n must be at least 1", p.n)
		}
	case syncInterval:
		if p.d <= 0 {
			return errf(ErrInvalid, "SyncInterval(%v): the interval must be positive", p.d)
		}
	}
	return nil
}

// String returns the policy as ckpbench and the ckp command print it: none, async,
// always, every(N), interval(D).
func (p SyncPolicy) String() string {
	switch p.kind {
	case syncAsync:
		return "async"
	case syncAlways:
		return "always"
	case syncEvery:
		return fmt.Sprintf("every(%d)", p.n)
	case syncInterval:
		return fmt.Sprintf("interval(%v)", p.d)
	default:
		return "none"
	}
}

// code packs the policy into the 64-bit field of a session record: kind in the low 8
// bits, the parameter (n, or d in microseconds) above.
func (p SyncPolicy) code() uint64 {
	switch p.kind {
	case syncEvery:
		return uint64(p.kind) | uint64(p.n)<<8
	case syncInterval:
		return uint64(p.kind) | uint64(p.d/time.Microsecond)<<8
	}
	return uint64(p.kind)
}

// policyFromCode is the inverse of code, for tools that show the last writer's policy.
func policyFromCode(c uint64) SyncPolicy {
	k := syncKind(c & 0xff)
	switch k {
	case syncEvery:
		return SyncPolicy{kind: k, n: int(c >> 8)}
	case syncInterval:
		return SyncPolicy{kind: k, d: time.Duration(c>>8) * time.Microsecond}
	case syncNone, syncAsync, syncAlways:
		return SyncPolicy{kind: k}
	}
	return SyncPolicy{kind: syncNone}
}
