// Package store is the remote tier's view of where checkpoints are copied: a flat
// namespace of objects under slash-separated keys, with create-if-absent, whole-object
// replace, ranged reads, prefix listing and delete.
//
// Two implementations exist: Dir (this package), a directory on a local disk or a
// shared parallel file system, and store/s3, an S3 bucket. Both pass the conformance
// suite in store/storetest.
//
// # Keys
//
// A key is 1 to 1024 bytes of UTF-8 made of segments separated by '/': no segment is
// empty, ".", ".." or longer than 255 bytes, none starts with ".tmp-" (reserved for the
// stores' temporary objects), and no byte is NUL. CheckKey tells whether a key is valid;
// every method returns an error wrapping ErrInvalid for one that is not.
//
// Because a file-system store keeps each segment but the last as a directory, a key
// must not also be a whole-segment prefix of another key: "a" and "a/b" cannot both be
// objects in a Dir (nor on a file-system-backed S3 gateway such as versitygw's posix
// backend). Writing the second returns an error wrapping ErrInvalid.
//
// # Errors
//
// Outcomes are reported with sentinel errors, tested with errors.Is: ErrNotExist,
// ErrExists, ErrRange; permanent failures with ErrDenied, ErrNoBucket, ErrUnsupported
// and ErrInvalid. IsPermanent tells a caller that retries with backoff whether a retry
// can help.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Store is a flat namespace of objects under slash-separated keys.
//
// A Store is safe for concurrent use by many goroutines, and several processes or
// nodes may use the same location at once.
type Store interface {
	// Create writes the object only if no object exists under key: exactly one of any
	// number of concurrent Creates of a key (from any process or node) succeeds; the
	// others get ErrExists. Readers see the whole object or none.
	//
	// A Create retried after a transient error may get ErrExists for the object its own
	// earlier attempt wrote (the first attempt succeeded but its answer was lost); a
	// caller that retries Creates should compare the object with what it wrote.
	Create(ctx context.Context, key string, body io.Reader, size int64) error
	// Put writes or replaces the object; readers see the old or the new whole object.
	Put(ctx context.Context, key string, body io.Reader, size int64) error
	// Get returns n bytes of the object from off (n < 0: to the end). ErrNotExist if
	// absent; a range past the end (off > size, or off+n > size for n >= 0) is an error
	// wrapping ErrRange; a negative off is an error wrapping ErrInvalid. The reader
	// returns exactly the bytes asked for, or an error.
	Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
	// List returns the objects whose keys start with prefix, sorted by key. The prefix
	// need not end at a segment boundary ("run/ck" matches "run/ckp/1").
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes the object; a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// String names the location for messages: "dir:/path", "s3://bucket/prefix (endpoint)".
	String() string
}

// Object describes one stored object.
type Object struct {
	Key      string    // the object's key
	Size     int64     // its size in bytes
	Modified time.Time // when it was last written
}

var (
	// ErrNotExist is returned by Get when no object exists under the key.
	ErrNotExist = errors.New("store: object does not exist")
	// ErrExists is returned by Create when an object already exists under the key.
	ErrExists = errors.New("store: object already exists")
	// ErrRange is wrapped by Get's error for a range that ends past the object's end.
	ErrRange = errors.New("store: range past the end of the object")
	// ErrDenied is a permanent failure: bad credentials or no permission.
	ErrDenied = errors.New("store: access denied")
	// ErrNoBucket is a permanent failure: the bucket does not exist.
	ErrNoBucket = errors.New("store: bucket does not exist")
	// ErrUnsupported is a permanent failure: the location cannot do what the Store
	// promises, such as an S3 server that ignores conditional creates.
	ErrUnsupported = errors.New("store: operation not supported by this location")
	// ErrInvalid is a permanent failure: a bad key, argument, body or configuration.
	ErrInvalid = errors.New("store: invalid argument")
)

// IsPermanent reports whether retrying the operation that returned err cannot help:
// err wraps ErrNotExist, ErrExists, ErrRange (definite answers), ErrDenied,
// ErrNoBucket, ErrUnsupported, ErrInvalid, or context.Canceled. Everything else —
// network errors, refused connections, timeouts including context.DeadlineExceeded (a
// per-attempt deadline is worth retrying; a retry loop checks its own context too),
// server errors, conflicts and slow-downs — is transient. IsPermanent(nil) is false.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	for _, p := range []error{ErrNotExist, ErrExists, ErrRange, ErrDenied, ErrNoBucket, ErrUnsupported, ErrInvalid, context.Canceled} {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}

// MaxKeyLen is the longest key in bytes (S3's limit).
const MaxKeyLen = 1024

// MaxSegmentLen is the longest segment of a key in bytes (file systems' NAME_MAX).
const MaxSegmentLen = 255

// TempPrefix starts the names of the stores' temporary objects; no key segment may
// start with it, and List never returns such a name.
const TempPrefix = ".tmp-"

// CheckKey returns nil if key is a valid key (see the package documentation), and an
// error wrapping ErrInvalid that says why not otherwise.
func CheckKey(key string) error {
	if key == "" {
		return invalidKey(key, "empty")
	}
	if len(key) > MaxKeyLen {
		return invalidKey(key, "longer than 1024 bytes")
	}
	if err := checkChars(key); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if err := checkSegment(key, seg); err != nil {
			return err
		}
	}
	return nil
}

// CheckPrefix returns nil if prefix can start a valid key: "" or a key whose last
// segment may be cut short (so it may be "", or start like a reserved name). It returns
// an error wrapping ErrInvalid otherwise.
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > MaxKeyLen {
		return invalidKey(prefix, "prefix longer than 1024 bytes")
	}
	if err := checkChars(prefix); err != nil {
		return err
	}
	segs := strings.Split(prefix, "/")
	for _, seg := range segs[:len(segs)-1] {
		if err := checkSegment(prefix, seg); err != nil {
			return err
		}
	}
	if len(segs[len(segs)-1]) > MaxSegmentLen {
		return invalidKey(prefix, "a segment is longer than 255 bytes")
	}
	return nil
}

func checkChars(key string) error {
	if key[0] == '/' {
		return invalidKey(key, "starts with '/'")
	}
	if strings.IndexByte(key, 0) >= 0 {
		return invalidKey(key, "holds a NUL byte")
	}
	if !utf8.ValidString(key) {
		return invalidKey(key, "not UTF-8")
	}
	return nil
}

func checkSegment(key, seg string) error {
	switch {
	case seg == "":
		return invalidKey(key, "empty segment")
	case seg == "." || seg == "..":
		return invalidKey(key, "segment "+seg)
	case len(seg) > MaxSegmentLen:
		return invalidKey(key, "a segment is longer than 255 bytes")
	case strings.HasPrefix(seg, TempPrefix):
		return invalidKey(key, "a segment starts with the reserved "+TempPrefix)
	}
	return nil
}

func invalidKey(key, why string) error {
	if len(key) > 80 {
		key = key[:80] + "..."
	}
	return fmt.Errorf("%w: key %q: %s", ErrInvalid, key, why)
}
