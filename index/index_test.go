package index

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func testHeader() Header {
	return Header{FileID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Generation: 3, Created: 1234567}
}

func TestHeaderRoundTrip(t *testing.T) {
	b := make([]byte, HeaderSize)
	seed := EncodeHeader(b, testHeader())
	h, c, err := DecodeHeader(b)
	if err != nil || h != testHeader() || c != seed {
		t.Fatalf("got %+v %x %v", h, c, err)
	}
	for _, tc := range []struct {
		name string
		mut  func([]byte)
		want error
	}{
		{"magic", func(b []byte) { b[0] = 'X' }, ErrMagic},
		{"crc", func(b []byte) { b[20] ^= 1 }, ErrHeader},
		{"short", nil, ErrShort},
	} {
		c := bytes.Clone(b)
		if tc.mut != nil {
			tc.mut(c)
		} else {
			c = c[:10]
		}
		if _, _, err := DecodeHeader(c); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestHeaderUnknownVersion(t *testing.T) {
	b := make([]byte, HeaderSize)
	EncodeHeader(b, testHeader())
	b[8] = 9
	// fix the crc so only the version is wrong
	EncodeHeaderRaw(b)
	if _, _, err := DecodeHeader(b); !errors.Is(err, ErrVersion) {
		t.Fatalf("%v", err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := Record{Kind: KindVersion, Flags: FlagCommit | FlagDurable, Ckpt: 7, Version: 1 << 40, Offset: 4096,
		Length: 64 << 20, Hash: 0xdeadbeefcafef00d, Time: -5, Txn: 99, Slack: 12345}
	b := make([]byte, RecordSize)
	c := Encode(b, &r, 42)
	var got Record
	c2, ok := Decode(b, 42, &got)
	if !ok || c2 != c {
		t.Fatal("decode failed")
	}
	if got.Kind != r.Kind || got.Flags != r.Flags || got.Ckpt != r.Ckpt || got.Version != r.Version ||
		got.Offset != r.Offset || got.Length != r.Length || got.Hash != r.Hash || got.Time != r.Time ||
		got.Txn != r.Txn || got.Slack != r.Slack {
		t.Fatalf("got %+v want %+v", got, r)
	}
	if _, ok := Decode(b, 43, &got); ok {
		t.Fatal("record verified with the wrong chain seed")
	}
	b[30] ^= 0x10
	if _, ok := Decode(b, 42, &got); ok {
		t.Fatal("flipped record verified")
	}
}

func TestNameRecords(t *testing.T) {
	for _, n := range []int{1, 52, 53, 104, 105, MaxNameLen} {
		name := strings.Repeat("n", n-1) + "\x00"
		recs := NameRecords(9, name)
		if len(recs) != NameRecordCount(n) {
			t.Fatalf("n=%d: %d records, count says %d", n, len(recs), NameRecordCount(n))
		}
		buf := make([]byte, len(recs)*RecordSize)
		prev := uint32(1)
		for i := range recs {
			recs[i].Flags = 0
			if i == len(recs)-1 {
				recs[i].Flags = FlagCommit
			}
			prev = Encode(buf[i*RecordSize:], &recs[i], prev)
		}
		var got []byte
		_, err := Scan(buf, 1, func(txn []Record) error {
			if txn[0].Kind != KindName || int(txn[0].Aux) != n || txn[0].Ckpt != 9 {
				t.Fatalf("first record %+v", txn[0])
			}
			for _, r := range txn {
				got = append(got, r.Name...)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if string(got[:n]) != name {
			t.Fatalf("n=%d: name %q", n, got[:n])
		}
	}
}

// build encodes txns (each a list of records; the last gets FlagCommit) after seed.
func build(seed uint32, txns ...[]Record) []byte {
	var buf []byte
	prev := seed
	for _, txn := range txns {
		for i := range txn {
			r := txn[i]
			if i == len(txn)-1 {
				r.Flags |= FlagCommit
			}
			b := make([]byte, RecordSize)
			prev = Encode(b, &r, prev)
			buf = append(buf, b...)
		}
	}
	return buf
}

func v(ck uint32, ver uint64) Record { return Record{Kind: KindVersion, Ckpt: ck, Version: ver} }

func TestScanCommittedOnly(t *testing.T) {
	buf := build(5, []Record{v(1, 1)}, []Record{v(1, 2), v(2, 1)}, []Record{v(1, 3)})
	// Zeroed space after the records is a clean end.
	full := append(bytes.Clone(buf), make([]byte, 4*RecordSize)...)
	var seen [][]uint64
	res, err := Scan(full, 5, func(txn []Record) error {
		var vs []uint64
		for _, r := range txn {
			vs = append(vs, r.Version)
		}
		seen = append(seen, vs)
		return nil
	})
	if err != nil || res.Txns != 3 || res.Records != 4 || res.End != 4*RecordSize || res.Torn {
		t.Fatalf("res %+v err %v", res, err)
	}
	if len(seen) != 3 || len(seen[1]) != 2 {
		t.Fatalf("seen %v", seen)
	}

	// An uncommitted transaction at the end is not delivered.
	open := build(5, []Record{v(1, 1)})
	r := v(1, 2)
	b := make([]byte, RecordSize)
	res0, _ := Scan(open, 5, nil)
	Encode(b, &r, res0.CRC) // no commit flag
	open = append(open, b...)
	res, _ = Scan(open, 5, nil)
	if res.Txns != 1 || res.Uncommitted != 1 || !res.Torn || res.End != RecordSize {
		t.Fatalf("uncommitted: %+v", res)
	}

	// A torn record stops the scan; what follows is ignored even if it verifies alone.
	torn := bytes.Clone(buf)
	torn[RecordSize+3] ^= 0xff
	res, _ = Scan(torn, 5, nil)
	if res.Txns != 1 || !res.Torn || res.End != RecordSize {
		t.Fatalf("torn: %+v", res)
	}
}

func TestScanRejectsStaleRecordAfterRewrite(t *testing.T) {
	// Old log: A B C. Recovery cut after A; a new B' was written in B's place.
	// C is a valid record of the old chain but must not verify after B'.
	old := build(5, []Record{v(1, 1)}, []Record{v(1, 2)}, []Record{v(1, 3)})
	res, _ := Scan(old[:RecordSize], 5, nil)
	nb := make([]byte, RecordSize)
	r := v(2, 7)
	r.Flags = FlagCommit
	Encode(nb, &r, res.CRC)
	copy(old[RecordSize:], nb)
	res, _ = Scan(old, 5, nil)
	if res.Txns != 2 || !res.Torn {
		t.Fatalf("stale record accepted: %+v", res)
	}
}

func TestScanStopsOnCallbackError(t *testing.T) {
	buf := build(0, []Record{v(1, 1)}, []Record{v(1, 2)})
	boom := errors.New("boom")
	if _, err := Scan(buf, 0, func([]Record) error { return boom }); err != boom {
		t.Fatalf("%v", err)
	}
}

func TestSessionRoundTrip(t *testing.T) {
	s := Session{PID: 77, NextTxn: 1 << 50, BootID: [16]byte{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6}, Policy: 3, Time: 99, Keep: 4}
	r := s.Record()
	b := make([]byte, RecordSize)
	r.Flags = FlagCommit
	Encode(b, &r, 0)
	var got Record
	if _, ok := Decode(b, 0, &got); !ok || SessionOf(&got) != s {
		t.Fatalf("%+v", SessionOf(&got))
	}
}

// TestScanAheadAgrees: the scan that verifies checksums on a helper goroutine gives the
// same result and the same transactions as the plain one, on a large index that is
// intact, torn at random places, damaged in the middle, or stopped by fn.
func TestScanAheadAgrees(t *testing.T) {
	const n = 3*verifyChunk + 100
	recs := make([]byte, HeaderSize+(n+10)*RecordSize)
	prev := EncodeHeader(recs, Header{FileID: [16]byte{9}})
	for i := 0; i < n; i++ {
		r := Record{Kind: KindVersion, Ckpt: 1, Version: uint64(i + 1), Offset: uint64(i) * 4096, Length: 100, Txn: uint64(i/3 + 1)}
		if i%3 == 2 {
			r.Flags = FlagCommit
		}
		prev = Encode(recs[HeaderSize+i*RecordSize:], &r, prev)
	}
	_, seed, err := DecodeHeader(recs)
	if err != nil {
		t.Fatal(err)
	}
	body := recs[HeaderSize:]
	run := func(b []byte, ahead bool, stopAt int) (Result, []uint64, error) {
		var got []uint64
		res, err := scan(b, seed, func(txn []Record) error {
			if stopAt > 0 && len(got) >= stopAt {
				return errStopTest
			}
			got = append(got, txn[len(txn)-1].Version)
			return nil
		}, ahead)
		return res, got, err
	}
	cases := map[string]func([]byte){
		"intact":          func([]byte) {},
		"damaged middle":  func(b []byte) { b[5000*RecordSize+17] ^= 1 },
		"damaged chunk":   func(b []byte) { b[verifyChunk*RecordSize+3] ^= 1 },
		"torn last":       func(b []byte) { b[(n-1)*RecordSize+60] ^= 0xff },
		"damaged first":   func(b []byte) { b[5] ^= 1 },
		"zeroed from 700": func(b []byte) { clear(b[700*RecordSize:]) },
	}
	for name, damage := range cases {
		b := append([]byte(nil), body...)
		damage(b)
		for _, stopAt := range []int{0, 10, 2000} {
			r1, g1, e1 := run(b, false, stopAt)
			r2, g2, e2 := run(b, true, stopAt)
			if r1 != r2 || fmt.Sprint(g1) != fmt.Sprint(g2) || e1 != e2 {
				t.Fatalf("%s, stop %d: plain %+v %d txns %v; ahead %+v %d txns %v", name, stopAt, r1, len(g1), e1, r2, len(g2), e2)
			}
		}
	}
}

var errStopTest = errors.New("stop")

// TestScanFindsAnyByteInTheTail: one non-zero byte anywhere in a long zero tail (the
// start, inside a page, across page boundaries, the last byte of an odd length) makes
// it torn; a tail of zeros of any length does not.
func TestScanFindsAnyByteInTheTail(t *testing.T) {
	recs := build(5, []Record{v(1, 1)})
	for _, size := range []int{0, 1, 4095, 4096, 4097, 3*4096 + 17} {
		tail := make([]byte, size)
		res, _ := Scan(append(bytes.Clone(recs), tail...), 5, nil)
		if res.Torn || res.Txns != 1 {
			t.Fatalf("%d zero bytes: %+v", size, res)
		}
		for _, at := range []int{0, 1, 4095, 4096, size / 2, size - 1} {
			if at < 0 || at >= size {
				continue
			}
			tail[at] = 0x40
			res, _ = Scan(append(bytes.Clone(recs), tail...), 5, nil)
			tail[at] = 0
			if !res.Torn || res.Txns != 1 {
				t.Fatalf("byte %d of %d: %+v", at, size, res)
			}
		}
	}
}

func TestLastNonZero(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 4096, 4097, 3*4096 + 17} {
		b := make([]byte, size)
		if got := LastNonZero(b); got != -1 {
			t.Fatalf("%d zeros: %d", size, got)
		}
		for _, at := range []int{0, 1, 4095, 4096, size / 2, size - 1} {
			if at < 0 || at >= size {
				continue
			}
			b[at] = 1
			if got := LastNonZero(b); got != at {
				t.Fatalf("byte %d of %d: got %d", at, size, got)
			}
			b[at] = 0
		}
	}
}
