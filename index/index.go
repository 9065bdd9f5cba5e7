// Package index encodes, decodes and scans the records of a ckp index file.
//
// An index file is a 64-byte header followed by 64-byte records:
//
//	+--------+--------+--------+-----+
//	| header | rec 0  | rec 1  | ... |   each 64 bytes
//	+--------+--------+--------+-----+
//
// Every record ends with a CRC-32C that covers its first 60 bytes and continues from the
// previous record's CRC (the header's CRC for the first record), so a record is only
// valid in its place: a stale record left behind a rewritten tail does not verify.
// Records are grouped into transactions: a transaction is a run of records whose last
// one has FlagCommit. Scan hands back only committed transactions; what follows the last
// commit, or the first record that does not verify, is the torn tail and is ignored.
//
// See docs/FORMAT.md for every field. The package knows nothing of mappings or files.
package index

import (
	"encoding/binary"
	"errors"

	"github.com/ckp-go/ckp/crc"
)

// Sizes and identifiers of the format.
const (
	HeaderSize    = 64
	RecordSize    = 64
	FormatVersion = 1
	// MaxNameLen is the longest checkpoint name, in bytes.
	MaxNameLen = 255
	// nameBytes is how many name bytes one name record carries.
	nameBytes = 52
)

// Magic opens every index file.
var Magic = [8]byte{'C', 'K', 'P', 'I', 'N', 'D', 'E', 'X'}

// Errors returned by decoders.
var (
	ErrMagic   = errors.New("index: not a ckp index file (bad magic)")
	ErrVersion = errors.New("index: unknown format version")
	ErrHeader  = errors.New("index: header checksum mismatch")
	ErrShort   = errors.New("index: short buffer")
)

// Header is the first 64 bytes of an index file.
type Header struct {
	FileID     [16]byte // equal to the data file's: binds the index to its data file
	Generation uint64   // how many times the index was rewritten (compacted)
	Created    int64    // unix nanoseconds when this index file was written
}

// EncodeHeader writes h into b[:HeaderSize] and returns the header's CRC (the seed of
// the record chain).
func EncodeHeader(b []byte, h Header) uint32 {
	_ = b[HeaderSize-1]
	clear(b[:HeaderSize])
	copy(b[0:8], Magic[:])
	binary.LittleEndian.PutUint32(b[8:], FormatVersion)
	binary.LittleEndian.PutUint32(b[12:], RecordSize)
	copy(b[16:32], h.FileID[:])
	binary.LittleEndian.PutUint64(b[32:], h.Generation)
	binary.LittleEndian.PutUint64(b[40:], uint64(h.Created))
	c := crc.CRC32C(0, b[:60])
	binary.LittleEndian.PutUint32(b[60:], c)
	return c
}

// DecodeHeader reads a header and returns it with its CRC (the chain seed).
func DecodeHeader(b []byte) (Header, uint32, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, 0, ErrShort
	}
	if [8]byte(b[0:8]) != Magic {
		return h, 0, ErrMagic
	}
	c := crc.CRC32C(0, b[:60])
	if c != binary.LittleEndian.Uint32(b[60:]) {
		return h, 0, ErrHeader
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion || binary.LittleEndian.Uint32(b[12:]) != RecordSize {
		return h, 0, ErrVersion
	}
	copy(h.FileID[:], b[16:32])
	h.Generation = binary.LittleEndian.Uint64(b[32:])
	h.Created = int64(binary.LittleEndian.Uint64(b[40:]))
	return h, c, nil
}
