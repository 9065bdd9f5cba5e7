package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/remote"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/location"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		in      string
		want    engine.Options
		wantErr string // a part of the message; "" means no error
	}{
		{in: "", want: engine.Options{}},
		{in: " \t\n", want: engine.Options{}},
		{in: "sync=none", want: engine.Options{Sync: engine.SyncNone}},
		{in: "sync=async", want: engine.Options{Sync: engine.SyncAsync}},
		{in: "sync=always", want: engine.Options{Sync: engine.SyncAlways}},
		{in: "sync=every:7", want: engine.Options{Sync: engine.SyncEvery(7)}},
		{in: "sync=every:1", want: engine.Options{Sync: engine.SyncAlways}},
		{in: "sync=interval:1m30s", want: engine.Options{Sync: engine.SyncInterval(90 * time.Second)}},
		{in: "keep=3 workers=2", want: engine.Options{KeepVersions: 3, Workers: 2}},
		{in: "sync=always,keep=2", want: engine.Options{Sync: engine.SyncAlways, KeepVersions: 2}},
		{in: "sync=every:4, keep=2 ,workers=1,", want: engine.Options{Sync: engine.SyncEvery(4), KeepVersions: 2, Workers: 1}},
		{in: ",,", want: engine.Options{}},
		{in: "sync=always;keep=2", wantErr: "sync=always;keep=2: want none, async, always, every:N or interval:DURATION (options are key=value pairs separated by spaces or commas)"},
		{in: "keep=2;sync=none", wantErr: "keep=2;sync=none: want a whole number of at least 0 (options are key=value pairs separated by spaces or commas)"},
		{in: "keep=2 sync", wantErr: `"sync" is not key=value (options are key=value pairs separated by spaces or commas)`},
		{in: "  keep=0\tsync=interval:20ms  ", want: engine.Options{Sync: engine.SyncInterval(20 * time.Millisecond)}},
		{in: "max_size=3000000 differential=1 block_size=16384", want: engine.Options{MaxSize: 3000000, Differential: true, BlockSize: 16384}},
		{in: "differential=0", want: engine.Options{}},
		{in: "differential=maybe", wantErr: "differential=maybe: want 0 or 1"},
		{in: "max_size=-1", wantErr: "max_size=-1"},

		{in: "colour=blue", wantErr: `unknown key "colour" (known keys: sync, keep, workers, max_size, differential, block_size, remote,`},
		{in: "Sync=none", wantErr: `unknown key "Sync"`},
		{in: "keep", wantErr: `"keep" is not key=value`},
		{in: "=1", wantErr: "not key=value"},
		{in: "keep=1 keep=1", wantErr: `key "keep" given twice`},
		{in: "sync=", wantErr: "want none, async, always"},
		{in: "sync=never", wantErr: "sync=never"},
		{in: "sync=always:1", wantErr: "sync=always:1"},
		{in: "sync=every", wantErr: "want none, async"},
		{in: "sync=every:0", wantErr: "every:N needs a whole number"},
		{in: "sync=every:-3", wantErr: "every:N needs"},
		{in: "sync=every:2.5", wantErr: "every:N needs"},
		{in: "sync=interval:0", wantErr: "positive duration"},
		{in: "sync=interval:-1s", wantErr: "positive duration"},
		{in: "sync=interval:5", wantErr: "positive duration"},
		{in: "keep=-1", wantErr: "keep=-1: want a whole number"},
		{in: "keep=", wantErr: "keep=: want"},
		{in: "workers=x", wantErr: "workers=x"},

		// Remote keys without remote=: the message names the first one.
		{in: "endpoint=127.0.0.1:9000", wantErr: "endpoint= needs remote="},
		{in: "keep=2 insecure=1", wantErr: "insecure= needs remote="},
		{in: "every=10 rank=1 ranks=2", wantErr: "every= needs remote="},
		{in: "rank=3", wantErr: "rank= needs remote="},
		{in: "ranks=4", wantErr: "ranks= needs remote="},
		{in: "region=eu-west-1", wantErr: "region= needs remote="},
		{in: "keep_remote=1", wantErr: "keep_remote= needs remote="},
		{in: "max_pending=100", wantErr: "max_pending= needs remote="},
		{in: "timeout=1s", wantErr: "timeout= needs remote="},
		{in: "launch=job-7", wantErr: "launch= needs remote="},
		{in: "remote=", wantErr: "remote=: want a location"},
		// Bad values.
		{in: "remote=/srv/ckp every=-1", wantErr: "every=-1"},
		{in: "remote=/srv/ckp rank=x ranks=2", wantErr: "rank=x"},
		{in: "remote=/srv/ckp rank=-1 ranks=2", wantErr: "rank=-1"},
		{in: "remote=/srv/ckp ranks=0", wantErr: "ranks=0: want a whole number of at least 1"},
		{in: "remote=/srv/ckp rank=4 ranks=4", wantErr: "rank=4 is not below ranks=4"},
		{in: "remote=/srv/ckp rank=1", wantErr: "rank=1 needs ranks="},
		{in: "remote=/srv/ckp keep_remote=-2", wantErr: "keep_remote=-2"},
		{in: "remote=/srv/ckp max_pending=0", wantErr: "max_pending=0"},
		{in: "remote=/srv/ckp timeout=0", wantErr: "timeout=0: want a positive duration"},
		{in: "remote=/srv/ckp timeout=10", wantErr: "timeout=10"},
		{in: "remote=/srv/ckp launch=", wantErr: "launch=: want an id"},
		{in: "remote=/srv/ckp launch=" + strings.Repeat("x", remote.MaxLaunch+1), wantErr: "launch= of 257 bytes: at most 256"},
		{in: "remote=s3://b endpoint=", wantErr: "endpoint=: want host:port"},
		{in: "remote=s3://b region=", wantErr: "region=: want"},
		{in: "remote=s3://b insecure=2", wantErr: "insecure=2: want 0 or 1"},
		{in: "remote=/srv/ckp remote=/srv/other", wantErr: `key "remote" given twice`},
		// S3 settings with a directory.
		{in: "remote=/srv/ckp endpoint=127.0.0.1:9000", wantErr: "endpoint= is for an s3:// remote, not remote=/srv/ckp"},
		{in: "insecure=1 remote=dir:///srv/ckp", wantErr: "insecure= is for an s3:// remote"},
		{in: "remote=/srv/ckp region=x", wantErr: "region= is for an s3:// remote"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			o, err := parseOptions(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, engine.ErrInvalid) {
					t.Fatalf("parseOptions(%q) = %v, want ErrInvalid mentioning %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseOptions(%q): %v", tt.in, err)
			}
			if o.engine != tt.want {
				t.Fatalf("parseOptions(%q) = %+v, want %+v", tt.in, o.engine, tt.want)
			}
		})
	}
}

