// Package slot holds the bytes of a ckp data file: its header page and the slot of a
// version (payload, then a trailer that names and checks it, classic or stored by
// blocks). docs/FORMAT.md describes every byte; this package encodes and decodes them,
// trusting nothing it reads. The engine owns where slots go and when.
package slot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/index"
	"github.com/ckp-go/ckp/internal/base"
)

// The data file: a 4 KiB header page, then slots. docs/FORMAT.md describes every byte.
const (
	// FormatVersion is the newest version of the on-disk format this build reads and
	// writes. Version 2 added versions stored by blocks (differential saves): a file is
	// version 2 when it may hold them (created or opened with Options.Differential),
	// version 1 otherwise, so that older builds still read it. This build reads both.
	FormatVersion = 2
	// HeaderSize is the header page; HeaderLen, the bytes of it the header uses.
	HeaderSize = 4096
	HeaderLen  = 64
	// Fixed is the fixed part of a trailer.
	Fixed = 64
	// HugeAlign is the payload alignment of regions of 2 MiB and more: one huge page.
	HugeAlign = 2 << 20
)

// ErrUnknownFormat is wrapped (with ErrCorrupt) by the error for an intact data header
// of a format version this build does not read.
var ErrUnknownFormat = errors.New("unknown data format")

// DataMagic starts the data file; TrailerMagic starts every trailer.
var (
	DataMagic    = [8]byte{'C', 'K', 'P', 'D', 'A', 'T', 'A', 0}
	TrailerMagic = [8]byte{'C', 'K', 'P', 'T', 'R', 'A', 'I', 'L'}
)

// Header is the first 64 bytes of the data file.
type Header struct {
	FileID  [16]byte
	Created int64
	Version uint32 // format version (FormatVersion when encoding)
}

// EncodeHeader writes h into b[:HeaderLen], Version 0 meaning FormatVersion.
func EncodeHeader(b []byte, h Header) {
	_ = b[HeaderLen-1]
	clear(b[:HeaderLen])
	copy(b[0:8], DataMagic[:])
	v := h.Version
	if v == 0 {
		v = FormatVersion
	}
	binary.LittleEndian.PutUint32(b[8:], v)
	binary.LittleEndian.PutUint32(b[12:], HeaderSize)
	copy(b[16:32], h.FileID[:])
	binary.LittleEndian.PutUint64(b[32:], uint64(h.Created))
	binary.LittleEndian.PutUint32(b[60:], crc.CRC32C(0, b[:60]))
}

// DecodeHeader returns the header or an error that says what is wrong.
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, base.Errf(base.ErrCorrupt, "data file too short for a header (%d bytes)", len(b))
	}
	if [8]byte(b[0:8]) != DataMagic {
		return h, base.Errf(base.ErrCorrupt, "not a ckp data file (bad magic)")
	}
	if crc.CRC32C(0, b[:60]) != binary.LittleEndian.Uint32(b[60:]) {
		return h, base.Errf(base.ErrCorrupt, "data file header checksum mismatch")
	}
	h.Version = binary.LittleEndian.Uint32(b[8:])
	if h.Version < 1 || h.Version > FormatVersion {
		return h, fmt.Errorf("%w: %w: version %d (this build reads 1 to %d)", base.ErrCorrupt, ErrUnknownFormat, h.Version, FormatVersion)
	}
	if binary.LittleEndian.Uint32(b[12:]) != HeaderSize {
		return h, base.Errf(base.ErrCorrupt, "unexpected data header size")
	}
	copy(h.FileID[:], b[16:32])
	h.Created = int64(binary.LittleEndian.Uint64(b[32:]))
	return h, nil
}

// A slot holds one version: the payload, padded to 8 bytes, then the trailer:
//
//	payload | pad to 8 | fixed trailer (64 B) | block-hash table | name, padded to 8
//
// The fixed trailer starts with TrailerMagic so that the data file alone can be scanned
// for versions (ckp repair).

// Trailer is the decoded fixed part of a slot trailer plus the name.
type Trailer struct {
	Hash     uint64
	Length   uint64 // payload bytes in the slot
	Version  uint64
	Txn      uint64
	Time     int64
	TxnCount uint32
	Session  uint64 // the writer session's random id (48 bits; 0 in files written before it)
	Kind     uint8  // KindClassic, KindFull or KindDelta
	Name     []byte // aliases the mapping
	Table    []byte // classic: the 1 MiB block-hash table (empty for single-block payloads); blocks: the stored blocks' hashes
	Blocks   Layout
	Index    []byte // KindDelta: the stored blocks' numbers, uint32 each
}

