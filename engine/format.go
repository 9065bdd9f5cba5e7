package engine

import (
	"encoding/binary"

	"github.com/ckp-go/ckp/crc"
)

// The data file: a 4 KiB header page, then slots. docs/FORMAT.md describes every byte.
const (
	// FormatVersion is the version of the on-disk format (both files).
	FormatVersion  = 1
	dataHeaderSize = 4096
	dataHeaderLen  = 64
	trailerFixed   = 64
	// MaxNameLen is the longest checkpoint name in bytes.
	MaxNameLen = 255
	// hugeAlign is the payload alignment of regions of 2 MiB and more: one huge page.
	hugeAlign = 2 << 20
)

var (
	dataMagic    = [8]byte{'C', 'K', 'P', 'D', 'A', 'T', 'A', 0}
	trailerMagic = [8]byte{'C', 'K', 'P', 'T', 'R', 'A', 'I', 'L'}
)

// dataHeader is the first 64 bytes of the data file.
type dataHeader struct {
	FileID  [16]byte
	Created int64
}

func encodeDataHeader(b []byte, h dataHeader) {
	_ = b[dataHeaderLen-1]
	clear(b[:dataHeaderLen])
	copy(b[0:8], dataMagic[:])
	binary.LittleEndian.PutUint32(b[8:], FormatVersion)
	binary.LittleEndian.PutUint32(b[12:], dataHeaderSize)
	copy(b[16:32], h.FileID[:])
	binary.LittleEndian.PutUint64(b[32:], uint64(h.Created))
	binary.LittleEndian.PutUint32(b[60:], crc.CRC32C(0, b[:60]))
}

