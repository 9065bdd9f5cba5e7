package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/location"
	"github.com/ckp-go/ckp/store/mem"
	"github.com/ckp-go/ckp/store/s3"
)

// Remote is where the remote-tier workloads send versions: a store for the engine's
// remote tier, and the same place reached directly for the baselines (a file written
// and fsynced in the same directory; minio-go's PutObject and GetObject on the same
// bucket).
type Remote struct {
	Kind string // "dir" or "s3"
	Loc  string // the location, as given
	// NewStore returns a store in a fresh namespace (a subdirectory, a key prefix).
	NewStore func() (store.Store, error)
	// Put writes b as a new object the way a program without ckp would (the upload
	// baseline) and returns its name.
	Put func(ctx context.Context, b []byte) (string, error)
	// Get reads the object Put wrote into buf (the download baseline).
	Get func(ctx context.Context, name string, buf []byte) error
	// Close removes everything the workloads wrote.
	Close func() error
	// Cold makes the next reads of what the workloads wrote come from the disk, as on
	// a node that never read them (nil: not possible, e.g. a server's files).
	Cold func()
}

func randomName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// DirRemote sends versions to a directory: the engine through store.Dir, the baseline
// by writing a file there and fsyncing it.
func DirRemote(dir string) (*Remote, error) {
	root, err := os.MkdirTemp(dir, "ckpbench-remote-")
	if err != nil {
		return nil, err
	}
	n := 0
	return &Remote{
		Kind: "dir", Loc: dir,
		NewStore: func() (store.Store, error) {
			n++
			return store.Dir(filepath.Join(root, fmt.Sprintf("store-%d", n)))
		},
		Put: func(_ context.Context, b []byte) (string, error) {
			name := filepath.Join(root, "direct-"+randomName())
			f, err := os.Create(name)
			if err != nil {
				return "", err
			}
			_, err = f.Write(b)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return name, err
		},
		Get: func(_ context.Context, name string, buf []byte) error {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.ReadFull(f, buf)
			return err
		},
		Close: func() error { return os.RemoveAll(root) },
		Cold:  func() { DropCache(root) },
	}, nil
}

// S3Remote sends versions to "s3://bucket/prefix" at endpoint (keys from
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): the engine through store/s3, the
// baseline with minio-go's PutObject and GetObject. Everything goes under a fresh
// prefix below the location's, removed by Close.
func S3Remote(loc, endpoint string, insecure bool) (*Remote, error) {
	bucket, prefix, err := s3.ParseLocation(loc)
	if err != nil {
		return nil, err
	}
	if prefix != "" {
		prefix += "/"
	}
	prefix += "ckpbench-" + randomName()
	host := endpoint
	if host == "" {
		host = s3.DefaultEndpoint
	}
	client, err := minio.New(host, &minio.Options{
		Creds:  credentials.NewStaticV4(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")),
		Secure: !insecure,
	})
	if err != nil {
		return nil, err
	}
	n := 0
	return &Remote{
		Kind: "s3", Loc: loc,
		NewStore: func() (store.Store, error) {
			n++
			return location.Open(fmt.Sprintf("s3://%s/%s/store-%d", bucket, prefix, n), location.Options{Endpoint: endpoint, Insecure: insecure})
		},
		Put: func(ctx context.Context, b []byte) (string, error) {
			name := prefix + "/direct-" + randomName()
			_, err := client.PutObject(ctx, bucket, name, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{ContentType: "application/octet-stream"})
			return name, err
		},
		Get: func(ctx context.Context, name string, buf []byte) error {
			o, err := client.GetObject(ctx, bucket, name, minio.GetObjectOptions{})
			if err != nil {
				return err
			}
			defer o.Close()
			_, err = io.ReadFull(o, buf)
			return err
		},
		Close: func() error {
			ctx := context.Background()
			var errs []error
			for obj := range client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
				if obj.Err != nil {
					return obj.Err
				}
				errs = append(errs, client.RemoveObject(ctx, bucket, obj.Key, minio.RemoveObjectOptions{}))
			}
			return errors.Join(errs...)
		},
	}, nil
}