// Trailer kinds (byte 53 of the fixed trailer).
const (
	KindClassic = 0 // the payload is the whole region; 1 MiB block table (package crc)
	KindFull    = 1 // blocks: the payload is every block of the region
	KindDelta   = 2 // blocks: the payload is the blocks changed since the base version
)

// BlockHeaderLen is the block header that follows the fixed trailer of a blocks slot.
const BlockHeaderLen = 32

// Layout describes the slot of a version stored by blocks (a differential
// checkpoint): which blocks it holds and how large they are.
type Layout struct {
	RegionLen int64  // bytes of the whole version
	Shift     uint8  // log2 of the block size
	Base      uint64 // KindDelta: the version the blocks changed from; 0 for a full slot
	K         int64  // blocks stored in the slot
	Payload   int64  // payload bytes in the slot
}

// Delta reports whether the slot holds a delta (its blocks changed from Base).
func (l *Layout) Delta() bool { return l.Base != 0 }

// ExtLen is the size of the trailer after its fixed part: block header, block numbers
// (deltas only), block hashes and the name.
func (l *Layout) ExtLen(nameLen int) int64 {
	e := int64(BlockHeaderLen) + 8*l.K + base.Pad8(int64(nameLen))
	if l.Delta() {
		e += base.Pad8(4 * l.K)
	}
	return e
}

// Record is the index's BLOCKS record of version ver (transaction txn) of checkpoint
// id, stored by blocks as l says.
func (l *Layout) Record(id uint32, ver, txn uint64) index.Record {
	return index.Record{Kind: index.KindBlocks, Ckpt: id, Version: ver, Txn: txn, Aux: uint16(l.Shift),
		Offset: uint64(l.Payload), Length: uint64(l.K), Hash: l.Base}
}

// Footprint is the bytes a blocks slot takes from its payload's start.
func (l *Layout) Footprint(nameLen int) int64 {
	return base.Pad8(l.Payload) + Fixed + l.ExtLen(nameLen)
}

// BlockParts returns, in the trailer b (starting at the fixed part), where the block
// numbers (nil for a full slot) and the block hashes go.
func BlockParts(b []byte, l *Layout) (index, hashes []byte) {
	o := int64(Fixed + BlockHeaderLen)
	if l.Delta() {
		index = b[o : o+4*l.K]
		o += base.Pad8(4 * l.K)
	}
	return index, b[o : o+8*l.K]
}

// WriteBlockTrailer completes the trailer of a blocks slot in b (starting at the fixed
// part, l.extLen long after it) whose block numbers and hashes are already in place:
// block header, name, then the fixed part last.
func WriteBlockTrailer(b []byte, seed uint32, t *Trailer, l *Layout, name string) {
	h := b[Fixed : Fixed+BlockHeaderLen]
	binary.LittleEndian.PutUint64(h[0:], uint64(l.RegionLen))
	binary.LittleEndian.PutUint64(h[8:], l.Base)
	binary.LittleEndian.PutUint64(h[16:], uint64(l.K))
	h[24] = l.Shift
	clear(h[25:32])
	ext := l.ExtLen(len(name))
	nameOff := Fixed + ext - base.Pad8(int64(len(name)))
	if l.Delta() {
		// The padding after the block numbers.
		o := int64(Fixed+BlockHeaderLen) + 4*l.K
		clear(b[o : int64(Fixed+BlockHeaderLen)+base.Pad8(4*l.K)])
	}
	copy(b[nameOff:], name)
	clear(b[nameOff+int64(len(name)) : Fixed+ext])
	kind := uint8(KindFull)
	if l.Delta() {
		kind = KindDelta
	}
	writeFixed(b, seed, t, len(name), kind, b[Fixed:nameOff+int64(len(name))])
}

