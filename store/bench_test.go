package store_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckp-go/ckp/store"
)

const benchSize = 64 << 20

// BenchmarkDirPut compares Dir's Put and Create of 64 MiB with the baseline, a plain
// file write and fsync of the same bytes in the same directory.
// Keep runs short: go test ./store -run '^$' -bench DirPut -benchtime 3x
func BenchmarkDirPut(b *testing.B) {
	dir := b.TempDir()
	s, err := store.Dir(dir)
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("checkpoint"), benchSize/10+1)[:benchSize]
	ctx := b.Context()
	b.Run("file", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			f, err := os.Create(filepath.Join(dir, "plain"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(data); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("put", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			if err := s.Put(ctx, "put/obj", bytes.NewReader(data), benchSize); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create", func(b *testing.B) {
		b.SetBytes(benchSize)
		i := 0
		for b.Loop() {
			key := fmt.Sprintf("create/%d", i)
			if err := s.Create(ctx, key, bytes.NewReader(data), benchSize); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.Delete(ctx, key)
			b.StartTimer()
			i++
		}
	})
}
