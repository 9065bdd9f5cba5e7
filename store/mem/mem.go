// Package mem is a store.Store held in memory: a sorted map of keys to bytes, safe for
// concurrent use, as consistent as a store can be (every operation is atomic and
// visible to every later one). It passes the conformance suite (store/storetest).
//
// It serves tests and simulations that want a store without a disk or a server, and
// that count or inject faults around it (Counter, in this package). Like the
// directory store, it refuses a key that is a whole-segment prefix of another key, so
// that code tested on it runs on file-system-backed stores too.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/internal/body"
)

// Store is an in-memory store.Store.
type Store struct {
	name string
	mu   sync.RWMutex
	objs map[string]object
	keys []string // sorted
}

type object struct {
	b   []byte
	mod time.Time
}

// New returns an empty store; name appears in its String ("mem:name").
func New(name string) *Store {
	return &Store{name: name, objs: map[string]object{}}
}

// String names the store.
func (s *Store) String() string { return "mem:" + s.name }

// Create writes the object only if no object exists under key.
func (s *Store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.write(ctx, "create", key, r, size)
}

// Put writes or replaces the object.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.write(ctx, "put", key, r, size)
}

func (s *Store) write(ctx context.Context, op, key string, r io.Reader, size int64) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("%w: %s: %s %q: negative size %d", store.ErrInvalid, s, op, key, size)
	}
	b, err := io.ReadAll(body.NewReader(ctx, r, size))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %s %q: %w", s, op, key, ctx.Err())
		}
		return fmt.Errorf("%w: %s: %s %q: %w", store.ErrInvalid, s, op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s %q: %w", s, op, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[key]; ok {
		if op == "create" {
			return fmt.Errorf("%w: %s: create %q", store.ErrExists, s, key)
		}
	} else {
		if err := s.conflict(key); err != nil {
			return fmt.Errorf("%w: %s: %s %q: %s", store.ErrInvalid, s, op, key, err)
		}
		i := sort.SearchStrings(s.keys, key)
		s.keys = append(s.keys, "")
		copy(s.keys[i+1:], s.keys[i:])
		s.keys[i] = key
	}
	s.objs[key] = object{b: b, mod: time.Now()}
	return nil
}

// conflict says why key cannot be an object beside those there: it is a whole-segment
// prefix of one, or one is of it. Caller holds s.mu.
func (s *Store) conflict(key string) error {
	i := sort.SearchStrings(s.keys, key+"/")
	if i < len(s.keys) && strings.HasPrefix(s.keys[i], key+"/") {
		return fmt.Errorf("an object exists under %q", s.keys[i])
	}
	for j := range len(key) {
		if key[j] != '/' {
			continue
		}
		if _, ok := s.objs[key[:j]]; ok {
			return fmt.Errorf("%q is an object", key[:j])
		}
	}
	return nil
}

// Get returns n bytes of the object from off (n < 0: to the end).
func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("%w: %s: get %q: negative offset %d", store.ErrInvalid, s, key, off)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: get %q: %w", s, key, err)
	}
	s.mu.RLock()
	o, ok := s.objs[key]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s: get %q", store.ErrNotExist, s, key)
	}
	size := int64(len(o.b))
	if err := store.CheckRange(off, n, size); err != nil {
		return nil, fmt.Errorf("%s: get %q: %w", s, key, err)
	}
	if n < 0 {
		n = size - off
	}
	return io.NopCloser(bytes.NewReader(o.b[off : off+n])), nil
}

// List returns the objects whose keys start with prefix, sorted by key.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	if err := store.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: list %q: %w", s, prefix, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []store.Object{}
	for i := sort.SearchStrings(s.keys, prefix); i < len(s.keys) && strings.HasPrefix(s.keys[i], prefix); i++ {
		o := s.objs[s.keys[i]]
		out = append(out, store.Object{Key: s.keys[i], Size: int64(len(o.b)), Modified: o.mod})
	}
	return out, nil
}

// Delete removes the object; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: delete %q: %w", s, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[key]; !ok {
		return nil
	}
	delete(s.objs, key)
	i := sort.SearchStrings(s.keys, key)
	s.keys = append(s.keys[:i], s.keys[i+1:]...)
	return nil
}
