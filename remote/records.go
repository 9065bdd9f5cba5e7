package remote

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/ckp-go/ckp/crc"
	"github.com/ckp-go/ckp/internal/base"
)

// The job's objects (docs/REMOTE.md, "The job protocol"): life records, log entries,
// the nodes of the join and completion trees (a rank's join record and version record
// are leaves), and each rank's cleaning mark. Every record is little-endian, starts
// with an 8-byte magic and a 4-byte format version, and ends with the CRC-32C of every
// byte before it.

// point is a version of a life: a restart point. {0, 0} means "start over".
type point struct{ life, v uint64 }

func (p point) String() string {
	if p.v == 0 {
		return "the start"
	}
	return fmt.Sprintf("version %d of life %d", p.v, p.life)
}

// treeArity is the number of children of a node of the job's trees (K).
const treeArity = 8

const (
	jobDir      = "job/"
	lifeHintKey = "job/life/hint"
)

func num20(n uint64) string { return fmt.Sprintf("%020d", n) }

func lifeKey(n uint64) string     { return jobDir + "life/" + num20(n) }
func logKey(n, seq uint64) string { return jobDir + "log/" + num20(n) + "/" + num20(seq) }
func logHintKey(n uint64) string  { return jobDir + "log/" + num20(n) + "/hint" }
func joinTree(n uint64) string    { return jobDir + "join/" + num20(n) }
func doneTree(n, v uint64) string { return jobDir + "done/" + num20(n) + "/" + num20(v) }
func cleanKey(rank int) string    { return jobDir + "clean/" + strconv.Itoa(rank) }

// geom is the shape of the job's trees: R leaves (the ranks), arity K.
type geom struct{ R, K int }

// depth is the level of the root (0 when R == 1: the leaf is the root).
func (g geom) depth() int {
	d, c := 0, g.R
	for c > 1 {
		c = (c + g.K - 1) / g.K
		d++
	}
	return d
}

// nodeKey is node idx of level lvl of tree: tree/<lvl>/<parent>/<idx>, so that the
// children of one parent share the prefix tree/<lvl>/<parent>/.
func (g geom) nodeKey(tree string, lvl, idx int) string {
	return fmt.Sprintf("%s/%d/%d/%d", tree, lvl, idx/g.K, idx)
}

func (g geom) rootKey(tree string) string { return g.nodeKey(tree, g.depth(), 0) }

func (g geom) childPrefix(tree string, lvl, parent int) string {
	return fmt.Sprintf("%s/%d/%d/", tree, lvl, parent)
}

// led lists the internal nodes (level >= 1) whose leftmost leaf is rank: the nodes that
// rank deletes when their tree goes.
func (g geom) led(tree string, rank int) []string {
	var out []string
	span := 1
	for lvl := 1; lvl <= g.depth(); lvl++ {
		span *= g.K
		if rank%span != 0 {
			break
		}
		out = append(out, g.nodeKey(tree, lvl, rank/span))
	}
	return out
}

// Record kinds, by magic.
var (
	lifeMagic  = [8]byte{'C', 'K', 'P', 'L', 'I', 'F', 'E', '1'}
	entryMagic = [8]byte{'C', 'K', 'P', 'L', 'O', 'G', 'E', '1'}
	joinMagic  = [8]byte{'C', 'K', 'P', 'J', 'O', 'I', 'N', '1'}
	nodeMagic  = [8]byte{'C', 'K', 'P', 'N', 'O', 'D', 'E', '1'}
	verMagic   = [8]byte{'C', 'K', 'P', 'V', 'R', 'E', 'C', '1'}
	cleanMagic = [8]byte{'C', 'K', 'P', 'C', 'L', 'E', 'A', 'N'}
)

const recordFormat = 1

// enc builds a record.
type enc struct{ b []byte }

func newRecord(magic [8]byte) *enc {
	e := &enc{b: append(make([]byte, 0, 128), magic[:]...)}
	e.u32(recordFormat)
	return e
}

