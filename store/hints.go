package store

// Hints a caller may give a Store, and work it may ask of one ahead of time.

import "context"

// verifiedKey marks a context of WithVerifiedContent.
type verifiedKey struct{}

// WithVerifiedContent returns a context for a Create or Put whose bytes the caller
// checks itself whenever it reads them back, against hashes it keeps elsewhere (the
// remote tier's data objects: their block hashes are in the manifest). A store may
// then skip a checksum of its own over the payload: store/s3 sends such a payload
// unsigned over plain HTTP (UNSIGNED-PAYLOAD with a CRC32C trailer instead of a
// SHA-256 of every byte on both ends; the request itself stays signed). It is a hint:
// a store may ignore it, and every other promise of the Store holds.
func WithVerifiedContent(ctx context.Context) context.Context {
	return context.WithValue(ctx, verifiedKey{}, true)
}

// VerifiedContent reports whether ctx comes from WithVerifiedContent.
func VerifiedContent(ctx context.Context) bool {
	v, _ := ctx.Value(verifiedKey{}).(bool)
	return v
}

// Preparer is a Store with work to do once before its first Create: store/s3 checks
// that the server honours conditional creates. Prepare does that work now (a writer
// may call it ahead, so that its first Create does not wait for it); Create does it
// itself when it was not done. An error is Create's error for the same work.
type Preparer interface {
	Prepare(ctx context.Context) error
}

// ReadStreamer is a Store that knows how many ranged reads of one object serve it best
// at once. A reader that splits an object into ranges (the remote tier's fetch) asks
// it; a Store without the method is read in several at once (a network store, where
// each request waits for its round trip).
type ReadStreamer interface {
	ReadStreams() int
}
