package mem_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/ckp-go/ckp/store/mem"
)

// TestCounter: requests count under the label of their context, else the Counter's,
// by kind, with the keys listings return; requests without a label are not counted.
func TestCounter(t *testing.T) {
	c := mem.NewCounter(mem.New("count"))
	ctx := context.Background()
	put := func(ctx context.Context, key string) {
		if err := c.Create(ctx, key, bytes.NewReader([]byte("x")), 1); err != nil {
			t.Fatal(err)
		}
	}
	put(ctx, "a/1") // no label: not counted
	c.SetLabel("op")
	put(ctx, "a/2")
	if err := c.Put(ctx, "a/3", bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(ctx, "a/2", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r)
	r.Close()
	if _, err := c.List(ctx, "a/"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(mem.WithLabel(ctx, "other"), "a/1"); err != nil {
		t.Fatal(err)
	}
	c.SetLabel("")
	c.Delete(ctx, "a/2")
	got := c.Counts()
	op, other := got["op"], got["other"]
	if len(got) != 2 || op.Requests["create"] != 1 || op.Requests["put"] != 1 || op.Requests["get"] != 1 ||
		op.Requests["list"] != 1 || op.Listed != 3 || op.Total() != 4 || other.Requests["delete"] != 1 || other.Total() != 1 {
		t.Fatalf("counts %+v", got)
	}
}
