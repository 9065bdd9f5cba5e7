package location

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckp-go/ckp/store"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		loc  string
		want string // String() prefix, or "" for ErrInvalid
	}{
		{"s3://bkt/run/1", "s3://bkt/run/1"},
		{"s3://bkt", "s3://bkt"},
		{"dir://" + dir, "dir:" + dir},
		{filepath.Join(dir, "x"), "dir:" + filepath.Join(dir, "x")},
		{"", ""},
		{"s3://", ""},
		{"gs://bkt/p", ""},
	} {
		st, err := Open(tc.loc, Options{Endpoint: "127.0.0.1:9", Insecure: true, AccessKey: "a", SecretKey: "b"})
		if tc.want == "" {
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("Open(%q) = %v, want ErrInvalid", tc.loc, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tc.loc, err)
			continue
		}
		if !strings.HasPrefix(st.String(), tc.want) {
			t.Errorf("Open(%q) = %s, want %s...", tc.loc, st, tc.want)
		}
	}
	if !IsS3("s3://b/p") || IsS3("/s3://x") {
		t.Error("IsS3")
	}
}