// TestParseRemoteOptions: the remote tier's settings, in any order, with the rest.
func TestParseRemoteOptions(t *testing.T) {
	tests := []struct {
		in   string
		want remoteOptions
		keep int // the engine's KeepVersions
	}{
		{in: "remote=/srv/ckp", want: remoteOptions{location: "/srv/ckp"}},
		{in: "remote=dir:///srv/ckp every=0", want: remoteOptions{location: "dir:///srv/ckp"}},
		{in: "rank=2 keep=3 ranks=4 remote=/srv/ckp every=10", keep: 3,
			want: remoteOptions{location: "/srv/ckp", tier: engine.Remote{Rank: 2, Ranks: 4, Every: 10}}},
		{in: "remote=/srv/ckp rank=0 ranks=1 keep_remote=5 max_pending=4096 timeout=1m30s",
			want: remoteOptions{location: "/srv/ckp", tier: engine.Remote{Ranks: 1, Keep: 5, MaxPending: 4096, Timeout: 90 * time.Second}}},
		{in: "remote=s3://bucket/run/42 endpoint=127.0.0.1:9000 insecure=1 region=eu-west-1",
			want: remoteOptions{location: "s3://bucket/run/42", reach: location.Options{Endpoint: "127.0.0.1:9000", Insecure: true, Region: "eu-west-1"}}},
		{in: "launch=4242.1 remote=/srv/ckp ranks=2",
			want: remoteOptions{location: "/srv/ckp", tier: engine.Remote{Ranks: 2, Launch: "4242.1"}}},
		{in: "remote=/srv/ckp launch=" + strings.Repeat("x", remote.MaxLaunch),
			want: remoteOptions{location: "/srv/ckp", tier: engine.Remote{Launch: strings.Repeat("x", remote.MaxLaunch)}}},
		{in: "insecure=0 endpoint=https://s3.example.com remote=s3://bucket",
			want: remoteOptions{location: "s3://bucket", reach: location.Options{Endpoint: "https://s3.example.com"}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			o, err := parseOptions(tt.in)
			if err != nil {
				t.Fatalf("parseOptions(%q): %v", tt.in, err)
			}
			if o.remote == nil || *o.remote != tt.want || o.engine.KeepVersions != tt.keep || o.engine.Remote != nil {
				t.Fatalf("parseOptions(%q) = %+v, remote %+v; want remote %+v", tt.in, o.engine, o.remote, tt.want)
			}
		})
	}
	if o, err := parseOptions("keep=2"); err != nil || o.remote != nil {
		t.Fatalf("keep=2: remote %+v, %v", o.remote, err)
	}
}

