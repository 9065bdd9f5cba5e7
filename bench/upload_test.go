package bench

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ckp-go/ckp/engine"
)

// BenchmarkUploadStreamed is the remote tier's own cost of sending a version of 32 MiB
// to a store that reads it in pieces: "save" saves with the tier off, "save+upload"
// saves and waits (Flush) until the version is committed to a store that reads its
// bytes in pieces of 64 KiB and drops them (DiscardStore). The difference is the
// upload: reading the version out of the data file and checking it.
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
				opts.Remote = &engine.Remote{Store: DiscardStore(nil), Keep: 2}
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
