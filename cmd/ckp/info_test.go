package main

import (
	"strings"
	"testing"

	"github.com/ckp-go/ckp/engine"
)

// TestInfoDifferential: how info describes a writer's differential saves, and the
// writes its tracking missed (from the SESSION record; engine's TestScrubCatchesHiddenWrite
// shows a writer recording them).
func TestInfoDifferential(t *testing.T) {
	for _, tc := range []struct {
		w    engine.SessionInfo
		want []string
		not  []string
	}{
		{engine.SessionInfo{}, nil, nil},
		{engine.SessionInfo{Differential: true, BlockSize: 4096}, []string{"4.0 KiB blocks", "hashing every block"}, []string{"did not report"}},
		{engine.SessionInfo{Differential: true, BlockSize: 4096, Tracking: true}, []string{"told by the kernel", "pinned"}, []string{"did not report"}},
		{engine.SessionInfo{Differential: true, BlockSize: 4096, Tracking: true, TrackingMisses: 3}, []string{"did not report 3 write(s)", "hashed from then on"}, nil},
	} {
		got := differential(&tc.w)
		if len(tc.want) == 0 && got != "" {
			t.Errorf("%+v: %q, want nothing", tc.w, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%+v: %q lacks %q", tc.w, got, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(got, w) {
				t.Errorf("%+v: %q has %q", tc.w, got, w)
			}
		}
	}
}
