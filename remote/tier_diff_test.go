package remote_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
)

// TestRemoteDifferential: versions stored by blocks upload only the blocks their base
// in the store lacks, content-addressed; a new node restores every committed version
// byte-exact from manifests that name several objects; a restart on the same node
// carries on the chain in the store; store retention deletes objects no manifest names.
func TestRemoteDifferential(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			st := b.new(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "d.ckp")
			opts := engine.Options{Differential: true, NoTracking: true, KeepVersions: 3, Remote: &engine.Remote{Store: st, Keep: 4}}
			const n = 1<<20 + 777 // 257 blocks, a short last one
			w := openRemoteWriter(t, path, opts, n)
			region := w.regions[0]
			r := rand.New(rand.NewPCG(7, 7))
			model := map[int][]byte{}
			save := func(v int) {
				t.Helper()
				if v == 1 {
					for i := range region {
						region[i] = byte(r.Uint32())
					}
				} else {
					for k := 0; k < 5; k++ {
						region[r.IntN(len(region))]++
					}
				}
				if err := w.f.SaveAll(); err != nil {
					t.Fatalf("SaveAll %d: %v", v, err)
				}
				model[v] = bytes.Clone(region)
			}
			for v := 1; v <= 10; v++ {
				save(v)
			}
			ctx := context.Background()
			if err := w.f.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			// Only the changed blocks went up after the first version.
			data := storeDataBytes(t, st)
			if data > 2*n || data < n {
				t.Fatalf("the store holds %d bytes of data for 10 versions of %d bytes, 5 blocks apart", data, n)
			}
			objs, err := st.List(ctx, "d/")
			if err != nil || len(objs) < 10 {
				t.Fatalf("%d data objects for 10 versions (%v): deltas should be objects of their own", len(objs), err)
			}
			t.Logf("10 versions: %d data objects, %d bytes", len(objs), data)
			// A restart on the same node: the chain in the store goes on.
			if err := w.f.Close(); err != nil {
				t.Fatal(err)
			}
			w = openRemoteWriter(t, path, opts, n)
			region = w.regions[0]
			copy(region, model[10])
			for v := 11; v <= 14; v++ {
				save(v)
			}
			if err := w.f.Close(); err != nil {
				t.Fatal(err)
			}
			// A new node: every version the store keeps restores byte-exact.
			vs, err := engine.StoreVersions(ctx, st, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != 4 || vs[len(vs)-1].Version != 14 {
				t.Fatalf("store versions %+v, want 11..14", vs)
			}
			g := openRemoteWriter(t, filepath.Join(t.TempDir(), "new.ckp"), opts, n)
			defer g.f.Close()
			for _, sv := range vs {
				clear(g.regions[0])
				if err := g.f.RestoreAll(sv.Version); err != nil {
					t.Fatalf("new node RestoreAll(%d): %v", sv.Version, err)
				}
				if !bytes.Equal(g.regions[0], model[sv.Version]) {
					t.Fatalf("new node: version %d differs", sv.Version)
				}
				b, _, err := engine.ReadStoreVersion(ctx, st, 0, "r0", sv.Version)
				if err != nil || !bytes.Equal(b, model[sv.Version]) {
					t.Fatalf("ReadStoreVersion(%d): %v", sv.Version, err)
				}
			}
			rep, err := engine.VerifyStore(ctx, st, 0, nil)
			if err != nil || !rep.OK() {
				t.Fatalf("VerifyStore: %v %+v", err, rep)
			}
			// Retention kept 4 versions; their manifests name every object left.
			if data := storeDataBytes(t, st); data > 2*n {
				t.Fatalf("after retention the store holds %d bytes of data", data)
			}
		})
	}
}

// storeDataBytes sums the sizes of the data objects in st.
func storeDataBytes(t *testing.T, st store.Store) int64 {
	t.Helper()
	objs, err := st.List(context.Background(), "d/")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, o := range objs {
		if strings.HasPrefix(o.Key, "d/") {
			n += o.Size
		}
	}
	return n
}

// TestVerifyStoreDuringRetention: VerifyStore of a rank whose writer saves, uploads
// and deletes old versions at the same time reports no damage: a version deleted while
// it was checked is left out.
func TestVerifyStoreDuringRetention(t *testing.T) {
	st := dirBackend().new(t)
	w := openRemoteWriter(t, filepath.Join(t.TempDir(), "v.ckp"), engine.Options{KeepVersions: 1, Remote: &engine.Remote{Store: st, Keep: 1}}, 256<<10, 4096)
	defer w.f.Close()
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := 1; v <= 60; v++ {
			w.saveAll(t, v)
			if err := w.f.Flush(ctx); err != nil {
				t.Errorf("Flush: %v", err)
				return
			}
		}
	}()
	checks := 0
	for running := true; running; checks++ {
		select {
		case <-done:
			running = false
		default:
		}
		rep, err := engine.VerifyStore(ctx, st, 0, nil)
		if err != nil || !rep.OK() {
			t.Fatalf("VerifyStore during retention: %v %+v", err, rep.Damaged)
		}
	}
	t.Logf("%d checks", checks)
}
