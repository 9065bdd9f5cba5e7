package s3_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/ckp-go/ckp/internal/s3test"
)

// benchSize is the size of the benchmarks' object: a large checkpoint, uploaded in
// four parts.
const benchSize = 64 << 20

// BenchmarkPut compares the Store's Put and Create of 64 MiB with the baseline, a
// direct minio-go PutObject of the same bytes to the same server.
// Keep runs short: go test ./store/s3 -run '^$' -bench Put -benchtime 3x
func BenchmarkPut(b *testing.B) {
	srv := s3test.Start(b)
	s := mustNew(b, config(srv, srv.Bucket(), "bench"))
	data := bytes.Repeat([]byte("checkpoint"), benchSize/10+1)[:benchSize]
	ctx := b.Context()
	b.Run("minio", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			_, err := srv.Client().PutObject(ctx, srv.Bucket(), "direct/put", bytes.NewReader(data), benchSize,
				minio.PutObjectOptions{ContentType: "application/octet-stream"})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			if err := s.Put(ctx, "put", bytes.NewReader(data), benchSize); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create", func(b *testing.B) {
		b.SetBytes(benchSize)
		i := 0
		for b.Loop() {
			if err := s.Create(ctx, fmt.Sprintf("create/%d", i), bytes.NewReader(data), benchSize); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkGet compares the Store's Get of 64 MiB with a direct minio-go GetObject.
func BenchmarkGet(b *testing.B) {
	srv := s3test.Start(b)
	s := mustNew(b, config(srv, srv.Bucket(), "bench"))
	data := bytes.Repeat([]byte("checkpoint"), benchSize/10+1)[:benchSize]
	ctx := b.Context()
	if err := s.Put(ctx, "obj", bytes.NewReader(data), benchSize); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.Run("minio", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			obj, err := srv.Client().GetObject(ctx, srv.Bucket(), "bench/obj", minio.GetObjectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.CopyBuffer(io.Discard, obj, buf); err != nil || n != benchSize {
				b.Fatal(n, err)
			}
			obj.Close()
		}
	})
	b.Run("store", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			rc, err := s.Get(ctx, "obj", 0, -1)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.CopyBuffer(io.Discard, rc, buf); err != nil || n != benchSize {
				b.Fatal(n, err)
			}
			rc.Close()
		}
	})
}