func (e *enc) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) str(s string) {
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
}
func (e *enc) done() []byte {
	return binary.LittleEndian.AppendUint32(e.b, crc.CRC32C(0, e.b))
}

// dec reads a record; the first error sticks.
type dec struct {
	b   []byte
	p   int
	err error
}

func openRecord(b []byte, magic [8]byte, what string) *dec {
	d := &dec{b: b, p: 12}
	switch {
	case len(b) < 16:
		d.err = base.Errf(base.ErrCorrupt, "%s: %d bytes, too short", what, len(b))
	case [8]byte(b[:8]) != magic:
		d.err = base.Errf(base.ErrCorrupt, "%s: bad magic", what)
	case binary.LittleEndian.Uint32(b[8:]) != recordFormat:
		d.err = base.Errf(base.ErrCorrupt, "%s: unknown format version %d", what, binary.LittleEndian.Uint32(b[8:]))
	case crc.CRC32C(0, b[:len(b)-4]) != binary.LittleEndian.Uint32(b[len(b)-4:]):
		d.err = base.Errf(base.ErrCorrupt, "%s: checksum mismatch", what)
	}
	if d.err == nil {
		d.b = b[:len(b)-4]
	}
	return d
}

func (d *dec) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || d.p+n > len(d.b) {
		d.err = base.Errf(base.ErrCorrupt, "record truncated")
		return false
	}
	return true
}

func (d *dec) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	d.p += 8
	return binary.LittleEndian.Uint64(d.b[d.p-8:])
}

func (d *dec) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	d.p += 4
	return binary.LittleEndian.Uint32(d.b[d.p-4:])
}

func (d *dec) str(max int) string {
	n := int(d.u32())
	if d.err == nil && n > max {
		d.err = base.Errf(base.ErrCorrupt, "record: a string of %d bytes (at most %d)", n, max)
	}
	if !d.need(n) {
		return ""
	}
	d.p += n
	return string(d.b[d.p-n : d.p])
}

func (d *dec) end() error {
	if d.err == nil && d.p != len(d.b) {
		d.err = base.Errf(base.ErrCorrupt, "record: %d bytes left over", len(d.b)-d.p)
	}
	return d.err
}

// lifeRec is job/life/<n>: a life of the job. Its contents follow from n, the sealed
// head of life n-1 and the job's settings, so every creator writes the same bytes
// (except for another launch's id).
type lifeRec struct {
	n       uint64
	base    point  // the restart point the life starts from ({0,0}: start over)
	sealSeq uint64 // the seq of life n-1's seal entry (0 for life 1)
	ranks   int
	arity   int
	every   uint64
	launch  string // the creator's launch id ("" without launch ids)
}

func (l *lifeRec) encode() []byte {
	e := newRecord(lifeMagic)
	e.u64(l.n)
	e.u64(l.base.life)
	e.u64(l.base.v)
	e.u64(l.sealSeq)
	e.u32(uint32(l.ranks))
	e.u32(uint32(l.arity))
	e.u64(l.every)
	e.str(l.launch)
	return e.done()
}

func decodeLife(b []byte) (*lifeRec, error) {
	d := openRecord(b, lifeMagic, "life record")
	l := &lifeRec{n: d.u64(), base: point{d.u64(), d.u64()}, sealSeq: d.u64(), ranks: int(d.u32()), arity: int(d.u32()), every: d.u64()}
	l.launch = d.str(maxLaunch)
	if err := d.end(); err != nil {
		return nil, err
	}
	if l.n == 0 || l.ranks < 1 || l.ranks > MaxRanks || l.arity < 2 || l.arity > 64 || l.every < 1 || l.base.life >= l.n {
		return nil, base.Errf(base.ErrCorrupt, "life record: life %d of %d ranks, arity %d, every %d, base %v", l.n, l.ranks, l.arity, l.every, l.base)
	}
	return l, nil
}

// maxLaunch bounds a launch id.
const maxLaunch = 256

