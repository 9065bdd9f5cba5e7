package remote_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/remote"
)

// The job simulation's oracle: it watches every write as it takes effect in the store
// (reading the records by their layout in docs/REMOTE.md) and every call's answer, and
// checks the invariants:
//
//	I1 a rank's RestoreJob answers the base of the life it joined, and its regions then
//	   hold, byte for byte, what the process that committed that version in that life
//	   saved (every checkpoint, of one save of that process);
//	I2 the job's restart point can be restored by every rank: nothing a restore of it
//	   reads is deleted, and the tools read it back whole (checked now and then);
//	I3 the restart point never goes back: a restore or JobVersion never answers below
//	   a version that was complete before it began;
//	I4 nothing of an abandoned life counts: no log entry after a seal, a life begins at
//	   its predecessor's seal, a restored or answered version was logged complete;
//	IC a version is logged complete only when every rank's member of the life committed
//	   every checkpoint at it, all of one launch (with the bytes that member saved);
//	proto the log and the lives are built as REMOTE.md says: no entry after a seal, a
//	   life begins at its predecessor's seal, restart points grow along a log.
//
// IC and proto check the protocol's steps; I1-I4 its promises. With CKP_SIM_LAX=1 a run
// checks only the promises (to see what a broken step costs a program).

// The bytes a rank saves: a header naming (rank, checkpoint, version, generation),
// then bytes derived from the header. A generation is one program session of a rank
// (a RestoreJob): versions of two sessions never have equal bytes. A checkpoint whose
// bytes do not change between versions (version 0 in its header) lets versions share
// data objects. In a differential run a save rewrites the header and a few blocks
// (simFillSome), so the bytes also depend on what the region held before: the oracle
// keeps the hash of what each header was saved with (simOracle.saved).
const (
	simHdrLen = 32
	simBlock  = 4096 // a block of a differential save
)

var simMagic = []byte("CKPSIMv1")

type simHdr struct {
	rank, ckpt int
	v          uint64
	gen        int
}

func (h simHdr) String() string {
	return fmt.Sprintf("rank %d ckpt %d v%d gen %d", h.rank, h.ckpt, h.v, h.gen)
}

func simFill(p []byte, h simHdr) {
	copy(p, simMagic)
	binary.LittleEndian.PutUint32(p[8:], uint32(h.rank))
	binary.LittleEndian.PutUint32(p[12:], uint32(h.ckpt))
	binary.LittleEndian.PutUint64(p[16:], h.v)
	binary.LittleEndian.PutUint64(p[24:], uint64(h.gen))
	r := rand.New(rand.NewPCG(uint64(h.rank)<<32|uint64(h.ckpt), h.v<<32^uint64(h.gen)))
	for i := simHdrLen; i < len(p); i += 8 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], r.Uint64())
		copy(p[i:], b[:])
	}
}

// simFillSome writes h's header, the rest of block 0 and about a quarter of the other
// blocks, chosen and filled from h.
func simFillSome(p []byte, h simHdr) {
	seed := uint64(h.rank)<<32 | uint64(h.ckpt)
	pick := rand.New(rand.NewPCG(seed, h.v<<32^uint64(h.gen)^0x5eed))
	for b := 0; b*simBlock < len(p); b++ {
		if b > 0 && pick.IntN(4) != 0 {
			continue
		}
		blk := p[b*simBlock : min((b+1)*simBlock, len(p))]
		r := rand.New(rand.NewPCG(seed^uint64(b)<<48, h.v<<32^uint64(h.gen)))
		for i := 0; i < len(blk); i += 8 {
			var x [8]byte
			binary.LittleEndian.PutUint64(x[:], r.Uint64())
			copy(blk[i:], x[:])
		}
	}
	copy(p, simMagic)
	binary.LittleEndian.PutUint32(p[8:], uint32(h.rank))
	binary.LittleEndian.PutUint32(p[12:], uint32(h.ckpt))
	binary.LittleEndian.PutUint64(p[16:], h.v)
	binary.LittleEndian.PutUint64(p[24:], uint64(h.gen))
}

func simParseHdr(p []byte) (simHdr, bool) {
	if len(p) < simHdrLen || !bytes.Equal(p[:8], simMagic) {
		return simHdr{}, false
	}
	return simHdr{rank: int(binary.LittleEndian.Uint32(p[8:])), ckpt: int(binary.LittleEndian.Uint32(p[12:])),
		v: binary.LittleEndian.Uint64(p[16:]), gen: int(binary.LittleEndian.Uint64(p[24:]))}, true
}

