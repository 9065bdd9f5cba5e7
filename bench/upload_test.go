package bench

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store/mem"
)

// pieceStore reads the body of every data object in pieces of 64 KiB, as an S3 store's
// streaming body does, and keeps none of its bytes (discardStore's purpose: the
// upload's own cost, without a store's).
type pieceStore struct{ *mem.Store }

func (s pieceStore) Create(ctx context.Context, key string, body io.Reader, size int64) error {
	if !strings.HasPrefix(key, "d/") {
		return s.Store.Create(ctx, key, body, size)
	}
	piece := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(body, piece); err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		} else if err != nil {
			return err
		}
	}
	return s.Store.Create(ctx, key, strings.NewReader(""), 0)
}

// BenchmarkUploadStreamed is the remote tier's own cost of sending a version of 32 MiB
// to a store that reads it in pieces: "save" saves with the tier off, "save+upload"
// saves and waits (Flush) until the version is committed to a store that reads and
// drops its bytes. The difference is the upload: reading the version out of the data
// file and checking it.
//
//	go test ./bench -run '^$' -bench UploadStreamed -count 6
func BenchmarkUploadStreamed(b *testing.B) {
	for _, upload := range []bool{false, true} {
		name := "save"
		if upload {
			name = "save+upload"
		}
		b.Run(name, func(b *testing.B) {
			opts := &engine.Options{KeepVersions: 2}
			if upload {
				opts.Remote = &engine.Remote{Store: pieceStore{mem.New("pieces")}, Keep: 2}
			}
			f, err := engine.Open(filepath.Join(b.TempDir(), "b.ckp"), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			region := make([]byte, 32<<20)
			c, err := f.Register("r", region)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(region)))
			for i := 0; b.Loop(); i++ {
				fillRegion(region, 0, i) // a new version each time (no upload is skipped as the same bytes)
				if err := c.Save(); err != nil {
					b.Fatal(err)
				}
				if err := f.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
