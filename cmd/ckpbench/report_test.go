package main

import (
	"strings"
	"testing"
	"time"
)

// TestRemoteGoalIgnoresTheDiscardRow: goal 12 compares the tier over the real store
// with the tier off; the row over a store keeping no data is shown beside it, never
// taken for it, whatever the order of the rows.
func TestRemoteGoalIgnoresTheDiscardRow(t *testing.T) {
	on := &row{Section: "remote-compute", Variant: "engine/keep 2 +remote every 16", Mean: 3 * time.Millisecond}
	discard := &row{Section: "remote-compute", Variant: "engine/keep 2 +remote every 16, " + discardLabel, Mean: 2 * time.Millisecond}
	off := &row{Section: "remote-compute", Variant: "remote off", Mean: 2 * time.Millisecond, baseline: true}
	for _, rows := range [][]*row{{on, discard, off}, {discard, on, off}, {off, on, discard}} {
		rep := &report{Rows: rows, RemoteStore: "dir"}
		var got []goal
		rep.remoteGoals(func(g string, v float64, target string, met bool, detail string) {
			got = append(got, goal{g, v, target, met, detail})
		})
		if len(got) != 1 || !strings.HasPrefix(got[0].Goal, "12.") || got[0].Value != 1.5 {
			t.Fatalf("goals %+v, want goal 12 at 1.5 (3 ms vs 2 ms)", got)
		}
	}
}