// logEntry is job/log/<n>/<seq> (and the log's hint): the state of life n after the
// entry: its restart point, and whether the entry seals the life.
type logEntry struct {
	seq    uint64
	sealed bool
	rp     point
	nonce  uint64 // the writer's session
}

func (e *logEntry) encode() []byte {
	r := newRecord(entryMagic)
	r.u64(e.seq)
	var s uint32
	if e.sealed {
		s = 1
	}
	r.u32(s)
	r.u64(e.rp.life)
	r.u64(e.rp.v)
	r.u64(e.nonce)
	return r.done()
}

func decodeEntry(b []byte) (*logEntry, error) {
	d := openRecord(b, entryMagic, "log entry")
	e := &logEntry{seq: d.u64()}
	s := d.u32()
	e.rp = point{d.u64(), d.u64()}
	e.nonce = d.u64()
	if err := d.end(); err != nil {
		return nil, err
	}
	if e.seq == 0 || s > 1 {
		return nil, base.Errf(base.ErrCorrupt, "log entry %d, kind %d", e.seq, s)
	}
	e.sealed = s == 1
	return e, nil
}

// A join record (a leaf of life n's join tree) and an internal node of either tree: who
// created it. A join record also says which rank and launch.
func joinRecord(rank int, nonce uint64, launch string) []byte {
	e := newRecord(joinMagic)
	e.u32(uint32(rank))
	e.u64(nonce)
	e.str(launch)
	return e.done()
}

func nodeRecord(nonce uint64) []byte {
	e := newRecord(nodeMagic)
	e.u64(nonce)
	return e.done()
}

// verRec is a rank's version record: the leaf of the completion tree of point (life,
// v), written when every checkpoint registered on the rank has v committed in the life.
// It names those checkpoints' manifests.
type verRec struct {
	rank  int
	at    point
	nonce uint64
	ckpts []verCkpt // sorted by name
}

type verCkpt struct {
	name     string
	manifest string
	hash     uint64 // the version's payload hash
}

func (r *verRec) encode() []byte {
	e := newRecord(verMagic)
	e.u32(uint32(r.rank))
	e.u64(r.at.life)
	e.u64(r.at.v)
	e.u64(r.nonce)
	e.u32(uint32(len(r.ckpts)))
	for _, c := range r.ckpts {
		e.str(c.name)
		e.str(c.manifest)
		e.u64(c.hash)
	}
	return e.done()
}

func decodeVerRec(b []byte) (*verRec, error) {
	d := openRecord(b, verMagic, "version record")
	r := &verRec{rank: int(d.u32()), at: point{d.u64(), d.u64()}, nonce: d.u64()}
	n := int(d.u32())
	if d.err == nil && n > len(b)/8 {
		d.err = base.Errf(base.ErrCorrupt, "version record: %d checkpoints in %d bytes", n, len(b))
	}
	for i := 0; i < n && d.err == nil; i++ {
		c := verCkpt{name: d.str(base.MaxNameLen), manifest: d.str(1024), hash: d.u64()}
		if d.err == nil && (c.name == "" || i > 0 && r.ckpts[i-1].name >= c.name) {
			d.err = base.Errf(base.ErrCorrupt, "version record: checkpoints out of order")
		}
		r.ckpts = append(r.ckpts, c)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if r.at.life == 0 || r.at.v == 0 || r.rank < 0 || r.rank >= MaxRanks {
		return nil, base.Errf(base.ErrCorrupt, "version record of rank %d at %v", r.rank, r.at)
	}
	return r, nil
}

// lookup returns the checkpoint called name, if the record holds it.
func (r *verRec) lookup(name string) (verCkpt, bool) {
	for _, c := range r.ckpts {
		if c.name == name {
			return c, true
		}
	}
	return verCkpt{}, false
}

func cleanRecord(n uint64) []byte {
	e := newRecord(cleanMagic)
	e.u64(n)
	return e.done()
}

func decodeClean(b []byte) (uint64, error) {
	d := openRecord(b, cleanMagic, "cleaning mark")
	n := d.u64()
	return n, d.end()
}
