package remote

import (
	"bytes"
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// The manifest: what makes a version committed in the store. All integers are
// little-endian; docs/REMOTE.md has the table.
//
//	0   8  magic "CKPMANIF"
//	8   4  format version (2; 1 was before lives, and is refused)
//	12  4  total length of the manifest in bytes, CRC included
//	16  8  version number
//	24  8  payload length L
//	32  8  payload hash (docs/FORMAT.md)
//	40  8  save time, Unix nanoseconds
//	48  8  transaction number in the writer's local file
//	56  4  transaction size (versions the Save or SaveAll wrote)
//	60  4  members: versions of the transaction with this version number that it
//	       uploads (the Every rule); informational (completeness is the rank's
//	       version record's)
//	64  4  rank
//	68  4  ranks
//	72  2  name length N
//	74  2  flags: bit 0 BLOCKS, the version is stored by blocks (a differential
//	       checkpoint): its hash and table are those of docs/FORMAT.md's blocks
//	76  4  block count B (entries of the block table; 0 when L <= 1 MiB and not
//	       BLOCKS; with BLOCKS, ceil(L / block size))
//	80  4  extent count E
//	84  1  BLOCKS: log2 of the block size; else 0
//	85  3  zero
//	88  8  writer session id
//	96  8  life: the life of the job it was committed in
//	104    name (N bytes, zero-padded to 8)
//	       block table (B x 8 bytes: the xxhash64 of each 1 MiB block)
//	       E extents of 40 bytes + key: region offset (8), length (8), object offset
//	       (8), hash (8): the payload hash of the extent's bytes, or with BLOCKS the
//	       xxhash64 of the table entries of the blocks it covers (extents then start
//	       on block boundaries), key length K (2), zero (6), then the object's key (K
//	       bytes, zero-padded to 8)
//	       CRC-32C of everything before it (4)

var manifestMagic = [8]byte{'C', 'K', 'P', 'M', 'A', 'N', 'I', 'F'}

const (
	manifestFormat = 2
	manifestFixed  = 104
	extentFixed    = 40
	maxManifest    = 64 << 20 // a manifest longer than this is refused
)

// manifest is a decoded manifest.
type manifest struct {
	Name        string
	Version     uint64
	Length      int64
	Hash        uint64
	Time        int64
	Txn         uint64
	TxnSize     uint32
	Members     uint32
	Rank, Ranks int
	Session     uint64
	Life        uint64 // the life of the job it was committed in
	Shift       uint8  // stored by blocks of 1<<Shift bytes (BLOCKS); 0: a whole payload
	Table       []byte // the block table (8 bytes per block), nil for one block
	Extents     []extentRef
}

// blockShift is the log2 of the size of the blocks the table hashes.
func (m *manifest) blockShift() uint8 {
	if m.Shift > 0 {
		return m.Shift
	}
	return crc.BlockShift
}

// tableHash is the hash of table entries [b0, b1): an extent's hash with BLOCKS.
func tableHash(table []byte, b0, b1 int64) uint64 { return xxhash.Sum64(table[8*b0 : 8*b1]) }

// extentRef maps bytes of the payload to bytes of a data object.
type extentRef struct {
	Off, Len int64  // in the payload
	ObjOff   int64  // in the object
	Hash     uint64 // payload hash of these bytes
	Key      string // the data object
}

// encode returns the manifest's bytes.
func (m *manifest) encode() []byte {
	n := manifestFixed + int(base.Pad8(int64(len(m.Name)))) + len(m.Table)
	for _, e := range m.Extents {
		n += extentFixed + int(base.Pad8(int64(len(e.Key))))
	}
	n += 4
	b := make([]byte, n)
	copy(b, manifestMagic[:])
	le := binary.LittleEndian
	le.PutUint32(b[8:], manifestFormat)
	le.PutUint32(b[12:], uint32(n))
	le.PutUint64(b[16:], m.Version)
	le.PutUint64(b[24:], uint64(m.Length))
	le.PutUint64(b[32:], m.Hash)
	le.PutUint64(b[40:], uint64(m.Time))
	le.PutUint64(b[48:], m.Txn)
	le.PutUint32(b[56:], m.TxnSize)
	le.PutUint32(b[60:], m.Members)
	le.PutUint32(b[64:], uint32(m.Rank))
	le.PutUint32(b[68:], uint32(m.Ranks))
	le.PutUint16(b[72:], uint16(len(m.Name)))
	if m.Shift > 0 {
		le.PutUint16(b[74:], 1)
		b[84] = m.Shift
	}
	le.PutUint32(b[76:], uint32(len(m.Table)/8))
	le.PutUint32(b[80:], uint32(len(m.Extents)))
	le.PutUint64(b[88:], m.Session)
	le.PutUint64(b[96:], m.Life)
	p := manifestFixed
	copy(b[p:], m.Name)
	p += int(base.Pad8(int64(len(m.Name))))
	p += copy(b[p:], m.Table)
	for _, e := range m.Extents {
		le.PutUint64(b[p:], uint64(e.Off))
		le.PutUint64(b[p+8:], uint64(e.Len))
		le.PutUint64(b[p+16:], uint64(e.ObjOff))
		le.PutUint64(b[p+24:], e.Hash)
		le.PutUint16(b[p+32:], uint16(len(e.Key)))
		copy(b[p+extentFixed:], e.Key)
		p += extentFixed + int(base.Pad8(int64(len(e.Key))))
	}
	le.PutUint32(b[p:], crc.CRC32C(0, b[:p]))
	return b
}

// decodeManifest parses and checks a manifest: its CRC, its fields, and that its
// extents cover the payload exactly, in order.
func decodeManifest(b []byte) (*manifest, error) {
	bad := func(format string, args ...any) (*manifest, error) {
		return nil, base.Errf(base.ErrCorrupt, "manifest: "+format, args...)
	}
	if len(b) < manifestFixed+4 {
		return bad("%d bytes, too short", len(b))
	}
	if [8]byte(b[:8]) != manifestMagic {
		return bad("bad magic")
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[8:]); v != manifestFormat {
		return bad("unknown format version %d", v)
	}
	if n := le.Uint32(b[12:]); int64(n) != int64(len(b)) {
		return bad("length field says %d bytes, the object has %d", n, len(b))
	}
	if crc.CRC32C(0, b[:len(b)-4]) != le.Uint32(b[len(b)-4:]) {
		return bad("checksum mismatch")
	}
	m := &manifest{
		Version: le.Uint64(b[16:]),
		Length:  int64(le.Uint64(b[24:])),
		Hash:    le.Uint64(b[32:]),
		Time:    int64(le.Uint64(b[40:])),
		Txn:     le.Uint64(b[48:]),
		TxnSize: le.Uint32(b[56:]),
		Members: le.Uint32(b[60:]),
		Rank:    int(le.Uint32(b[64:])),
		Ranks:   int(le.Uint32(b[68:])),
		Session: le.Uint64(b[88:]),
		Life:    le.Uint64(b[96:]),
	}
	nameLen := int(le.Uint16(b[72:]))
	blocks := int64(le.Uint32(b[76:]))
	extents := int64(le.Uint32(b[80:]))
	flags := le.Uint16(b[74:])
	if m.Version == 0 || m.Life == 0 || m.Length <= 0 || m.Length > base.MaxLength || nameLen == 0 || nameLen > base.MaxNameLen || flags > 1 {
		return bad("version %d of life %d, length %d, name of %d bytes, flags %#x", m.Version, m.Life, m.Length, nameLen, flags)
	}
	if m.Ranks < 1 || m.Ranks > MaxRanks || m.Rank >= m.Ranks {
		return bad("rank %d of %d", m.Rank, m.Ranks)
	}
	want := int64(crc.TableSize(m.Length) / 8)
	if flags == 1 {
		m.Shift = b[84]
		if m.Shift < base.MinBlockShift || m.Shift > base.MaxBlockShift {
			return bad("block size 2^%d", m.Shift)
		}
		want = base.BlockCount(m.Length, m.Shift)
	} else if b[84] != 0 {
		return bad("block size without BLOCKS")
	}
	if blocks != want {
		return bad("%d blocks for %d bytes, want %d", blocks, m.Length, want)
	}
	p := int64(manifestFixed)
	end := int64(len(b) - 4)
	if p+base.Pad8(int64(nameLen))+8*blocks > end {
		return bad("truncated")
	}
	m.Name = string(b[p : p+int64(nameLen)])
	p += base.Pad8(int64(nameLen))
	if blocks > 0 {
		m.Table = bytes.Clone(b[p : p+8*blocks])
		p += 8 * blocks
		if xxhash.Sum64(m.Table) != m.Hash { // crc.Combine, and the hash of a blocks version
			return bad("block table does not match the hash")
		}
	}
	bs := int64(1) << m.blockShift()
	var next int64
	for i := int64(0); i < extents; i++ {
		if p+extentFixed > end {
			return bad("truncated extent %d", i)
		}
		e := extentRef{
			Off:    int64(le.Uint64(b[p:])),
			Len:    int64(le.Uint64(b[p+8:])),
			ObjOff: int64(le.Uint64(b[p+16:])),
			Hash:   le.Uint64(b[p+24:]),
		}
		k := int64(le.Uint16(b[p+32:]))
		if p+extentFixed+base.Pad8(k) > end {
			return bad("truncated extent %d", i)
		}
		e.Key = string(b[p+extentFixed : p+extentFixed+k])
		p += extentFixed + base.Pad8(k)
		if e.Off != next || e.Len <= 0 || e.Off+e.Len > m.Length || e.ObjOff < 0 || store.CheckKey(e.Key) != nil {
			return bad("extent %d ([%d,+%d) at %d of %q) does not continue the payload", i, e.Off, e.Len, e.ObjOff, e.Key)
		}
		if m.Shift > 0 {
			end := e.Off + e.Len
			if e.Off%bs != 0 || (end%bs != 0 && end != m.Length) || tableHash(m.Table, e.Off/bs, (end+bs-1)/bs) != e.Hash {
				return bad("extent %d ([%d,+%d)) is not whole blocks of its hash", i, e.Off, e.Len)
			}
		}
		next = e.Off + e.Len
		m.Extents = append(m.Extents, e)
	}
	if next != m.Length || p != end {
		return bad("extents cover %d of %d bytes", next, m.Length)
	}
	return m, nil
}
