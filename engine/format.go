package engine

import (
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/internal/slot"
)

// The data file's bytes (a header page, then slots, each a payload and its trailer) are
// encoded and decoded by package internal/slot; docs/FORMAT.md describes every byte.
const (
	// FormatVersion is the newest version of the on-disk format this build reads and
	// writes. Version 2 added versions stored by blocks (differential saves): a file is
	// version 2 when it may hold them (created or opened with Options.Differential),
	// version 1 otherwise, so that older builds still read it. This build reads both.
	FormatVersion = slot.FormatVersion
	// MaxNameLen is the longest checkpoint name in bytes.
	MaxNameLen = base.MaxNameLen
)

func pad8(n int64) int64 { return base.Pad8(n) }

// blockCount is the number of blocks of a region of n bytes.
func blockCount(n int64, shift uint8) int64 { return base.BlockCount(n, shift) }
