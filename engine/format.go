package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
)

// The data file: a 4 KiB header page, then slots. docs/FORMAT.md describes every byte.
const (
	// FormatVersion is the newest version of the on-disk format this build reads and
	// writes. Version 2 added versions stored by blocks (differential saves): a file is
	// version 2 when it may hold them (created or opened with Options.Differential),
	// version 1 otherwise, so that older builds still read it. This build reads both.
	FormatVersion  = 2
	dataHeaderSize = 4096
	dataHeaderLen  = 64
	trailerFixed   = 64
	// MaxNameLen is the longest checkpoint name in bytes.
	MaxNameLen = base.MaxNameLen
	// hugeAlign is the payload alignment of regions of 2 MiB and more: one huge page.
	hugeAlign = 2 << 20
)

// errUnknownFormat is wrapped (with ErrCorrupt) by the error for an intact data header
// of a format version this build does not read.
var errUnknownFormat = errors.New("unknown data format")

var (
	dataMagic    = [8]byte{'C', 'K', 'P', 'D', 'A', 'T', 'A', 0}
	trailerMagic = [8]byte{'C', 'K', 'P', 'T', 'R', 'A', 'I', 'L'}
)

// dataHeader is the first 64 bytes of the data file.
type dataHeader struct {
	FileID  [16]byte
	Created int64
	Version uint32 // format version (FormatVersion when encoding)
}

func encodeDataHeader(b []byte, h dataHeader) {
	_ = b[dataHeaderLen-1]
	clear(b[:dataHeaderLen])
	copy(b[0:8], dataMagic[:])
	v := h.Version
	if v == 0 {
		v = FormatVersion
	}
	binary.LittleEndian.PutUint32(b[8:], v)
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
	h.Version = binary.LittleEndian.Uint32(b[8:])
	if h.Version < 1 || h.Version > FormatVersion {
		return h, fmt.Errorf("%w: %w: version %d (this build reads 1 to %d)", ErrCorrupt, errUnknownFormat, h.Version, FormatVersion)
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
	Length   uint64 // payload bytes in the slot
	Version  uint64
	Txn      uint64
	Time     int64
	TxnCount uint32
	Session  uint64 // the writer session's random id (48 bits; 0 in files written before it)
	Kind     uint8  // trailerClassic, trailerFull or trailerDelta
	Name     []byte // aliases the mapping
	Table    []byte // classic: the 1 MiB block-hash table (empty for single-block payloads); blocks: the stored blocks' hashes
	Blocks   blockLayout
	Index    []byte // trailerDelta: the stored blocks' numbers, uint32 each
}

// Trailer kinds (byte 53 of the fixed trailer).
const (
	trailerClassic = 0 // the payload is the whole region; 1 MiB block table (package crc)
	trailerFull    = 1 // blocks: the payload is every block of the region
	trailerDelta   = 2 // blocks: the payload is the blocks changed since the base version
)

// blockHeaderLen is the block header that follows the fixed trailer of a blocks slot.
const blockHeaderLen = 32

// blockLayout describes the slot of a version stored by blocks (a differential
// checkpoint): which blocks it holds and how large they are.
type blockLayout struct {
	RegionLen int64  // bytes of the whole version
	Shift     uint8  // log2 of the block size
	Base      uint64 // trailerDelta: the version the blocks changed from; 0 for a full slot
	K         int64  // blocks stored in the slot
	Payload   int64  // payload bytes in the slot
}

func (l *blockLayout) delta() bool { return l.Base != 0 }

// blockCount is the number of blocks of a region of n bytes.
func blockCount(n int64, shift uint8) int64 { return base.BlockCount(n, shift) }

// extLen is the size of the trailer after its fixed part: block header, block numbers
// (deltas only), block hashes and the name.
func (l *blockLayout) extLen(nameLen int) int64 {
	e := int64(blockHeaderLen) + 8*l.K + pad8(int64(nameLen))
	if l.delta() {
		e += pad8(4 * l.K)
	}
	return e
}

// footprint is the bytes a blocks slot takes from its payload's start.
func (l *blockLayout) footprint(nameLen int) int64 {
	return pad8(l.Payload) + trailerFixed + l.extLen(nameLen)
}

// blockParts returns, in the trailer b (starting at the fixed part), where the block
// numbers (nil for a full slot) and the block hashes go.
func blockParts(b []byte, l *blockLayout) (index, hashes []byte) {
	o := int64(trailerFixed + blockHeaderLen)
	if l.delta() {
		index = b[o : o+4*l.K]
		o += pad8(4 * l.K)
	}
	return index, b[o : o+8*l.K]
}

// writeBlockTrailer completes the trailer of a blocks slot in b (starting at the fixed
// part, l.extLen long after it) whose block numbers and hashes are already in place:
// block header, name, then the fixed part last.
func writeBlockTrailer(b []byte, seed uint32, t *trailer, l *blockLayout, name string) {
	h := b[trailerFixed : trailerFixed+blockHeaderLen]
	binary.LittleEndian.PutUint64(h[0:], uint64(l.RegionLen))
	binary.LittleEndian.PutUint64(h[8:], l.Base)
	binary.LittleEndian.PutUint64(h[16:], uint64(l.K))
	h[24] = l.Shift
	clear(h[25:32])
	ext := l.extLen(len(name))
	nameOff := trailerFixed + ext - pad8(int64(len(name)))
	if l.delta() {
		// The padding after the block numbers.
		o := int64(trailerFixed+blockHeaderLen) + 4*l.K
		clear(b[o : int64(trailerFixed+blockHeaderLen)+pad8(4*l.K)])
	}
	copy(b[nameOff:], name)
	clear(b[nameOff+int64(len(name)) : trailerFixed+ext])
	kind := uint8(trailerFull)
	if l.delta() {
		kind = trailerDelta
	}
	writeFixed(b, seed, t, len(name), kind, b[trailerFixed:nameOff+int64(len(name))])
}

// writeFixed writes the fixed part of a trailer at b[:trailerFixed]; rest is the rest of
// the trailer that its CRC covers (table or block parts, then the name).
func writeFixed(b []byte, seed uint32, t *trailer, nameLen int, kind uint8, rest []byte) {
	f := b[:trailerFixed]
	copy(f[0:8], trailerMagic[:])
	binary.LittleEndian.PutUint64(f[8:], t.Hash)
	binary.LittleEndian.PutUint64(f[16:], t.Length)
	binary.LittleEndian.PutUint64(f[24:], t.Version)
	binary.LittleEndian.PutUint64(f[32:], t.Txn)
	binary.LittleEndian.PutUint64(f[40:], uint64(t.Time))
	binary.LittleEndian.PutUint32(f[48:], t.TxnCount)
	f[52] = uint8(nameLen)
	f[53] = kind
	putUint48(f[54:60], t.Session)
	c := crc.CRC32C(seed, f[:60])
	c = crc.CRC32C(c, rest)
	binary.LittleEndian.PutUint32(f[60:], c)
}

func pad8(n int64) int64 { return base.Pad8(n) }

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
	writeFixed(b, seed, t, len(name), trailerClassic, b[trailerFixed:nameOff+len(name)])
}

