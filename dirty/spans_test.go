package dirty

import (
	"errors"
	"slices"
	"testing"
)

func TestMergeSpans(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want []span
	}{
		{"empty", nil, nil},
		{"one", []span{{1, 2}}, []span{{1, 2}}},
		{"touching", []span{{3, 4}, {1, 3}}, []span{{1, 4}}},
		{"overlapping", []span{{1, 5}, {2, 3}, {4, 8}}, []span{{1, 8}}},
		{"apart", []span{{6, 7}, {1, 2}, {3, 4}}, []span{{1, 2}, {3, 4}, {6, 7}}},
		{"empty spans dropped", []span{{2, 2}, {1, 3}, {5, 5}}, []span{{1, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mergeSpans(slices.Clone(tc.in)); !slices.Equal(got, tc.want) {
				t.Fatalf("mergeSpans(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestUncovered(t *testing.T) {
	tr := func(lo, hi uintptr) *Tracker { return &Tracker{lo: lo, hi: hi} }
	for _, tc := range []struct {
		name   string
		lo, hi uintptr
		others []*Tracker
		want   []span
	}{
		{"alone", 10, 20, nil, []span{{10, 20}}},
		{"left edge shared", 10, 20, []*Tracker{tr(0, 11)}, []span{{11, 20}}},
		{"right edge shared", 10, 20, []*Tracker{tr(19, 30)}, []span{{10, 19}}},
		{"both edges", 10, 20, []*Tracker{tr(19, 30), tr(0, 11)}, []span{{11, 19}}},
		{"inside", 10, 20, []*Tracker{tr(12, 14), tr(13, 15)}, []span{{10, 12}, {15, 20}}},
		{"covered", 10, 20, []*Tracker{tr(0, 15), tr(15, 30)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := uncovered(tc.lo, tc.hi, tc.others); !slices.Equal(got, tc.want) {
				t.Fatalf("uncovered = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAppendClipped(t *testing.T) {
	src := []span{{0, 2}, {4, 6}, {8, 10}}
	for _, tc := range []struct {
		lo, hi uintptr
		want   []span
	}{
		{0, 10, src},
		{1, 5, []span{{1, 2}, {4, 5}}},
		{2, 4, nil},
		{5, 9, []span{{5, 6}, {8, 9}}},
		{10, 12, nil},
	} {
		if got := appendClipped(nil, src, tc.lo, tc.hi); !slices.Equal(got, tc.want) {
			t.Errorf("appendClipped(%d, %d) = %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
	}
}

// TestUnavailable checks the contract where tracking is missing: Track fails with the
// same ErrUnsupported as Available.
func TestUnavailable(t *testing.T) {
	err := Available()
	if err == nil {
		t.Skip("tracking is available here")
	}
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Available() = %v, want ErrUnsupported", err)
	}
	if _, err := Track(make([]byte, 10)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Track = %v, want ErrUnsupported", err)
	}
}
