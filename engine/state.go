package engine

// version is one kept version of a checkpoint, as the index describes it.
type version struct {
	num    uint64 // version number, 1..N
	off    int64  // payload offset in the data file
	length int64  // payload length
	hash   uint64 // payload hash
	time   int64  // unix nanoseconds
	txn    uint64 // transaction number
	size   int64  // slot size: footprint plus slack
	pos    int64  // index position (in records) where its transaction starts
}

func (v *version) slot() extent { return extent{v.off, v.off + v.size} }

// ckptState is everything the File knows about one checkpoint name, registered or not.
type ckptState struct {
	id    uint32
	name  string
	named bool      // the name's records are in the index
	vs    []version // kept versions are vs[head:], oldest first
	head  int
	next  uint64      // the next version number
	reg   *Checkpoint // the registered handle, or nil
}

func (s *ckptState) kept() []version { return s.vs[s.head:] }

func (s *ckptState) push(v version) {
	if len(s.vs) == cap(s.vs) && s.head > 0 {
		n := copy(s.vs, s.vs[s.head:])
		s.vs = s.vs[:n]
		s.head = 0
	}
	s.vs = append(s.vs, v)
	s.next = v.num + 1
}

// dropBelow forgets the kept versions numbered below first and returns them.
func (s *ckptState) dropBelow(first uint64) []version {
	k := s.kept()
	i := 0
	for i < len(k) && k[i].num < first {
		i++
	}
	s.head += i
	return k[:i]
}

// resolve maps an API version number (1..N absolute, 0..-(N-1) relative) to a kept
// version.
func (s *ckptState) resolve(v int) (*version, error) {
	k := s.kept()
	if len(k) == 0 {
		return nil, errf(ErrVersion, "checkpoint %q has no saved version", s.name)
	}
	if v <= 0 {
		i := len(k) - 1 + v
		if i < 0 {
			return nil, errf(ErrVersion, "version %d of %q: only %d kept", v, s.name, len(k))
		}
		return &k[i], nil
	}
	u := uint64(v)
	first, last := k[0].num, k[len(k)-1].num
	if u < first || u > last {
		if u < first && u >= 1 {
			return nil, errf(ErrVersion, "version %d of %q is no longer kept (kept: %d..%d)", v, s.name, first, last)
		}
		return nil, errf(ErrVersion, "version %d of %q does not exist (kept: %d..%d)", v, s.name, first, last)
	}
	// Versions are increasing; usually contiguous.
	if i := int(u - first); i < len(k) && k[i].num == u {
		return &k[i], nil
	}
	lo, hi := 0, len(k)
	for lo < hi {
		m := (lo + hi) / 2
		if k[m].num < u {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(k) && k[lo].num == u {
		return &k[lo], nil
	}
	return nil, errf(ErrVersion, "version %d of %q is not kept", v, s.name)
}
