// Package body checks that an object's body holds exactly the size the caller gave,
// for the stores in store and store/s3.
package body

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrSize is wrapped by the error of a body shorter or longer than its declared size.
var ErrSize = errors.New("body size does not match the given size")

// Reader reads exactly size bytes from a body: it returns an error wrapping ErrSize
// if the body ends early or holds more, and the context's error once it is done.
// Err tells afterwards whether it failed, even when a caller swallowed the error.
type Reader struct {
	ctx  context.Context
	r    io.Reader
	size int64
	left int64
	err  error
}

// NewReader returns a Reader of size bytes from r.
func NewReader(ctx context.Context, r io.Reader, size int64) *Reader {
	return &Reader{ctx: ctx, r: r, size: size, left: size}
}

// Read reads up to len(p) bytes of the body. The Read that would return the body's
// last bytes first makes sure the body ends there, and returns no bytes and the error
// if it does not, so that a consumer that stops after size bytes still learns of a
// longer body. Errors are sticky.
func (b *Reader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if err := b.ctx.Err(); err != nil {
		b.err = err
		return 0, err
	}
	if b.left == 0 {
		b.err = b.probeEnd()
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	switch {
	case err == io.EOF && b.left > 0:
		err = fmt.Errorf("%w: body ended after %d of %d bytes: %w", ErrSize, b.size-b.left, b.size, io.ErrUnexpectedEOF)
	case err == io.EOF:
		err = nil
		b.err = io.EOF // seen the end: the next Read returns io.EOF
	case err == nil && b.left == 0:
		if perr := b.probeEnd(); perr != io.EOF {
			// Hold back the last bytes: a consumer such as io.ReadFull drops the
			// error of a Read that fills its buffer, and so would finish a body
			// that is too long.
			b.err = perr
			return 0, perr
		}
		b.err = io.EOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// probeEnd reads one more byte: io.EOF if the body ends, else an error.
func (b *Reader) probeEnd() error {
	var one [1]byte
	for range 100 {
		n, err := b.r.Read(one[:])
		switch {
		case n > 0:
			return fmt.Errorf("%w: body is longer than %d bytes", ErrSize, b.size)
		case err != nil:
			return err
		}
	}
	return io.ErrNoProgress
}

// Err returns the error that ended reading, nil while reading and after a clean end.
func (b *Reader) Err() error {
	if b.err == io.EOF {
		return nil
	}
	return b.err
}

// Section returns r as a section of exactly size bytes from its current offset when r
// can be read at offsets and seeked (bytes.Reader, os.File, io.SectionReader), so a
// client may read its parts in parallel and again on a retry. ok is false for other
// readers. An error wraps ErrSize when r does not hold exactly size more bytes.
func Section(r io.Reader, size int64) (sec *io.SectionReader, ok bool, err error) {
	ra, isRA := r.(io.ReaderAt)
	sk, isSk := r.(io.Seeker)
	if !isRA || !isSk {
		return nil, false, nil
	}
	cur, err := sk.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, false, nil // not really seekable (a pipe behind an os.File)
	}
	end, err := sk.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, false, nil
	}
	if _, err := sk.Seek(cur, io.SeekStart); err != nil {
		return nil, false, fmt.Errorf("body: seek back: %w", err)
	}
	if end-cur != size {
		return nil, true, fmt.Errorf("%w: body holds %d bytes, not %d", ErrSize, end-cur, size)
	}
	return io.NewSectionReader(ra, cur, size), true, nil
}
