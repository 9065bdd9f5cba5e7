package bench

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cespare/xxhash/v2"
	bolt "go.etcd.io/bbolt"
)

// The baselines: what a user would write instead of using ckp, each in a few honest
// lines. They save every region of the config in turn.

// RAM is the limit: copy + xxhash64 of each region into memory that is already faulted
// in (a preallocated buffer per region), hashing each 16 KiB piece just before copying
// it, on one goroutine.
var RAM = Variant{Name: "ram", Open: func(_ Config, _ string, regions [][]byte) (Saver, error) {
	s := &ramSaver{src: regions, dst: make([][]byte, len(regions))}
	for i, r := range regions {
		s.dst[i] = make([]byte, len(r))
		copy(s.dst[i], r) // fault it in
	}
	return s, nil
}}

type ramSaver struct {
	src, dst [][]byte
	sum      uint64
}

func (s *ramSaver) Save() error {
	for i, r := range s.src {
		s.sum += CopyHash(s.dst[i], r)
	}
	return nil
}

func (s *ramSaver) Close() error { return nil }

// CopyHash copies src to dst and returns the xxhash64 of src, 16 KiB at a time.
func CopyHash(dst, src []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	for i := 0; i < len(src); i += 16 << 10 {
		e := min(i+16<<10, len(src))
		d.Write(src[i:e])
		copy(dst[i:e], src[i:e])
	}
	return d.Sum64()
}

// Append is the hand-written append: xxhash64 of the region, then one pwrite of the
// region and one of a 16-byte trailer (hash and length) at the end of a file; with
// sync, fdatasync after each save.
var (
	Append     = Variant{Name: "append", Open: openAppend(false)}
	AppendSync = Variant{Name: "append+fdatasync", Open: openAppend(true)}
)

func openAppend(sync bool) func(Config, string, [][]byte) (Saver, error) {
	return func(_ Config, dir string, regions [][]byte) (Saver, error) {
		f, err := os.OpenFile(filepath.Join(dir, "append.bin"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, err
		}
		return &appendSaver{f: f, regions: regions, sync: sync}, nil
	}
}

type appendSaver struct {
	f       *os.File
	regions [][]byte
	off     int64
	sync    bool
}

func (s *appendSaver) Save() error {
	var tr [16]byte
	for _, r := range s.regions {
		binary.LittleEndian.PutUint64(tr[0:], xxhash.Sum64(r))
		binary.LittleEndian.PutUint64(tr[8:], uint64(len(r)))
		if _, err := s.f.WriteAt(r, s.off); err != nil {
			return err
		}
		if _, err := s.f.WriteAt(tr[:], s.off+int64(len(r))); err != nil {
			return err
		}
		s.off += int64(len(r)) + int64(len(tr))
	}
	if s.sync {
		return s.f.Sync()
	}
	return nil
}

func (s *appendSaver) Close() error { return s.f.Close() }

// Rename is the Go idiom for replacing a file atomically: write the regions (with a
// hash each) to a temporary file, fsync it, rename it over the checkpoint (and fsync
// the directory, without which the rename is not durable).
var Rename = Variant{Name: "rename", Open: func(_ Config, dir string, regions [][]byte) (Saver, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	return &renameSaver{dir: dir, d: d, regions: regions}, nil
}}

type renameSaver struct {
	dir     string
	d       *os.File
	regions [][]byte
}

func (s *renameSaver) Save() error {
	tmp := filepath.Join(s.dir, "ckpt.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	var tr [8]byte
	for _, r := range s.regions {
		binary.LittleEndian.PutUint64(tr[:], xxhash.Sum64(r))
		if _, err := f.Write(r); err != nil {
			f.Close()
			return err
		}
		if _, err := f.Write(tr[:]); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "ckpt")); err != nil {
		return err
	}
	return s.d.Sync()
}

func (s *renameSaver) Close() error { return s.d.Close() }

// Bolt stores each region as a value under the key (version, region) in a bbolt
// bucket, one transaction per save; sync selects bbolt's default fsync per commit,
// otherwise NoSync.
var (
	Bolt       = Variant{Name: "bbolt", Open: openBolt(true)}
	BoltNoSync = Variant{Name: "bbolt-nosync", Open: openBolt(false)}
)

func openBolt(sync bool) func(Config, string, [][]byte) (Saver, error) {
	return func(_ Config, dir string, regions [][]byte) (Saver, error) {
		db, err := bolt.Open(filepath.Join(dir, "bench.db"), 0o600, &bolt.Options{NoSync: !sync, NoFreelistSync: true})
		if err != nil {
			return nil, err
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists([]byte("ckpt"))
			return err
		}); err != nil {
			db.Close()
			return nil, err
		}
		return &boltSaver{db: db, regions: regions}, nil
	}
}

type boltSaver struct {
	db      *bolt.DB
	regions [][]byte
	version uint64
}

func (s *boltSaver) Save() error {
	s.version++
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("ckpt"))
		for i, r := range s.regions {
			var k [12]byte
			binary.BigEndian.PutUint64(k[:], s.version)
			binary.BigEndian.PutUint32(k[8:], uint32(i))
			if err := b.Put(k[:], r); err != nil {
				return fmt.Errorf("put: %w", err)
			}
		}
		return nil
	})
}

func (s *boltSaver) Close() error { return s.db.Close() }