// maxBlocks bounds the blocks of a version in a trailer we trust (1 PiB of 4 KiB).
const maxBlocks = 1 << 38

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
	l := int(b[52])
	t.Kind = b[53]
	t.Session = uint48(b[54:60])
	if l == 0 || t.Length > maxLength || t.Kind > trailerDelta {
		return t, false
	}
	var rest, table []byte
	switch t.Kind {
	case trailerClassic:
		ts := crc.TableSize(int64(t.Length))
		if int64(len(b)) < int64(trailerFixed)+int64(ts)+int64(l) {
			return t, false
		}
		rest = b[trailerFixed : trailerFixed+ts+l]
		table = b[trailerFixed : trailerFixed+ts]
	default:
		if len(b) < trailerFixed+blockHeaderLen {
			return t, false
		}
		h := b[trailerFixed : trailerFixed+blockHeaderLen]
		lay := blockLayout{
			RegionLen: int64(binary.LittleEndian.Uint64(h[0:])),
			Base:      binary.LittleEndian.Uint64(h[8:]),
			K:         int64(binary.LittleEndian.Uint64(h[16:])),
			Shift:     h[24],
			Payload:   int64(t.Length),
		}
		if lay.Shift < minBlockShift || lay.Shift > maxBlockShift || lay.RegionLen <= 0 || lay.RegionLen > maxLength ||
			lay.K < 0 || (lay.K == 0) != (lay.Payload == 0) || (lay.K == 0 && !lay.delta()) || lay.K > maxBlocks || lay.K > blockCount(lay.RegionLen, lay.Shift) || lay.Payload > lay.K<<lay.Shift ||
			(t.Kind == trailerDelta) != lay.delta() || (t.Kind == trailerFull && (lay.K != blockCount(lay.RegionLen, lay.Shift) || lay.Payload != lay.RegionLen)) {
			return t, false
		}
		ext := lay.extLen(l)
		if int64(len(b)) < trailerFixed+ext {
			return t, false
		}
		rest = b[trailerFixed : trailerFixed+ext-pad8(int64(l))+int64(l)]
		t.Blocks = lay
		var idx []byte
		idx, table = blockParts(b, &lay)
		t.Index = idx
		if idx != nil && !deltaListFits(idx, &lay) {
			return t, false
		}
	}
	c := crc.CRC32C(seed, b[:60])
	c = crc.CRC32C(c, rest)
	if c != binary.LittleEndian.Uint32(b[60:]) {
		return t, false
	}
	t.Table = table
	t.Name = rest[len(rest)-l:]
	return t, true
}

// trailerSize is the bytes of the trailer t (as read) from its fixed part's start.
func (t *trailer) size() int64 {
	if t.Kind == trailerClassic {
		return trailerLen(int64(t.Length), len(t.Name))
	}
	return trailerFixed + t.Blocks.extLen(len(t.Name))
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

// deltaListFits checks a delta's block numbers: strictly increasing, each below the
// region's block count, and their lengths adding up to the payload exactly.
func deltaListFits(idx []byte, lay *blockLayout) bool {
	nb := blockCount(lay.RegionLen, lay.Shift)
	var sum int64
	prev := int64(-1)
	for i := int64(0); i < lay.K; i++ {
		b := int64(binary.LittleEndian.Uint32(idx[4*i:]))
		if b <= prev || b >= nb {
			return false
		}
		prev = b
		sum += blockLen(b, lay.Shift, lay.RegionLen)
	}
	return sum == lay.Payload
}
