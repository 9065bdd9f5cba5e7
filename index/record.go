package index

import (
	"encoding/binary"

	"github.com/ckp-go/ckp/crc"
)

// Kind says what a record describes.
type Kind uint8

// Record kinds. Zero is never a valid kind: zeroed space ends a scan.
const (
	// KindVersion: one saved version of a checkpoint (Ckpt, Version, Offset, Length,
	// Hash, Time, Txn, Slack).
	KindVersion Kind = 1
	// KindName: binds checkpoint id Ckpt to a name of Aux bytes; the name's first 52
	// bytes are in the record, the rest in the KindNameMore records that follow it.
	KindName Kind = 2
	// KindNameMore: the next 52 bytes of the preceding name.
	KindNameMore Kind = 3
	// KindDrop: versions of checkpoint Ckpt below Version are dropped (retention).
	KindDrop Kind = 4
	// KindSession: a writer opened the file (see Session).
	KindSession Kind = 5
	// KindMark: a durable point with no version in it (File.Sync, Close, SyncInterval).
	KindMark Kind = 6
	// KindBlocks: the block layout of the KindVersion record just before it, which has
	// FlagBlocks: Offset is the payload bytes in the slot, Length the number of blocks
	// stored, Hash the base version (0: the slot holds every block), Aux the log2 of the
	// block size. Ckpt, Version and Txn repeat the version record's.
	KindBlocks Kind = 7
)

// Record flags.
const (
	// FlagCommit ends a transaction: it and the records before it since the previous
	// commit take effect together, or not at all.
	FlagCommit uint8 = 1 << 0
	// FlagDurable, on a transaction's commit record, says the data of every earlier
	// transaction had been made durable before this record was written; on a KindMark
	// record, that the data of the first Version records had. Recovery after a power
	// loss trusts the data below the newest such claim and checks the data above it.
	FlagDurable uint8 = 1 << 1
	// FlagBlocks, on a KindVersion record, says the version is stored by blocks (a
	// differential checkpoint): its slot has a block trailer, and a KindBlocks record
	// follows it.
	FlagBlocks uint8 = 1 << 2
)

// Record is one decoded index record. Which fields are meaningful depends on Kind; see
// docs/FORMAT.md. For name records, Name holds this record's part of the name.
type Record struct {
	Kind    Kind
	Flags   uint8
	Aux     uint16 // KindName: total name length
	Ckpt    uint32 // checkpoint id
	Version uint64
	Offset  uint64 // payload offset in the data file
	Length  uint64 // payload length
	Hash    uint64 // payload hash (see package crc)
	Time    int64  // unix nanoseconds
	Txn     uint64 // transaction number
	Slack   uint32 // slot bytes beyond the version's own footprint
	Name    []byte // KindName / KindNameMore: up to 52 bytes of the name
}

// Encode writes r into b[:RecordSize] chained after prev and returns the record's CRC.
func Encode(b []byte, r *Record, prev uint32) uint32 {
	_ = b[RecordSize-1]
	b[0] = byte(r.Kind)
	b[1] = r.Flags
	binary.LittleEndian.PutUint16(b[2:], r.Aux)
	binary.LittleEndian.PutUint32(b[4:], r.Ckpt)
	switch r.Kind {
	case KindName, KindNameMore:
		n := copy(b[8:60], r.Name)
		clear(b[8+n : 60])
	default:
		binary.LittleEndian.PutUint64(b[8:], r.Version)
		binary.LittleEndian.PutUint64(b[16:], r.Offset)
		binary.LittleEndian.PutUint64(b[24:], r.Length)
		binary.LittleEndian.PutUint64(b[32:], r.Hash)
		binary.LittleEndian.PutUint64(b[40:], uint64(r.Time))
		binary.LittleEndian.PutUint64(b[48:], r.Txn)
		binary.LittleEndian.PutUint32(b[56:], r.Slack)
	}
	c := crc.CRC32C(prev, b[:60])
	binary.LittleEndian.PutUint32(b[60:], c)
	return c
}

// Decode reads the record in b[:RecordSize] chained after prev. It reports ok=false when
// the record does not verify (torn, stale, zeroed or of an unknown kind). For name
// records, r.Name aliases b.
func Decode(b []byte, prev uint32, r *Record) (c uint32, ok bool) {
	c, ok = verify(b, prev)
	if !ok {
		return 0, false
	}
	decodeFields(b, r)
	return c, true
}

// verify checks the record in b[:RecordSize] chained after prev and returns its CRC.
func verify(b []byte, prev uint32) (c uint32, ok bool) {
	if len(b) < RecordSize {
		return 0, false
	}
	c = crc.CRC32C(prev, b[:60])
	if c != binary.LittleEndian.Uint32(b[60:]) {
		return 0, false
	}
	if k := Kind(b[0]); k < KindVersion || k > KindBlocks {
		return 0, false
	}
	return c, true
}

// decodeFields decodes a record that verified.
func decodeFields(b []byte, r *Record) {
	k := Kind(b[0])
	*r = Record{
		Kind:  k,
		Flags: b[1],
		Aux:   binary.LittleEndian.Uint16(b[2:]),
		Ckpt:  binary.LittleEndian.Uint32(b[4:]),
	}
	if k == KindName || k == KindNameMore {
		r.Name = b[8:60]
		return
	}
	r.Version = binary.LittleEndian.Uint64(b[8:])
	r.Offset = binary.LittleEndian.Uint64(b[16:])
	r.Length = binary.LittleEndian.Uint64(b[24:])
	r.Hash = binary.LittleEndian.Uint64(b[32:])
	r.Time = int64(binary.LittleEndian.Uint64(b[40:]))
	r.Txn = binary.LittleEndian.Uint64(b[48:])
	r.Slack = binary.LittleEndian.Uint32(b[56:])
}

// NameRecords returns the records that bind id to name: one KindName record and as many
// KindNameMore records as the name needs. The name must be 1..MaxNameLen bytes.
func NameRecords(id uint32, name string) []Record {
	n := len(name)
	recs := make([]Record, 0, NameRecordCount(n))
	first := min(n, nameBytes)
	recs = append(recs, Record{Kind: KindName, Aux: uint16(n), Ckpt: id, Name: []byte(name[:first])})
	for off := first; off < n; off += nameBytes {
		end := min(off+nameBytes, n)
		recs = append(recs, Record{Kind: KindNameMore, Ckpt: id, Name: []byte(name[off:end])})
	}
	return recs
}

// NameRecordCount returns how many records a name of n bytes takes.
func NameRecordCount(n int) int {
	if n <= nameBytes {
		return 1
	}
	return 1 + (n-nameBytes+nameBytes-1)/nameBytes
}
