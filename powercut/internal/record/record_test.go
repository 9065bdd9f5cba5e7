package record

import (
	"bytes"
	"testing"
)

func TestVerify(t *testing.T) {
	const size = 4096
	var log []byte
	buf := make([]byte, size)
	for i := 0; i < 5; i++ {
		Fill(buf, 42, uint64(i))
		log = append(log, buf...)
	}
	if n, err := Verify(log, size, 42, 5); n != 5 || err != nil {
		t.Fatalf("intact log: %d, %v", n, err)
	}
	if n, err := Verify(log[:len(log)-1], size, 42, 4); n != 4 || err != nil {
		t.Fatalf("torn unacked tail: %d, %v", n, err)
	}
	if _, err := Verify(log[:len(log)-1], size, 42, 5); err == nil {
		t.Fatal("short acked record passed")
	}
	if _, err := Verify(log, size, 43, 1); err == nil {
		t.Fatal("wrong seed passed")
	}
	bad := bytes.Clone(log)
	bad[2*size+100] ^= 1
	if n, err := Verify(bad, size, 42, 2); n != 2 || err != nil {
		t.Fatalf("corrupt unacked record: %d, %v", n, err)
	}
	if _, err := Verify(bad, size, 42, 3); err == nil {
		t.Fatal("corrupt acked record passed")
	}
	zero := make([]byte, len(log))
	if _, err := Verify(zero, size, 42, 1); err == nil {
		t.Fatal("zeroed log passed")
	}
	if n, err := Verify(nil, size, 42, 0); n != 0 || err != nil {
		t.Fatalf("empty log, nothing acked: %d, %v", n, err)
	}
	a, b := make([]byte, size), make([]byte, size)
	Fill(a, 1, 0)
	Fill(b, 1, 1)
	if bytes.Equal(a[HeaderSize:], b[HeaderSize:]) {
		t.Fatal("records 0 and 1 have the same body")
	}
}
