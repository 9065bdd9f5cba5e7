package mem

import (
	"context"
	"io"
	"maps"
	"sync"

	"github.com/ckp-go/ckp/store"
)

// Counter is a store.Store that counts the requests made through it, and the keys its
// listings return, under the label of the operation under way: the label a request's
// context carries (WithLabel), else the one last set (SetLabel). Requests without a
// label are not counted. It is safe for concurrent use.
type Counter struct {
	store.Store
	mu     sync.Mutex
	label  string
	counts map[string]*Count
}

// Count is what a Counter counted under one label.
type Count struct {
	Requests map[string]int // by kind: "create", "put", "get", "list", "delete"
	Listed   int            // keys the listings returned
}

// Total is the number of requests of every kind.
func (c Count) Total() int {
	n := 0
	for _, k := range c.Requests {
		n += k
	}
	return n
}

// NewCounter counts the requests made to st through it.
func NewCounter(st store.Store) *Counter {
	return &Counter{Store: st, counts: map[string]*Count{}}
}

type labelKey struct{}

// WithLabel returns ctx labelled: requests made with it count under label, whatever
// the Counter's own label.
func WithLabel(ctx context.Context, label string) context.Context {
	return context.WithValue(ctx, labelKey{}, label)
}

// SetLabel sets the label of the requests made without one in their context ("" stops
// counting them).
func (c *Counter) SetLabel(label string) {
	c.mu.Lock()
	c.label = label
	c.mu.Unlock()
}

// Counts returns what was counted, by label.
func (c *Counter) Counts() map[string]Count {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]Count, len(c.counts))
	for l, n := range c.counts {
		out[l] = Count{Requests: maps.Clone(n.Requests), Listed: n.Listed}
	}
	return out
}

func (c *Counter) count(ctx context.Context, kind string, listed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	label := c.label
	if l, ok := ctx.Value(labelKey{}).(string); ok {
		label = l
	}
	if label == "" {
		return
	}
	n := c.counts[label]
	if n == nil {
		n = &Count{Requests: map[string]int{}}
		c.counts[label] = n
	}
	n.Requests[kind]++
	n.Listed += listed
}

// Create counts a create and passes it on.
func (c *Counter) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	c.count(ctx, "create", 0)
	return c.Store.Create(ctx, key, r, size)
}

// Put counts a put and passes it on.
func (c *Counter) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	c.count(ctx, "put", 0)
	return c.Store.Put(ctx, key, r, size)
}

// Get counts a get and passes it on.
func (c *Counter) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.count(ctx, "get", 0)
	return c.Store.Get(ctx, key, off, n)
}

// List counts a listing and the keys it returns.
func (c *Counter) List(ctx context.Context, prefix string) ([]store.Object, error) {
	objs, err := c.Store.List(ctx, prefix)
	c.count(ctx, "list", len(objs))
	return objs, err
}

// Delete counts a delete and passes it on.
func (c *Counter) Delete(ctx context.Context, key string) error {
	c.count(ctx, "delete", 0)
	return c.Store.Delete(ctx, key)
}
