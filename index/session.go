package index

import "encoding/binary"

// Session is what a KindSession record says: a writer opened the file. It is encoded in
// a Record's fields as follows (docs/FORMAT.md): Ckpt = process id, Version = next
// transaction number, Offset and Length = the 16-byte boot id of the running kernel,
// Hash = the sync policy's code, Time = when, Txn = KeepVersions, Slack = Flags.
type Session struct {
	PID     uint32
	NextTxn uint64
	BootID  [16]byte
	Policy  uint64
	Time    int64
	Keep    uint64
	Flags   uint32 // SessionDifferential, SessionTracking, SessionMissed, block shift << 8, misses << 16
}

// Session flags.
const (
	// SessionDifferential: the writer saves large regions by blocks (differential).
	SessionDifferential = 1 << 0
	// SessionTracking: the kernel's written-page tracking was available to it.
	SessionTracking = 1 << 1
	// SessionMissed: the kernel's tracking missed writes of the writer's regions (they
	// were found by hashing, and those regions hashed from then on); bits 16..31 of the
	// flags count them, up to SessionMissesMax.
	SessionMissed = 1 << 2
	// SessionMissesMax is the most misses the flags count.
	SessionMissesMax = 1<<16 - 1
)

// Record returns the session as a record.
func (s Session) Record() Record {
	return Record{
		Kind:    KindSession,
		Ckpt:    s.PID,
		Version: s.NextTxn,
		Offset:  binary.LittleEndian.Uint64(s.BootID[0:8]),
		Length:  binary.LittleEndian.Uint64(s.BootID[8:16]),
		Hash:    s.Policy,
		Time:    s.Time,
		Txn:     s.Keep,
		Slack:   s.Flags,
	}
}

// SessionOf decodes a KindSession record.
func SessionOf(r *Record) Session {
	var s Session
	s.PID = r.Ckpt
	s.NextTxn = r.Version
	binary.LittleEndian.PutUint64(s.BootID[0:8], r.Offset)
	binary.LittleEndian.PutUint64(s.BootID[8:16], r.Length)
	s.Policy = r.Hash
	s.Time = r.Time
	s.Keep = r.Txn
	s.Flags = r.Slack
	return s
}