// decodeDataHeader returns the header or an error that says what is wrong.
func decodeDataHeader(b []byte) (dataHeader, error) {
	var h dataHeader
	if len(b) < dataHeaderLen {
		return h, errf(ErrCorrupt, "data file too short for a header (%d bytes)", len(b))
	}
	if [8]byte(b[0:8]) != dataMagic {
		return h, errf(ErrCorrupt, "not a ckp data file (bad magic)")
	}
	if crc.CRC32C(0, b[:60]) != binary.LittleEndian.Uint32(b[60:]) {
		return h, errf(ErrCorrupt, "data file header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return h, errf(ErrCorrupt, "unknown data format version %d (this build reads %d)", v, FormatVersion)
	}
	if binary.LittleEndian.Uint32(b[12:]) != dataHeaderSize {
		return h, errf(ErrCorrupt, "unexpected data header size")
	}
	copy(h.FileID[:], b[16:32])
	h.Created = int64(binary.LittleEndian.Uint64(b[32:]))
	return h, nil
}

// A slot holds one version: the payload, padded to 8 bytes, then the trailer:
//
//	payload | pad to 8 | fixed trailer (64 B) | block-hash table | name, padded to 8
//
// The fixed trailer starts with trailerMagic so that the data file alone can be scanned
// for versions (ckp repair).

// trailer is the decoded fixed part of a slot trailer plus the name.
type trailer struct {
	Hash     uint64
	Length   uint64
	Version  uint64
	Txn      uint64
	Time     int64
	TxnCount uint32
	Session  uint64 // the writer session's random id (48 bits; 0 in files written before it)
	Name     []byte // aliases the mapping
	Table    []byte // aliases the mapping; empty for single-block payloads
}

func pad8(n int64) int64 { return (n + 7) &^ 7 }

// trailerLen is the size of a trailer for a payload of n bytes and a name of l bytes.
func trailerLen(n int64, l int) int64 {
	return trailerFixed + int64(crc.TableSize(n)) + pad8(int64(l))
}

// footprint is the bytes a version of n bytes with a name of l bytes takes from its
// payload's start: the payload, its padding and the trailer.
func footprint(n int64, l int) int64 { return pad8(n) + trailerLen(n, l) }

// payloadAlign is the alignment of a payload of n bytes: a huge page for large regions
// (so a save maps 2 MiB folios with one fault each), a page for medium ones, a cache
// line for small ones.
func payloadAlign(n int64) int64 {
	switch {
	case n >= hugeAlign:
		return hugeAlign
	case n >= 16<<10:
		return 4096
	default:
		return 64
	}
}

// trailerSeed is the CRC seed of trailers in the data file with this id: a trailer copied
// from another ckp file does not verify here.
func trailerSeed(fileID [16]byte) uint32 { return crc.CRC32C(0, fileID[:]) }

// writeTrailer writes the trailer of a version into b, which starts at the trailer
// (payload offset + pad8(length)) and is trailerLen long. The table must already be in
// place (the copy writes it); the fixed part is written last.
func writeTrailer(b []byte, seed uint32, t *trailer, name string) {
	n := int64(t.Length)
	ts := crc.TableSize(n)
	nameOff := trailerFixed + ts
	copy(b[nameOff:], name)
	clear(b[nameOff+len(name) : nameOff+int(pad8(int64(len(name))))])
	f := b[:trailerFixed]
	copy(f[0:8], trailerMagic[:])
	binary.LittleEndian.PutUint64(f[8:], t.Hash)
	binary.LittleEndian.PutUint64(f[16:], t.Length)
	binary.LittleEndian.PutUint64(f[24:], t.Version)
	binary.LittleEndian.PutUint64(f[32:], t.Txn)
	binary.LittleEndian.PutUint64(f[40:], uint64(t.Time))
	binary.LittleEndian.PutUint32(f[48:], t.TxnCount)
	binary.LittleEndian.PutUint16(f[52:], uint16(len(name)))
	putUint48(f[54:60], t.Session)
	c := crc.CRC32C(seed, f[:60])
	c = crc.CRC32C(c, b[trailerFixed:nameOff+len(name)])
	binary.LittleEndian.PutUint32(f[60:], c)
}

// readTrailer decodes the trailer starting at b[0]; b extends at least to the end of
// the mapping that holds it. ok is false when anything does not verify.
func readTrailer(b []byte, seed uint32) (t trailer, ok bool) {
	if len(b) < trailerFixed || [8]byte(b[0:8]) != trailerMagic {
		return t, false
	}
	t.Hash = binary.LittleEndian.Uint64(b[8:])
	t.Length = binary.LittleEndian.Uint64(b[16:])
	t.Version = binary.LittleEndian.Uint64(b[24:])
	t.Txn = binary.LittleEndian.Uint64(b[32:])
	t.Time = int64(binary.LittleEndian.Uint64(b[40:]))
	t.TxnCount = binary.LittleEndian.Uint32(b[48:])
	l := int(binary.LittleEndian.Uint16(b[52:]))
	t.Session = uint48(b[54:60])
	if l == 0 || l > MaxNameLen || t.Length > 1<<50 {
		return t, false
	}
	ts := crc.TableSize(int64(t.Length))
	if int64(len(b)) < int64(trailerFixed)+int64(ts)+int64(l) {
		return t, false
	}
	c := crc.CRC32C(seed, b[:60])
	c = crc.CRC32C(c, b[trailerFixed:trailerFixed+ts+l])
	if c != binary.LittleEndian.Uint32(b[60:]) {
		return t, false
	}
	t.Table = b[trailerFixed : trailerFixed+ts]
	t.Name = b[trailerFixed+ts : trailerFixed+ts+l]
	return t, true
}

// sessionMask keeps the 48 bits of a session id that a trailer holds.
const sessionMask = 1<<48 - 1

func putUint48(b []byte, v uint64) {
	_ = b[5]
	binary.LittleEndian.PutUint32(b, uint32(v))
	binary.LittleEndian.PutUint16(b[4:], uint16(v>>32))
}

func uint48(b []byte) uint64 {
	_ = b[5]
	return uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint16(b[4:]))<<32
}
