package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
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
		{in: "remote=s3://bucket/prefix", wantErr: "remote tier not built yet"},
		{in: "remote=/srv/ckp", wantErr: "remote tier not built yet"},
		{in: "endpoint=127.0.0.1:9000", wantErr: "endpoint=: remote tier not built yet"},
		{in: "insecure=1", wantErr: "remote tier not built yet"},
		{in: "every=10", wantErr: "remote tier not built yet"},
		{in: "rank=3", wantErr: "remote tier not built yet"},
		{in: "ranks=4", wantErr: "remote tier not built yet"},
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
