package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/storetest"
)

func TestCheckKey(t *testing.T) {
	valid := []string{"a", "a/b", "run/ckp/000001/grid", ".hidden", "a/..b", "a/.tmp", "tmp-x", "日本/語",
		strings.Repeat("k", store.MaxSegmentLen), strings.Repeat("k/", store.MaxKeyLen/2-1) + "kk"}
	for _, k := range valid {
		if err := store.CheckKey(k); err != nil {
			t.Errorf("CheckKey(%.40q) = %v, want nil", k, err)
		}
	}
	for _, k := range storetest.InvalidKeys {
		err := store.CheckKey(k)
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CheckKey(%.40q) = %v, want ErrInvalid", k, err)
		}
	}
	if err := store.CheckKey("a//b"); err == nil || !strings.Contains(err.Error(), "empty segment") {
		t.Errorf("CheckKey(a//b) = %v, want a message naming the empty segment", err)
	}
}

func TestCheckPrefix(t *testing.T) {
	tests := []struct {
		prefix string
		ok     bool
	}{
		{"", true},
		{"a", true},
		{"a/", true},
		{"a/b", true},
		{"a/.", true}, // may start "a/.x"
		{"a/..", true},
		{"a/.tmp-", true},
		{"/a", false},
		{"a//", false},
		{"a/../b", false},
		{"./", false},
		{".tmp-x/", false},
		{"a\x00", false},
		{strings.Repeat("p", store.MaxKeyLen+1), false},
	}
	for _, tc := range tests {
		err := store.CheckPrefix(tc.prefix)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, store.ErrInvalid)) {
			t.Errorf("CheckPrefix(%.40q) = %v, want ok=%v", tc.prefix, err, tc.ok)
		}
	}
}

func TestCheckRange(t *testing.T) {
	tests := []struct {
		off, n, size int64
		err          error
	}{
		{0, -1, 0, nil},
		{0, 0, 0, nil},
		{0, 1, 0, store.ErrRange},
		{1, -1, 0, store.ErrRange},
		{0, 10, 10, nil},
		{10, 0, 10, nil},
		{10, -1, 10, nil},
		{9, 2, 10, store.ErrRange},
		{11, 0, 10, store.ErrRange},
		{-1, 1, 10, store.ErrInvalid},
		{5, 1 << 62, 10, store.ErrRange},
	}
	for _, tc := range tests {
		err := store.CheckRange(tc.off, tc.n, tc.size)
		if (tc.err == nil) != (err == nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
			t.Errorf("CheckRange(%d, %d, %d) = %v, want %v", tc.off, tc.n, tc.size, err, tc.err)
		}
	}
}

func TestIsPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{store.ErrNotExist, true},
		{store.ErrExists, true},
		{store.ErrRange, true},
		{store.ErrDenied, true},
		{store.ErrNoBucket, true},
		{store.ErrUnsupported, true},
		{store.ErrInvalid, true},
		{fmt.Errorf("%w: s3://b/p: put \"k\": %w", store.ErrDenied, errors.New("InvalidAccessKeyId")), true},
		{fmt.Errorf("op: %w", context.Canceled), true},
		{fmt.Errorf("op: %w", context.DeadlineExceeded), false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{io.ErrUnexpectedEOF, false},
		{errors.New("503 SlowDown"), false},
	}
	for _, tc := range tests {
		if got := store.IsPermanent(tc.err); got != tc.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