// TestEngineOptions: the store is built from remote= without contacting it; a
// malformed location is ErrInvalid, a directory that cannot be created ErrRemote;
// timeout= bounds the calls that wait for the store.
func TestEngineOptions(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "id")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	for _, tt := range []struct {
		in, wantStore string
	}{
		{"remote=" + dir + "/a rank=1 ranks=2 every=3 keep_remote=4 max_pending=5 timeout=6s", "dir:" + dir + "/a"},
		{"remote=dir://" + dir + "/b", "dir:" + dir + "/b"},
		{"remote=s3://bucket/p endpoint=127.0.0.1:1 insecure=1", "s3://bucket/p"},
	} {
		o, err := parseOptions(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		eo, err := o.engineOptions()
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		r := eo.Remote
		if r == nil || !strings.HasPrefix(r.Store.String(), tt.wantStore) {
			t.Fatalf("%s: remote %+v, want a store %s", tt.in, r, tt.wantStore)
		}
		want := o.remote.tier
		want.Store = r.Store
		if *r != want {
			t.Fatalf("%s: remote %+v, want %+v", tt.in, *r, want)
		}
	}
	o, _ := parseOptions("remote=" + dir + "/a timeout=6s")
	if got := o.remoteTimeout(); got != 6*time.Second {
		t.Fatalf("timeout=6s: %v", got)
	}
	if o, _ := parseOptions(""); o.remoteTimeout() != engine.DefaultRemoteTimeout {
		t.Fatalf("no timeout=: %v", o.remoteTimeout())
	}
	if eo, err := (&openOptions{engine: engine.Options{KeepVersions: 3}}).engineOptions(); err != nil || eo.Remote != nil || eo.KeepVersions != 3 {
		t.Fatalf("no remote: %+v, %v", eo, err)
	}

	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		in      string
		wantErr error
		msg     string
	}{
		{"remote=ftp://host/x", engine.ErrInvalid, "only s3:// and directories"},
		{"remote=s3://", engine.ErrInvalid, "bucket"},
		{"remote=s3://Bad_Bucket/x", engine.ErrInvalid, "bucket"},
		{"remote=" + filepath.Join(dir, "file", "store"), engine.ErrRemote, "not a directory"},
	} {
		o, err := parseOptions(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		_, err = o.engineOptions()
		if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", tt.in, err, tt.wantErr, tt.msg)
		}
	}
	// Without keys an s3:// location is refused before anything is sent.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	o, _ = parseOptions("remote=s3://bucket endpoint=127.0.0.1:1")
	if _, err := o.engineOptions(); !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("no keys: %v", err)
	}
}

// TestOptionKeysUnique: the table has no key twice, and every key is lower case.
func TestOptionKeysUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range optionKeys {
		if seen[k.name] || k.name != strings.ToLower(k.name) || k.set == nil {
			t.Errorf("bad or repeated key %q", k.name)
		}
		seen[k.name] = true
	}
}

// TestLaunchLimit: launch= takes exactly the ids the remote tier takes (Remote.Resolve).
func TestLaunchLimit(t *testing.T) {
	st, err := store.Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{remote.MaxLaunch, remote.MaxLaunch + 1} {
		id := strings.Repeat("x", n)
		_, perr := parseOptions("remote=/srv/ckp launch=" + id)
		_, rerr := (&engine.Remote{Store: st, Launch: id}).Resolve(0)
		if (perr == nil) != (rerr == nil) {
			t.Fatalf("a launch id of %d bytes: launch= says %v, Resolve %v", n, perr, rerr)
		}
	}
}
