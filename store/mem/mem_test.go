package mem_test

import (
	"testing"

	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/mem"
	"github.com/ckp-go/ckp/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return mem.New(t.Name()) })
}

func TestPrefixConflicts(t *testing.T) {
	s := mem.New("x")
	ctx := t.Context()
	if err := storetest.RetryCreate(ctx, s, "a/b/c", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "a/b"} {
		if err := storetest.RetryCreate(ctx, s, k, []byte("1")); err == nil {
			t.Fatalf("%q created beside a/b/c", k)
		}
	}
	if err := storetest.RetryCreate(ctx, s, "a/b/c/d", []byte("1")); err == nil {
		t.Fatal("a/b/c/d created beside a/b/c")
	}
	if err := storetest.RetryCreate(ctx, s, "a/bc", []byte("1")); err != nil {
		t.Fatalf("a/bc beside a/b/c: %v", err)
	}
}
