package body

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type plain struct{ r io.Reader }

func (p plain) Read(b []byte) (int, error) { return p.r.Read(b) }

func TestReader(t *testing.T) {
	tests := []struct {
		name string
		body io.Reader
		size int64
		err  error // nil: reads body whole
	}{
		{"exact", strings.NewReader("hello"), 5, nil},
		{"empty", strings.NewReader(""), 0, nil},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader("hello")), 5, nil},
		{"data with EOF", iotest.DataErrReader(strings.NewReader("hello")), 5, nil},
		{"short", strings.NewReader("hel"), 5, ErrSize},
		{"long", strings.NewReader("hello!"), 5, ErrSize},
		{"long by one byte at a time", iotest.OneByteReader(strings.NewReader("hello!")), 5, ErrSize},
		{"non-empty for size 0", strings.NewReader("x"), 0, ErrSize},
		{"failing", iotest.ErrReader(io.ErrClosedPipe), 5, io.ErrClosedPipe},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(context.Background(), tc.body, tc.size)
			got, err := io.ReadAll(r)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !errors.Is(r.Err(), tc.err) {
					t.Fatalf("ReadAll = %q, %v (Err %v); want %v", got, err, r.Err(), tc.err)
				}
				return
			}
			if err != nil || r.Err() != nil || int64(len(got)) != tc.size {
				t.Fatalf("ReadAll = %q, %v (Err %v)", got, err, r.Err())
			}
		})
	}
}

// TestReaderLongSeenWithoutEOF checks that a consumer that stops after size bytes,
// as io.ReadFull does, still gets the error of a longer body.
func TestReaderLongSeenWithoutEOF(t *testing.T) {
	r := NewReader(context.Background(), strings.NewReader("hello, world"), 5)
	buf := make([]byte, 5)
	if n, err := io.ReadFull(r, buf); !errors.Is(err, ErrSize) {
		t.Fatalf("ReadFull = %d, %v; want ErrSize", n, err)
	}
	if !errors.Is(r.Err(), ErrSize) {
		t.Fatalf("Err() = %v, want ErrSize", r.Err())
	}
}

func TestReaderContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := NewReader(ctx, strings.NewReader("hello"), 5)
	buf := make([]byte, 2)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := r.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v", err)
	}
}

func TestSection(t *testing.T) {
	br := bytes.NewReader([]byte("0123456789"))
	br.Seek(3, io.SeekStart)
	sec, ok, err := Section(br, 7)
	if err != nil || !ok {
		t.Fatalf("Section = %v, %v", ok, err)
	}
	got, _ := io.ReadAll(sec)
	if string(got) != "3456789" {
		t.Fatalf("section = %q", got)
	}
	if _, ok, err := Section(br, 8); !ok || !errors.Is(err, ErrSize) {
		t.Fatalf("Section of the wrong size = %v, %v; want ErrSize", ok, err)
	}
	if _, ok, _ := Section(plain{br}, 7); ok {
		t.Fatal("Section of a plain reader is ok")
	}
}
