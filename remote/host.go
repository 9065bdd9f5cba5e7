package remote

import "context"

// Host is the local checkpoint file's side of the line, implemented by the engine over
// its File. The engine owns every slot of its data file: it pins the slot of each
// version it hands to the tier (and the slots of the versions a delta reads), and the
// tier gives each pin back once, with Unpin, when it no longer reads the bytes. The
// tier never allocates, frees or reuses a slot.
//
// Host methods may block on the File's locks: the tier never calls them from
// Published, which the engine calls with its lock held.
type Host interface {
	// Versions describes the kept versions of every checkpoint of the local file,
	// oldest first within each checkpoint. They are not pinned (Pin is 0).
	Versions() []Sealed
	// Pin pins version num of the checkpoint called name and describes it; the error
	// wraps ErrVersion when the file does not keep it.
	Pin(name string, num uint64) (Sealed, error)
	// Unpin gives back a pin of Pin or of Published's versions. A second Unpin of the
	// same pin does nothing.
	Unpin(pin uint64)
	// Blocks returns the block hashes of a pinned version (of its blocks of 1<<Shift
	// bytes, or of its 1 MiB blocks when it is stored whole: one entry, its hash, for a
	// version of at most 1 MiB) and where each block's bytes lie in the data file,
	// checked against the version's hash (ErrCorrupt when they do not match).
	Blocks(pin uint64) (table []uint64, src []int64, err error)
	// ReadAt copies bytes of the data file at off into p: bytes of pinned versions
	// only. A fault (a file truncated underneath) is an error wrapping ErrCorrupt; after
	// the File is closed, one wrapping ErrClosed.
	ReadAt(p []byte, off int64) (int, error)
	// Import adds the versions in as one transaction of the local file, keeping their
	// numbers, each fetched (Incoming.Fill) straight into a slot of the data file.
	Import(ctx context.Context, in []Incoming) error
	// Busy reports whether a large save or restore is running: it wants every core,
	// so uploads wait.
	Busy() bool
	// Session is the id of the File's writer session, which its trailers hold and the
	// manifests repeat.
	Session() uint64
}

// Sealed describes a version published in the local file.
type Sealed struct {
	Name    string
	Num     uint64 // version number
	Off     int64  // where the payload of a version stored whole starts in the data file
	Length  int64  // the version's bytes (the region's length)
	Payload int64  // bytes its slot holds: Length, or for a delta its changed blocks
	Hash    uint64 // the version hash (docs/FORMAT.md)
	Time    int64  // save time, Unix nanoseconds
	Txn     uint64 // its transaction in the local file
	TxnSize uint32 // versions the transaction wrote
	Shift   uint8  // stored by blocks of 1<<Shift bytes (differential); 0: stored whole
	Pin     uint64 // the engine's pin (Host.Unpin), 0 when not pinned
}

// Incoming is a version fetched from the store into the local file (Host.Import, and a
// restore that falls back to the store).
type Incoming struct {
	Name   string
	Num    uint64
	Length int64
	Hash   uint64
	Time   int64
	// Shift, when not 0, says the version is stored by blocks of 1<<Shift bytes: it
	// comes in as a full version stored by blocks, on which later deltas may build.
	Shift uint8
	// Table is the block table (8 bytes little-endian per block): of the 1 MiB blocks
	// of a version stored whole (nil for one of at most 1 MiB), or of its blocks.
	Table []byte
	// Fill puts the version's Length bytes into dst and checks them against the
	// hashes: read straight into dst when write is nil, else handed to write (bytes p
	// at offset off of the version), each block checked before, which must make them
	// visible in dst (a pwrite to the file that dst maps). dst may be a mapping:
	// faults become ErrCorrupt.
	Fill func(ctx context.Context, dst []byte, write func(p []byte, off int64) error) error
}