// writeFixed writes the fixed part of a trailer at b[:Fixed]; rest is the rest of
// the trailer that its CRC covers (table or block parts, then the name).
func writeFixed(b []byte, seed uint32, t *Trailer, nameLen int, kind uint8, rest []byte) {
	f := b[:Fixed]
	copy(f[0:8], TrailerMagic[:])
	binary.LittleEndian.PutUint64(f[8:], t.Hash)
	binary.LittleEndian.PutUint64(f[16:], t.Length)
	binary.LittleEndian.PutUint64(f[24:], t.Version)
	binary.LittleEndian.PutUint64(f[32:], t.Txn)
	binary.LittleEndian.PutUint64(f[40:], uint64(t.Time))
	binary.LittleEndian.PutUint32(f[48:], t.TxnCount)
	f[52] = uint8(nameLen)
	f[53] = kind
	PutUint48(f[54:60], t.Session)
	c := crc.CRC32C(seed, f[:60])
	c = crc.CRC32C(c, rest)
	binary.LittleEndian.PutUint32(f[60:], c)
}

// TrailerLen is the size of a trailer for a payload of n bytes and a name of l bytes.
func TrailerLen(n int64, l int) int64 {
	return Fixed + int64(crc.TableSize(n)) + base.Pad8(int64(l))
}

// Footprint is the bytes a version of n bytes with a name of l bytes takes from its
// payload's start: the payload, its padding and the trailer.
func Footprint(n int64, l int) int64 { return base.Pad8(n) + TrailerLen(n, l) }

// PayloadAlign is the alignment of a payload of n bytes: a huge page for large regions
// (so a save maps 2 MiB folios with one fault each), a page for medium ones, a cache
// line for small ones.
func PayloadAlign(n int64) int64 {
	switch {
	case n >= HugeAlign:
		return HugeAlign
	case n >= 16<<10:
		return 4096
	default:
		return 64
	}
}

// Seed is the CRC seed of trailers in the data file with this id: a trailer copied
// from another ckp file does not verify here.
func Seed(fileID [16]byte) uint32 { return crc.CRC32C(0, fileID[:]) }

// WriteTrailer writes the trailer of a version into b, which starts at the trailer
// (payload offset + base.Pad8(length)) and is TrailerLen long. The table must already be in
// place (the copy writes it); the fixed part is written last.
func WriteTrailer(b []byte, seed uint32, t *Trailer, name string) {
	n := int64(t.Length)
	ts := crc.TableSize(n)
	nameOff := Fixed + ts
	copy(b[nameOff:], name)
	clear(b[nameOff+len(name) : nameOff+int(base.Pad8(int64(len(name))))])
	writeFixed(b, seed, t, len(name), KindClassic, b[Fixed:nameOff+len(name)])
}

// MaxBlocks bounds the blocks of a version in a trailer we trust (1 PiB of 4 KiB).
const MaxBlocks = 1 << 38