// saved records the bytes a save of header h hands the engine.
func (o *simOracle) saved(h simHdr, p []byte) {
	x := xxhash.Sum64(p)
	if !slices.Contains(o.content[h], x) {
		o.content[h] = append(o.content[h], x)
	}
}

// simCheck decodes the header of p and checks every byte against it: against what a
// save of that header held.
func (o *simOracle) simCheck(p []byte) (simHdr, error) {
	h, ok := simParseHdr(p)
	if !ok {
		return h, fmt.Errorf("no header (%x)", p[:min(len(p), simHdrLen)])
	}
	if !slices.Contains(o.content[h], xxhash.Sum64(p)) {
		return h, fmt.Errorf("bytes after the header (%v) are not what a save of it held", h)
	}
	if !o.s.diff {
		want := make([]byte, len(p))
		simFill(want, h)
		if !bytes.Equal(want, p) {
			return h, fmt.Errorf("bytes after the header (%v) do not match it", h)
		}
	}
	return h, nil
}

type simPoint struct{ life, v uint64 }

func (p simPoint) String() string { return fmt.Sprintf("%d@%d", p.v, p.life) }

// Keys and records, read by their layout in docs/REMOTE.md.

func simSplit(key string) []string { return strings.Split(key, "/") }

func simNum(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// simLifeRecord decodes a life record: n and its base.
func simLifeRecord(b []byte) (n uint64, base simPoint, launch string, ok bool) {
	if len(b) < 68 || string(b[:8]) != "CKPLIFE1" {
		return 0, base, "", false
	}
	n = binary.LittleEndian.Uint64(b[12:])
	base = simPoint{binary.LittleEndian.Uint64(b[20:]), binary.LittleEndian.Uint64(b[28:])}
	l := int(binary.LittleEndian.Uint32(b[60:]))
	if 64+l > len(b) {
		return 0, base, "", false
	}
	return n, base, string(b[64 : 64+l]), true
}

// simLogEntry decodes a log entry.
func simLogEntry(b []byte) (seq uint64, seal bool, rp simPoint, ok bool) {
	if len(b) != 52 || string(b[:8]) != "CKPLOGE1" {
		return 0, false, rp, false
	}
	seq = binary.LittleEndian.Uint64(b[12:])
	seal = binary.LittleEndian.Uint32(b[20:]) == 1
	rp = simPoint{binary.LittleEndian.Uint64(b[24:]), binary.LittleEndian.Uint64(b[32:])}
	return seq, seal, rp, true
}

// simManifestObjects returns the data objects a manifest's extents name, in payload
// order, and the first extent's offset in its object.
func simManifestObjects(b []byte) ([]string, int64, bool) {
	if len(b) < 104 || string(b[:8]) != "CKPMANIF" {
		return nil, 0, false
	}
	n := int(binary.LittleEndian.Uint16(b[72:]))
	blocks := int(binary.LittleEndian.Uint32(b[76:]))
	ext := int(binary.LittleEndian.Uint32(b[80:]))
	p := 104 + (n+7)/8*8 + 8*blocks
	if ext == 0 {
		return nil, 0, false
	}
	var keys []string
	var first int64
	for e := range ext {
		if p+40 > len(b) {
			return nil, 0, false
		}
		if e == 0 {
			first = int64(binary.LittleEndian.Uint64(b[p+16:]))
		}
		kl := int(binary.LittleEndian.Uint16(b[p+32:]))
		if p+40+kl > len(b) {
			return nil, 0, false
		}
		keys = append(keys, string(b[p+40:p+40+kl]))
		p += 40 + (kl+7)/8*8
	}
	return keys, first, true
}

// What the oracle knows.

type simCommitKey struct {
	rank int
	life uint64
	ckpt int
	v    uint64
}

type simCommit struct {
	hdr  simHdr
	data []string // the data objects its manifest names
	proc *simProc
}

type simMember struct {
	proc *simProc
	gen  int
}

type simLog struct {
	seq    uint64
	sealed bool
	rp     simPoint
}

type simGenInfo struct {
	life     uint64 // the last life this generation joined
	restored bool   // its RestoreJob returned
	base     simPoint
}

type simOracle struct {
	s         *simRun
	lives     map[uint64]simPoint // life -> base
	launches  map[uint64]string
	logs      map[uint64]*simLog
	newest    uint64
	member    map[[2]uint64]simMember // (life, rank)
	gens      map[int]*simGenInfo
	dataHdr   map[string]simHdr
	committed map[simCommitKey]simCommit
	complete  map[simPoint]bool
	maxDone   uint64 // the newest version ever logged complete
	rp        simPoint
	protect   map[string]bool // what a restore of rp reads
	lastLive  int64           // the step of the last completion in the newest life
	nComplete int
	nRestore  int
	// checked: what each part of checkStore that passed read (the job's restart
	// point: part -1; rank r's checkpoint c: part r*64+c), for the restart point
	// checkedRP; a part is forgotten once a write touches what it read.
	checked   map[int]*simDeps
	checkedRP simPoint
	content   map[simHdr][]uint64 // the hashes of the bytes saves of a header held
}

func newSimOracle(s *simRun) *simOracle {
	return &simOracle{s: s, lives: map[uint64]simPoint{}, launches: map[uint64]string{}, logs: map[uint64]*simLog{},
		member: map[[2]uint64]simMember{}, gens: map[int]*simGenInfo{}, dataHdr: map[string]simHdr{},
		committed: map[simCommitKey]simCommit{}, complete: map[simPoint]bool{}, protect: map[string]bool{},
		checked: map[int]*simDeps{}, content: map[simHdr][]uint64{}}
}

func (o *simOracle) gen(g int) *simGenInfo {
	if o.gens[g] == nil {
		o.gens[g] = &simGenInfo{}
	}
	return o.gens[g]
}

// onApply sees a write take effect.
func (o *simOracle) onApply(op *simOp, existed bool) {
	s := o.s
	for part, d := range o.checked {
		if d.touches(op.key) {
			delete(o.checked, part)
		}
	}
	parts := simSplit(op.key)
	if op.kind == simDelete {
		if o.protect[op.key] {
			s.violation("I2", "%s deleted (by %s) while the restart point %v needs it", op.key, op.procName, o.rp)
		}
		return
	}
	if op.kind != simCreate || existed {
		return
	}
	switch {
	case parts[0] == "d" && len(parts) == 4:
		if h, ok := simParseHdr(op.body); ok {
			o.dataHdr[op.key] = h
		}
	case parts[0] == "m" && len(parts) == 5:
		rank, _ := strconv.Atoi(parts[1])
		life, _ := simNum(parts[2])
		v, _ := simNum(parts[4])
		ck, err := strconv.Atoi(strings.TrimPrefix(parts[3], "c"))
		keys, off, ok := simManifestObjects(op.body)
		key := ""
		if ok {
			key = keys[0]
		}
		h, known := o.dataHdr[key]
		if err != nil || !ok || off != 0 || !known {
			s.violation("IC", "manifest %s names %q at %d, which the oracle never saw created", op.key, key, off)
			return
		}
		if h.rank != rank || h.ckpt != ck || h.v != v && h.v != 0 {
			s.violation("I1", "manifest %s names the bytes of %v", op.key, h)
		}
		o.committed[simCommitKey{rank, life, ck, v}] = simCommit{hdr: h, data: keys, proc: op.proc}
	case len(parts) == 3 && parts[0] == "job" && parts[1] == "life" && parts[2] != "hint":
		o.onLife(op)
	case len(parts) == 4 && parts[0] == "job" && parts[1] == "log" && parts[3] != "hint":
		o.onEntry(op)
	case len(parts) == 6 && parts[0] == "job" && parts[1] == "join" && parts[3] == "0":
		life, _ := simNum(parts[2])
		rank, _ := strconv.Atoi(parts[5])
		o.member[[2]uint64{life, uint64(rank)}] = simMember{op.proc, op.gen}
		gi := o.gen(op.gen)
		if op.moving {
			// A move: the life it moves to must begin where it began.
			if base := o.lives[life]; base != gi.base {
				s.violation("I1", "%s (gen %d) moved to life %d, which begins at %v, not at its own %v", op.procName, op.gen, life, base, gi.base)
			}
		}
		gi.life = life
	}
}

func (o *simOracle) onLife(op *simOp) {
	s := o.s
	n, base, launch, ok := simLifeRecord(op.body)
	if !ok {
		s.violation("proto", "%s: a life record that does not decode", op.key)
		return
	}
	o.lives[n], o.launches[n] = base, launch
	if n != o.newest+1 {
		s.violation("proto", "life %d created after life %d", n, o.newest)
		return
	}
	if n > 1 {
		prev := o.logs[n-1]
		prevRP := o.lives[n-1]
		if prev != nil {
			prevRP = prev.rp
		}
		if prev == nil || !prev.sealed || prevRP != base {
			s.violation("proto", "life %d begins at %v, but life %d is not sealed there (log %+v)", n, base, n-1, prev)
		}
	}
	o.newest = n
	o.setRP(base)
}

func (o *simOracle) onEntry(op *simOp) {
	s := o.s
	parts := simSplit(op.key)
	n, _ := simNum(parts[2])
	seq, seal, rp, ok := simLogEntry(op.body)
	if !ok {
		s.violation("proto", "%s: a log entry that does not decode", op.key)
		return
	}
	lg := o.logs[n]
	if lg == nil {
		lg = &simLog{rp: o.lives[n]}
		o.logs[n] = lg
	}
	if seq != lg.seq+1 {
		return // an entry of a dead life's log cleaned, created again late: nothing reads it
	}
	if lg.sealed {
		s.violation("proto", "entry %d (%v) appended to life %d after its seal", seq, rp, n)
		return
	}
	lg.seq = seq
	if seal {
		if rp != lg.rp {
			s.violation("proto", "life %d sealed at %v, its head was %v", n, rp, lg.rp)
		}
		lg.sealed = true
		return
	}
	if rp.life != n || rp.v <= lg.rp.v && lg.rp.life == n {
		s.violation("proto", "life %d logs %v complete after %v", n, rp, lg.rp)
		return
	}
	o.checkComplete(rp)
	lg.rp = rp
	o.complete[rp] = true
	o.nComplete++
	o.maxDone = max(o.maxDone, rp.v)
	if n == o.newest {
		o.setRP(rp)
		o.lastLive = s.w.step
	}
}

// checkComplete: IC for a version logged complete.
func (o *simOracle) checkComplete(p simPoint) {
	s := o.s
	launch := -1
	for r := range s.R {
		m, ok := o.member[[2]uint64{p.life, uint64(r)}]
		if !ok {
			s.violation("IC", "%v logged complete, but rank %d never joined life %d", p, r, p.life)
			return
		}
		for c := range s.C {
			cm, ok := o.committed[simCommitKey{r, p.life, c, p.v}]
			switch {
			case !ok:
				s.violation("IC", "%v logged complete, but rank %d never committed checkpoint %d at it", p, r, c)
				return
			case cm.proc != m.proc:
				s.violation("IC", "%v logged complete, but rank %d's checkpoint %d was committed by %s, its member is %s", p, r, c, cm.proc.name, m.proc.name)
				return
			case cm.hdr.gen != m.gen:
				s.violation("IC", "%v logged complete, but rank %d's checkpoint %d holds the bytes of %v, its member is gen %d", p, r, c, cm.hdr, m.gen)
				return
			}
		}
		if launch >= 0 && m.proc.launch != launch {
			s.violation("I5", "%v logged complete from launches %d and %d (rank %d)", p, launch, m.proc.launch, r)
			return
		}
		launch = m.proc.launch
	}
}

func (o *simOracle) setRP(p simPoint) {
	s := o.s
	if p.v < o.rp.v {
		s.violation("I3", "the restart point went back from %v to %v", o.rp, p)
	}
	o.rp = p
	clear(o.protect)
	if p.v == 0 {
		return
	}
	for r := range s.R {
		o.protect[fmt.Sprintf("job/done/%020d/%020d/0/%d/%d", p.life, p.v, r/8, r)] = true
		for c := range s.C {
			o.protect[fmt.Sprintf("m/%d/%020d/c%d/%020d", r, p.life, c, p.v)] = true
			if cm, ok := o.committed[simCommitKey{r, p.life, c, p.v}]; ok {
				for _, k := range cm.data {
					o.protect[k] = true
				}
			}
		}
	}
}

// checkRestart: a process restored (or moved to) point p as life n's base.
func (o *simOracle) checkRestart(who string, n uint64, p simPoint, maxBefore uint64) {
	s := o.s
	base, ok := o.lives[n]
	switch {
	case !ok:
		s.violation("I1", "%s restored from life %d, which does not exist", who, n)
	case base != p:
		s.violation("I1", "%s restored %v in life %d, whose base is %v", who, p, n, base)
	case p.v < maxBefore:
		s.violation("I3", "%s restored %v, but version %d was complete before it began", who, p, maxBefore)
	case p.v > 0 && !o.complete[p]:
		s.violation("I4", "%s restored %v, which was never logged complete", who, p)
	}
}

// expect returns what rank r restores of checkpoint c at p.
func (o *simOracle) expect(r, c int, p simPoint) (simHdr, bool) {
	cm, ok := o.committed[simCommitKey{r, p.life, c, p.v}]
	return cm.hdr, ok
}

// onRestore checks a RestoreJob's answer and the restored regions.
func (o *simOracle) onRestore(p *simProc, v uint64, maxBefore uint64) {
	s := o.s
	o.nRestore++
	gi := o.gen(p.gen)
	base := o.lives[gi.life]
	if gi.life == 0 {
		s.violation("I1", "%s (gen %d) restored %d without joining a life", p.name, p.gen, v)
		return
	}
	if base.v != v {
		s.violation("I1", "%s (gen %d) restored %d, but the life it joined (%d) begins at %v", p.name, p.gen, v, gi.life, base)
		return
	}
	o.checkRestart(fmt.Sprintf("%s (gen %d)", p.name, p.gen), gi.life, base, maxBefore)
	gi.restored, gi.base = true, base
	if v == 0 {
		return
	}
	for c, region := range p.regions {
		want, ok := o.expect(p.rank, c, base)
		got, err := o.simCheck(region)
		switch {
		case !ok:
			s.violation("I1", "%s restored %v, which it never committed checkpoint %d of", p.name, base, c)
		case err != nil:
			s.violation("I1", "%s restored checkpoint %d at %v: %v", p.name, c, base, err)
		case got != want:
			s.violation("I1", "%s restored checkpoint %d at %v: %v, committed %v", p.name, c, base, got, want)
		}
	}
}

// checkStore (I2): the restart point, as the tools read it from the store, is the
// oracle's, and every rank's every checkpoint reads back at it as committed.
//
// Each part reads through a recorder: until a write touches what it read, and while
// the restart point stays, the part would read the same bytes again and reach the same
// verdict, so it is skipped.
func (o *simOracle) checkStore() {
	s := o.s
	if o.checkedRP != o.rp {
		clear(o.checked)
	}
	o.checkedRP = o.rp
	ctx := context.Background()
	part := func(id int, check func(ro readOnly) bool) bool {
		if o.checked[id] != nil {
			return true
		}
		deps := &simDeps{keys: map[string]bool{}}
		if !check(readOnly{Store: s.w.st, deps: deps}) {
			return false
		}
		o.checked[id] = deps
		return true
	}
	ok := part(-1, func(ro readOnly) bool {
		js, err := engine.InspectJob(ctx, ro, s.R)
		if err != nil {
			s.violation("I2", "InspectJob: %v", err)
			return false
		}
		if uint64(js.Version) != o.rp.v || o.rp.v > 0 && js.VersionLife != o.rp.life {
			s.violation("I2", "the store's restart point is %d@%d, the oracle's %v", js.Version, js.VersionLife, o.rp)
			return false
		}
		return true
	})
	if !ok || o.rp.v == 0 {
		return
	}
	for r := range s.R {
		for c := range s.C {
			ok := part(r*64+c, func(ro readOnly) bool {
				if c == 0 {
					key := fmt.Sprintf("job/done/%020d/%020d/0/%d/%d", o.rp.life, o.rp.v, r/8, r)
					if _, err := ro.Get(ctx, key, 0, 0); err != nil {
						s.violation("I2", "rank %d's version record of the restart point %v: %v", r, o.rp, err)
						return false
					}
				}
				b, _, err := engine.ReadStoreVersion(ctx, ro, r, simCkptName(c), int(o.rp.v))
				if err != nil {
					s.violation("I2", "rank %d cannot read checkpoint %d at the restart point %v: %v", r, c, o.rp, err)
					return false
				}
				want, _ := o.expect(r, c, o.rp)
				if got, err := o.simCheck(b); err != nil || got != want {
					s.violation("I2", "rank %d's checkpoint %d at the restart point %v reads back %v (%v), committed %v", r, c, o.rp, got, err, want)
					return false
				}
				return true
			})
			if !ok {
				return
			}
		}
	}
}

func simCkptName(c int) string { return "c" + strconv.Itoa(c) }

// isRestart tells ErrRestart.
func isRestart(err error) bool { return errors.Is(err, remote.ErrRestart) }
