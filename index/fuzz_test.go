package index

import (
	"bytes"
	"testing"
)

func FuzzDecodeHeader(f *testing.F) {
	b := make([]byte, HeaderSize)
	EncodeHeader(b, testHeader())
	f.Add(b)
	f.Add([]byte("CKPINDEX"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, c, err := DecodeHeader(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes.
		out := make([]byte, HeaderSize)
		if c2 := EncodeHeader(out, h); c2 != c || !bytes.Equal(out, b[:HeaderSize]) {
			t.Fatalf("header does not round-trip")
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add(build(0, []Record{v(1, 1)}), uint32(0))
	f.Add(build(7, NameRecords(3, "grid/velocity")), uint32(7))
	f.Fuzz(func(t *testing.T, b []byte, seed uint32) {
		var r Record
		c, ok := Decode(b, seed, &r)
		if !ok {
			return
		}
		out := make([]byte, RecordSize)
		if c2 := Encode(out, &r, seed); c2 != c {
			t.Fatalf("crc differs after re-encode")
		}
		if r.Kind != KindName && r.Kind != KindNameMore && !bytes.Equal(out, b[:RecordSize]) {
			t.Fatalf("record does not round-trip")
		}
	})
}

func FuzzScan(f *testing.F) {
	f.Add(build(3, []Record{v(1, 1)}, []Record{v(1, 2), v(2, 1)}), uint32(3))
	f.Add(build(3, NameRecords(1, "x"), []Record{v(1, 1)}), uint32(3))
	f.Fuzz(func(t *testing.T, b []byte, seed uint32) {
		n := 0
		res, err := Scan(b, seed, func(txn []Record) error {
			if len(txn) == 0 || txn[len(txn)-1].Flags&FlagCommit == 0 {
				t.Fatalf("uncommitted txn delivered")
			}
			n += len(txn)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != res.Records || res.End != int64(n)*RecordSize || res.End > int64(len(b)) {
			t.Fatalf("inconsistent result %+v (n=%d, len=%d)", res, n, len(b))
		}
		// Scanning the valid prefix alone gives the same answer, with a clean end.
		res2, _ := Scan(b[:res.End], seed, nil)
		if res2.Records != res.Records || res2.CRC != res.CRC || res2.Torn {
			t.Fatalf("prefix scan differs: %+v vs %+v", res2, res)
		}
	})
}
