package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/store"
)

// The remote tier copies saved versions to a store (an S3 bucket or a shared
// directory) so that a job can restart on other nodes. docs/REMOTE.md describes every
// key and byte in the store, the commit protocol and what each failure leaves behind.
//
// In short: a version's bytes go to a content-addressed data object, then a manifest
// naming them is created with a conditional create; the version is committed in the
// store when its manifest exists. Manifests are keyed by rank, checkpoint and version,
// so listing them tells which versions every rank committed (JobVersion).

// Remote configures the remote tier of a File (Options.Remote). A nil Remote means no
// remote tier.
type Remote struct {
	// Store is where versions are copied. It is required.
	Store store.Store

	// Every uploads every n-th version of each checkpoint: version v is uploaded when
	// v is a multiple of Every. 0 or 1 uploads every version. Every rank of a job must
	// use the same rule, or their versions never line up (JobVersion).
	Every int

	// MaxPending bounds the bytes saved but not yet uploaded to the store: a Save or
	// SaveAll that would go past it waits until uploads catch up (back-pressure). A save
	// larger than MaxPending on its own waits until nothing is pending. A save that
	// waits longer than Timeout (the store is unreachable) returns ErrRemote and is not
	// made. 0 means DefaultMaxPending. The pending versions' slots stay in the local
	// data file until they are uploaded, so this also bounds the extra local disk the
	// tier takes.
	MaxPending int64

	// Keep is the number of committed versions kept in the store per checkpoint; older
	// ones are deleted once newer ones are committed, but never the job version (see
	// File.JobVersion) or anything newer. 0 means Options.KeepVersions (and so, when
	// that is 0, every version is kept).
	Keep int

	// Rank is this process's rank in a job of Ranks processes (0..Ranks-1). Rank 0 of
	// Ranks 0 (the zero values) is a job of one process.
	Rank, Ranks int

	// Timeout bounds how long Open waits for the store when it must ask it what is
	// committed (an unreachable store then fails Open with ErrRemote), how long a save
	// waits for room under MaxPending, how long a restore waits for a version from the
	// store, and how long Close waits for uploads to finish before it gives up on them.
	// 0 means DefaultRemoteTimeout.
	Timeout time.Duration
}

// Defaults of the remote tier.
const (
	// DefaultMaxPending is Remote.MaxPending's default: 1 GiB.
	DefaultMaxPending = 1 << 30
	// DefaultRemoteTimeout is Remote.Timeout's default.
	DefaultRemoteTimeout = time.Minute
)

// ErrRemote: the remote tier failed. A permanent failure of an upload (denied access, a
// missing bucket, a store that cannot create objects atomically) is returned, wrapped
// in ErrRemote, by the next Save, SaveAll, Flush or Close; Open returns it when the
// store cannot be asked what it holds. The error also wraps the store's error, so
// errors.Is(err, store.ErrDenied) and the like tell the cause. The local file is
// never affected: every version saved locally stays.
var ErrRemote = errors.New("ckp: remote store")

// remoteCfg is a validated Remote with defaults applied.
type remoteCfg struct {
	st         store.Store
	every      uint64
	maxPending int64
	keep       int
	rank       int
	ranks      int
	timeout    time.Duration
}

func (r *Remote) config(keepVersions int) (remoteCfg, error) {
	c := remoteCfg{st: r.Store, every: 1, maxPending: r.MaxPending, keep: r.Keep,
		rank: r.Rank, ranks: r.Ranks, timeout: r.Timeout}
	switch {
	case r.Store == nil:
		return c, errf(ErrInvalid, "Remote.Store is nil")
	case r.Every < 0, r.MaxPending < 0, r.Keep < 0, r.Timeout < 0:
		return c, errf(ErrInvalid, "negative Remote.Every, MaxPending, Keep or Timeout")
	case r.Ranks < 0 || r.Rank < 0:
		return c, errf(ErrInvalid, "negative Remote.Rank or Ranks")
	case r.Ranks == 0 && r.Rank != 0:
		return c, errf(ErrInvalid, "Remote.Rank %d without Remote.Ranks", r.Rank)
	case r.Ranks > 0 && r.Rank >= r.Ranks:
		return c, errf(ErrInvalid, "Remote.Rank %d is not below Remote.Ranks %d", r.Rank, r.Ranks)
	case r.Ranks > maxRanks:
		return c, errf(ErrInvalid, "Remote.Ranks %d is more than %d", r.Ranks, maxRanks)
	}
	if r.Every > 1 {
		c.every = uint64(r.Every)
	}
	if c.maxPending == 0 {
		c.maxPending = DefaultMaxPending
	}
	if c.keep == 0 {
		c.keep = keepVersions
	}
	if c.ranks == 0 {
		c.ranks = 1
	}
	if c.timeout == 0 {
		c.timeout = DefaultRemoteTimeout
	}
	return c, nil
}