// ReadTrailer decodes the trailer starting at b[0]; b extends at least to the end of
// the mapping that holds it. ok is false when anything does not verify.
func ReadTrailer(b []byte, seed uint32) (t Trailer, ok bool) {
	if len(b) < Fixed || [8]byte(b[0:8]) != TrailerMagic {
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
	t.Session = Uint48(b[54:60])
	if l == 0 || t.Length > base.MaxLength || t.Kind > KindDelta {
		return t, false
	}
	var rest, table []byte
	switch t.Kind {
	case KindClassic:
		ts := crc.TableSize(int64(t.Length))
		if int64(len(b)) < int64(Fixed)+int64(ts)+int64(l) {
			return t, false
		}
		rest = b[Fixed : Fixed+ts+l]
		table = b[Fixed : Fixed+ts]
	default:
		if len(b) < Fixed+BlockHeaderLen {
			return t, false
		}
		h := b[Fixed : Fixed+BlockHeaderLen]
		lay := Layout{
			RegionLen: int64(binary.LittleEndian.Uint64(h[0:])),
			Base:      binary.LittleEndian.Uint64(h[8:]),
			K:         int64(binary.LittleEndian.Uint64(h[16:])),
			Shift:     h[24],
			Payload:   int64(t.Length),
		}
		if lay.Shift < base.MinBlockShift || lay.Shift > base.MaxBlockShift || lay.RegionLen <= 0 || lay.RegionLen > base.MaxLength ||
			lay.K < 0 || (lay.K == 0) != (lay.Payload == 0) || (lay.K == 0 && !lay.Delta()) || lay.K > MaxBlocks || lay.K > base.BlockCount(lay.RegionLen, lay.Shift) || lay.Payload > lay.K<<lay.Shift ||
			(t.Kind == KindDelta) != lay.Delta() || (t.Kind == KindFull && (lay.K != base.BlockCount(lay.RegionLen, lay.Shift) || lay.Payload != lay.RegionLen)) {
			return t, false
		}
		ext := lay.ExtLen(l)
		if int64(len(b)) < Fixed+ext {
			return t, false
		}
		rest = b[Fixed : Fixed+ext-base.Pad8(int64(l))+int64(l)]
		t.Blocks = lay
		var idx []byte
		idx, table = BlockParts(b, &lay)
		t.Index = idx
		if idx != nil && !DeltaListFits(idx, &lay) {
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

// Size is the bytes of the trailer t (as read) from its fixed part's start.
func (t *Trailer) Size() int64 {
	if t.Kind == KindClassic {
		return TrailerLen(int64(t.Length), len(t.Name))
	}
	return Fixed + t.Blocks.ExtLen(len(t.Name))
}

// SessionMask keeps the 48 bits of a session id that a trailer holds.
const SessionMask = 1<<48 - 1

// PutUint48 writes the low 48 bits of v, little-endian.
func PutUint48(b []byte, v uint64) {
	_ = b[5]
	binary.LittleEndian.PutUint32(b, uint32(v))
	binary.LittleEndian.PutUint16(b[4:], uint16(v>>32))
}

// Uint48 reads 48 bits, little-endian.
func Uint48(b []byte) uint64 {
	_ = b[5]
	return uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint16(b[4:]))<<32
}

// DeltaListFits checks a delta's block numbers: strictly increasing, each below the
// region's block count, and their lengths adding up to the payload exactly.
func DeltaListFits(idx []byte, lay *Layout) bool {
	nb := base.BlockCount(lay.RegionLen, lay.Shift)
	var sum int64
	prev := int64(-1)
	for i := int64(0); i < lay.K; i++ {
		b := int64(binary.LittleEndian.Uint32(idx[4*i:]))
		if b <= prev || b >= nb {
			return false
		}
		prev = b
		sum += base.BlockLen(b, lay.Shift, lay.RegionLen)
	}
	return sum == lay.Payload
}

// Walk calls fn for each block the slot of trailer t holds (t from ReadTrailer, of
// a version stored by blocks), in the order of its payload: i is the block's place in
// the slot (its hash is t.Table[8*i:]), b its number in the region, off where its bytes
// start in the payload and l their length. Before trusting the list it checks what any
// reader must: a delta's block numbers increase and lie inside the region, and the
// blocks fill the payload exactly. It returns fn's first error, or an error wrapping
// ErrCorrupt when the list is bad.
func (t *Trailer) Walk(fn func(i, b, off, l int64) error) error {
	lay := &t.Blocks
	nb := base.BlockCount(lay.RegionLen, lay.Shift)
	off, prev := int64(0), int64(-1)
	for i := int64(0); i < lay.K; i++ {
		b := i
		if t.Kind == KindDelta {
			b = int64(binary.LittleEndian.Uint32(t.Index[4*i:]))
			if b <= prev || b >= nb {
				return base.Errf(base.ErrCorrupt, "version %d: block list out of order", t.Version)
			}
			prev = b
		}
		l := base.BlockLen(b, lay.Shift, lay.RegionLen)
		if off+l > lay.Payload {
			return base.Errf(base.ErrCorrupt, "version %d: blocks overrun the payload", t.Version)
		}
		if err := fn(i, b, off, l); err != nil {
			return err
		}
		off += l
	}
	if off != lay.Payload {
		return base.Errf(base.ErrCorrupt, "version %d: blocks do not fill the payload", t.Version)
	}
	return nil
}

// TableBytes returns table as the little-endian bytes a version's hash is defined
// over, aliasing it where the machine is little-endian.
func TableBytes(table []uint64) []byte {
	if len(table) == 0 {
		return nil
	}
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&table[0])), 8*len(table))
	}
	b := make([]byte, 0, 8*len(table))
	for _, x := range table {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return b
}

// HashBytes views hashes as the bytes hash jobs write, little-endian each (see
// FromHashBytes).
func HashBytes(hashes []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&hashes[0])), 8*len(hashes))
}

// FromHashBytes turns hashes[lo:hi], written as little-endian bytes through hb (their
// HashBytes view), into numbers: nothing to do on a little-endian machine.
func FromHashBytes(hashes []uint64, hb []byte, lo, hi int64) {
	if !littleEndian {
		for b := lo; b < hi; b++ {
			hashes[b] = binary.LittleEndian.Uint64(hb[8*b:])
		}
	}
}

// littleEndian: the machine stores numbers little-endian, as the file does.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()