// Upload measures a save's way to the store as a program sees it: a File opened with a
// remote tier on a fresh store of r (default options: every version is uploaded and
// kept) saves cfg.Saves versions of cfg.Size bytes, different bytes each time, then
// Flush waits until every one is committed (its manifest created). The time runs from
// the first SaveAll until Flush returns: the local saves, the uploads that run behind
// them and the commit order are all in it. The Result holds one latency, that time,
// for cfg.Saves versions (Config.Regions) of cfg.Size bytes.
func Upload(cfg Config, r *Remote) (*Result, error) {
	dir, err := os.MkdirTemp(cfg.Dir, "run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, err := r.NewStore()
	if err != nil {
		return nil, err
	}
	f, err := engine.Open(filepath.Join(dir, "bench.ckp"), &engine.Options{Remote: &engine.Remote{Store: st}})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	region := make([]byte, cfg.Size)
	fillRegion(region, 0, 0)
	if _, err := f.Register("upload", region); err != nil {
		return nil, err
	}
	start := time.Now()
	for i := 0; i < cfg.Saves; i++ {
		fillRegion(region, 0, i+1)
		if err := f.SaveAll(); err != nil {
			return nil, err
		}
	}
	if err := f.Flush(context.Background()); err != nil {
		return nil, err
	}
	d := time.Since(start)
	return &Result{Variant: "engine save to commit", Config: Config{Size: cfg.Size, Regions: cfg.Saves}, Lat: []time.Duration{d}, Wall: d}, f.Close()
}

// UploadDirect is Upload's baseline: the same bytes written straight to r.
func UploadDirect(cfg Config, r *Remote) (*Result, error) {
	region := make([]byte, cfg.Size)
	fillRegion(region, 0, 0)
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < cfg.Saves; i++ {
		fillRegion(region, 0, i+1)
		if _, err := r.Put(ctx, region); err != nil {
			return nil, err
		}
	}
	d := time.Since(start)
	return &Result{Variant: "direct upload", Config: Config{Size: cfg.Size, Regions: cfg.Saves}, Lat: []time.Duration{d}, Wall: d}, nil
}

// RestoreNewNode measures a restart on a new node: a version of cfg.Size bytes is
// saved through a remote tier on r; then, cfg.Saves times, a File is opened on a fresh
// directory with the same store and restored into a region (RestoreAll(0) fetches the
// version from the store, which it alone holds). Each latency is one Open plus
// RestoreAll. Before each, the store's files leave the page cache (Remote.Cold), as on
// a node that never read them.
func RestoreNewNode(cfg Config, r *Remote) (*Result, error) {
	dir, err := os.MkdirTemp(cfg.Dir, "run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, err := r.NewStore()
	if err != nil {
		return nil, err
	}
	region := make([]byte, cfg.Size)
	fillRegion(region, 0, 1)
	f, err := engine.Open(filepath.Join(dir, "src.ckp"), &engine.Options{Remote: &engine.Remote{Store: st}})
	if err != nil {
		return nil, err
	}
	if _, err := f.Register("restore", region); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.SaveAll(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	res := &Result{Variant: "engine new node", Config: cfg}
	for i := 0; i < cfg.Warmup+cfg.Saves; i++ {
		node := filepath.Join(dir, fmt.Sprintf("node-%d", i))
		if err := os.Mkdir(node, 0o700); err != nil {
			return nil, err
		}
		clear(region)
		if r.Cold != nil {
			r.Cold()
		}
		t0 := time.Now()
		g, err := engine.Open(filepath.Join(node, "new.ckp"), &engine.Options{Remote: &engine.Remote{Store: st}})
		if err != nil {
			return nil, err
		}
		if _, err := g.Register("restore", region); err != nil {
			g.Close()
			return nil, err
		}
		if err := g.RestoreAll(0); err != nil {
			g.Close()
			return nil, err
		}
		d := time.Since(t0)
		if err := g.Close(); err != nil {
			return nil, err
		}
		os.RemoveAll(node)
		if i >= cfg.Warmup {
			res.Lat = append(res.Lat, d)
		}
	}
	return res, nil
}

// RestoreDirect is RestoreNewNode's baseline: the same bytes, written to r directly,
// read back into a region (from the disk, after Remote.Cold), cfg.Saves times.
func RestoreDirect(cfg Config, r *Remote) (*Result, error) {
	region := make([]byte, cfg.Size)
	fillRegion(region, 0, 1)
	ctx := context.Background()
	name, err := r.Put(ctx, region)
	if err != nil {
		return nil, err
	}
	res := &Result{Variant: "direct download", Config: cfg}
	for i := 0; i < cfg.Warmup+cfg.Saves; i++ {
		clear(region)
		if r.Cold != nil {
			r.Cold()
		}
		t0 := time.Now()
		if err := r.Get(ctx, name, region); err != nil {
			return nil, err
		}
		if i >= cfg.Warmup {
			res.Lat = append(res.Lat, time.Since(t0))
		}
	}
	return res, nil
}

// DiscardStore returns a store in memory that keeps every object but the bytes of data
// objects (keys under "d/", docs/REMOTE.md's layout), which it reads in pieces of 64
// KiB, as an S3 store's streaming body does, and drops: a remote tier over it does all
// its own work (pins, reads and checks, requests) while the store costs the machine
// nothing. With hold, it reads a data object of n bytes at a steady pace over hold(n),
// as a store of that speed on another machine would (the upload holds its version's
// slot that long). For measuring the tier's own cost, not for restoring.
func DiscardStore(hold func(n int64) time.Duration) store.Store {
	return discardStore{mem.New("discard"), hold}
}

type discardStore struct {
	*mem.Store
	hold func(n int64) time.Duration
}

func (d discardStore) Create(ctx context.Context, key string, body io.Reader, size int64) error {
	body, size, err := d.dropData(ctx, key, body, size)
	if err != nil {
		return err
	}
	return d.Store.Create(ctx, key, body, size)
}

func (d discardStore) Put(ctx context.Context, key string, body io.Reader, size int64) error {
	body, size, err := d.dropData(ctx, key, body, size)
	if err != nil {
		return err
	}
	return d.Store.Put(ctx, key, body, size)
}

// dropData reads the body of a data object to its end and returns an empty one
// instead; other bodies it returns as they are.
func (d discardStore) dropData(ctx context.Context, key string, body io.Reader, size int64) (io.Reader, int64, error) {
	if !strings.HasPrefix(key, "d/") {
		return body, size, nil
	}
	var hold time.Duration
	if d.hold != nil && size > 0 {
		hold = d.hold(size)
	}
	start := time.Now()
	piece := make([]byte, 64<<10)
	var n int64
	for {
		k, err := io.ReadFull(body, piece)
		n += int64(k)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return bytes.NewReader(nil), 0, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if hold > 0 {
			if wait := time.Duration(float64(hold)*float64(n)/float64(size)) - time.Since(start); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return nil, 0, context.Cause(ctx)
				}
			}
		}
	}
}

// RemoteStore returns a remote tier on a fresh store of r, for engine runs of cfg
// (Config.Remote).
func RemoteStore(r *Remote, every, keep int) (*engine.Remote, error) {
	st, err := r.NewStore()
	if err != nil {
		return nil, err
	}
	return &engine.Remote{Store: st, Every: every, Keep: keep}, nil
}