// maxRanks bounds Remote.Ranks (the manifests hold it in 32 bits; a listing of a
// million ranks' manifests is already more than a restart should read).
const maxRanks = 1 << 20

// selected reports whether version v is uploaded under the Every rule.
func (c *remoteCfg) selected(v uint64) bool { return c.every <= 1 || v%c.every == 0 }

// Keys. Everything a File puts in the store is under "m/" (manifests) and "d/" (data):
//
//	m/<rank>/<checkpoint>/<version, 20 decimal digits>
//	d/<rank>/<payload hash, 16 hex digits>-<length in bytes, decimal>
//
// <checkpoint> is the checkpoint's name with every byte outside [A-Za-z0-9_.-] (and a
// leading '.') written as %XX, or, when that is longer than maxSegName bytes, '~'
// followed by the 16 hex digits of the xxhash64 of the name (the manifests hold the
// name itself).

const (
	manifestDir = "m/"
	dataDir     = "d/"
	maxSegName  = 200
)

// nameSegment returns the key segment of a checkpoint name.
func nameSegment(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if safeByte(c) && (i > 0 || c != '.') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		if b.Len() > maxSegName {
			return fmt.Sprintf("~%016x", xxhash.Sum64String(name))
		}
	}
	return b.String()
}

func safeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// segmentName decodes a key segment; ok is false for a hashed segment (whose name is in
// its manifests) or one that is not a checkpoint segment.
func segmentName(seg string) (name string, ok bool) {
	if seg == "" || seg[0] == '~' {
		return "", false
	}
	var b []byte
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c != '%' {
			if !safeByte(c) {
				return "", false
			}
			b = append(b, c)
			continue
		}
		if i+3 > len(seg) {
			return "", false
		}
		v, err := strconv.ParseUint(seg[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b = append(b, byte(v))
		i += 2
	}
	if len(b) == 0 || len(b) > MaxNameLen {
		return "", false
	}
	return string(b), true
}

func rankManifests(rank int) string { return manifestDir + strconv.Itoa(rank) + "/" }

func manifestKey(rank int, seg string, v uint64) string {
	return fmt.Sprintf("%s%s/%020d", rankManifests(rank), seg, v)
}

func dataKey(rank int, hash uint64, length int64) string {
	return fmt.Sprintf("%s%d/%016x-%d", dataDir, rank, hash, length)
}

// manifestRef is a manifest key taken apart.
type manifestRef struct {
	rank int
	seg  string
	ver  uint64
}

// parseManifestKey parses "m/<rank>/<seg>/<version>".
func parseManifestKey(key string) (manifestRef, bool) {
	rest, ok := strings.CutPrefix(key, manifestDir)
	if !ok {
		return manifestRef{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || len(parts[2]) != 20 {
		return manifestRef{}, false
	}
	rank, err1 := strconv.Atoi(parts[0])
	v, err2 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || rank < 0 || v == 0 || parts[1] == "" {
		return manifestRef{}, false
	}
	return manifestRef{rank, parts[1], v}, true
}

// The manifest: what makes a version committed in the store. All integers are
// little-endian; docs/REMOTE.md has the table.
//
//	0   8  magic "CKPMANIF"
//	8   4  format version (1)
//	12  4  total length of the manifest in bytes, CRC included
//	16  8  version number
//	24  8  payload length L
//	32  8  payload hash (docs/FORMAT.md)
//	40  8  save time, Unix nanoseconds
//	48  8  transaction number in the writer's local file
//	56  4  transaction size (versions the Save or SaveAll wrote)
//	60  4  members: versions of the transaction with this version number that it
//	       uploads (the Every rule); the version is complete on its rank when at
//	       least that many of the rank's checkpoints have it committed
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
//	96     name (N bytes, zero-padded to 8)
//	       block table (B x 8 bytes: the xxhash64 of each 1 MiB block)
//	       E extents of 40 bytes + key: region offset (8), length (8), object offset
//	       (8), hash (8): the payload hash of the extent's bytes, or with BLOCKS the
//	       xxhash64 of the table entries of the blocks it covers (extents then start
//	       on block boundaries), key length K (2), zero (6), then the object's key (K
//	       bytes, zero-padded to 8)
//	       CRC-32C of everything before it (4)

var manifestMagic = [8]byte{'C', 'K', 'P', 'M', 'A', 'N', 'I', 'F'}

const (
	manifestFormat = 1
	manifestFixed  = 96
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
	n := manifestFixed + int(pad8(int64(len(m.Name)))) + len(m.Table)
	for _, e := range m.Extents {
		n += extentFixed + int(pad8(int64(len(e.Key))))
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
	p := manifestFixed
	copy(b[p:], m.Name)
	p += int(pad8(int64(len(m.Name))))
	p += copy(b[p:], m.Table)
	for _, e := range m.Extents {
		le.PutUint64(b[p:], uint64(e.Off))
		le.PutUint64(b[p+8:], uint64(e.Len))
		le.PutUint64(b[p+16:], uint64(e.ObjOff))
		le.PutUint64(b[p+24:], e.Hash)
		le.PutUint16(b[p+32:], uint16(len(e.Key)))
		copy(b[p+extentFixed:], e.Key)
		p += extentFixed + int(pad8(int64(len(e.Key))))
	}
	le.PutUint32(b[p:], crc.CRC32C(0, b[:p]))
	return b
}

// decodeManifest parses and checks a manifest: its CRC, its fields, and that its
// extents cover the payload exactly, in order.
func decodeManifest(b []byte) (*manifest, error) {
	bad := func(format string, args ...any) (*manifest, error) {
		return nil, errf(ErrCorrupt, "manifest: "+format, args...)
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
	}
	nameLen := int(le.Uint16(b[72:]))
	blocks := int64(le.Uint32(b[76:]))
	extents := int64(le.Uint32(b[80:]))
	flags := le.Uint16(b[74:])
	if m.Version == 0 || m.Length <= 0 || m.Length > maxLength || nameLen == 0 || nameLen > MaxNameLen || flags > 1 {
		return bad("version %d, length %d, name of %d bytes, flags %#x", m.Version, m.Length, nameLen, flags)
	}
	want := int64(crc.TableSize(m.Length) / 8)
	if flags == 1 {
		m.Shift = b[84]
		if m.Shift < minBlockShift || m.Shift > maxBlockShift {
			return bad("block size 2^%d", m.Shift)
		}
		want = blockCount(m.Length, m.Shift)
	} else if b[84] != 0 {
		return bad("block size without BLOCKS")
	}
	if blocks != want {
		return bad("%d blocks for %d bytes, want %d", blocks, m.Length, want)
	}
	p := int64(manifestFixed)
	end := int64(len(b) - 4)
	if p+pad8(int64(nameLen))+8*blocks > end {
		return bad("truncated")
	}
	m.Name = string(b[p : p+int64(nameLen)])
	p += pad8(int64(nameLen))
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
		if p+extentFixed+pad8(k) > end {
			return bad("truncated extent %d", i)
		}
		e.Key = string(b[p+extentFixed : p+extentFixed+k])
		p += extentFixed + pad8(k)
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

// retry runs op until it succeeds, fails permanently (store.IsPermanent, or damage of
// the local copy: ErrCorrupt) or ctx ends, waiting longer after each transient failure
// (50 ms doubling to 5 s, with jitter).
// Each attempt gets its own deadline, long enough for size bytes at 10 MB/s plus a
// minute, so a connection that hangs is given up and tried again.
func retry(ctx context.Context, size int64, op func(ctx context.Context) error) error {
	wait := 50 * time.Millisecond
	per := time.Minute + time.Duration(size/10_000_000)*time.Second
	for {
		actx, cancel := context.WithTimeout(ctx, per)
		err := op(actx)
		cancel()
		if err == nil || store.IsPermanent(err) || errors.Is(err, ErrCorrupt) || errors.Is(err, errAbandoned) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// getAll reads a whole object, retrying transient errors.
func getAll(ctx context.Context, st store.Store, key string) ([]byte, error) {
	var out []byte
	err := retry(ctx, 0, func(ctx context.Context) error {
		rc, err := st.Get(ctx, key, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
		if err != nil {
			return err
		}
		if len(b) > maxManifest {
			return fmt.Errorf("%w: %s: object %q is larger than %d bytes", store.ErrInvalid, st, key, maxManifest)
		}
		out = b
		return nil
	})
	return out, err
}

// readManifest fetches and decodes the manifest under key.
func readManifest(ctx context.Context, st store.Store, key string) (*manifest, error) {
	b, err := getAll(ctx, st, key)
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s: %s)", err, st, key)
	}
	return m, nil
}

// remoteErr wraps a store error in ErrRemote with what was being done.
func remoteErr(st store.Store, err error, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s: %w", ErrRemote, st, fmt.Sprintf(format, args...), err)
}
