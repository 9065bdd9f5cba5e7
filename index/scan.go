package index

import "bytes"

// Result describes a scan of an index's records.
type Result struct {
	// End is the offset (from the start of the records, i.e. after the header) just
	// past the last committed transaction: where the next record goes.
	End int64
	// Records is the number of committed records.
	Records int
	// Txns is the number of committed transactions.
	Txns int
	// CRC is the chain CRC at End: the seed for the next record.
	CRC uint32
	// Uncommitted counts valid records after the last commit (an unfinished transaction).
	Uncommitted int
	// Torn is true when non-zero bytes follow the valid records: a torn or damaged
	// record, or records written after damage. Zeroed space after End is a clean end.
	Torn bool
}

// parallelRecords is the number of records from which Scan verifies checksums on a
// second goroutine, ahead of the decoding: a large index is read at the speed of one
// pass, and the page faults of a mapped index fall on the helper too.
const parallelRecords = 1 << 14

// verifyChunk is how many records the helper verifies between two reports.
const verifyChunk = 1 << 12

// Scan walks the records in recs (the index file after its header), chained from seed,
// and calls fn once per committed transaction with its records in order. The slice
// passed to fn is reused between calls; name records alias recs. Scan stops at the first
// record that does not verify, or when fn returns an error, which it returns.
func Scan(recs []byte, seed uint32, fn func(txn []Record) error) (Result, error) {
	return scan(recs, seed, fn, int64(len(recs))/RecordSize >= parallelRecords)
}

// scan is Scan, with the checksums verified ahead on a helper goroutine or not.
func scan(recs []byte, seed uint32, fn func(txn []Record) error, ahead bool) (Result, error) {
	n := int64(len(recs)) / RecordSize
	// Small indexes are verified as they are decoded; large ones by a helper goroutine
	// that runs ahead and reports how many records verified so far on a channel.
	var progress chan int64
	if ahead {
		progress = make(chan int64, 64)
		quit := make(chan struct{})
		defer close(quit)
		go verifyAhead(recs, n, seed, progress, quit)
	}
	var res Result
	res.CRC = seed
	prev := seed
	txn := make([]Record, 0, 16)
	known := int64(0) // records known to verify (parallel mode)
	done := false     // the helper reported its last
	var i int64
	for i = 0; i < n; i++ {
		b := recs[i*RecordSize : (i+1)*RecordSize]
		if progress != nil {
			for i >= known && !done {
				v, ok := <-progress
				if !ok {
					done = true
					break
				}
				known = v
			}
			if i >= known {
				break
			}
		} else {
			c, ok := verify(b, prev)
			if !ok {
				break
			}
			prev = c
		}
		// Decode straight into the next slot of txn: no copy of the record.
		if len(txn) == cap(txn) {
			txn = append(txn, Record{})[:len(txn)]
		}
		txn = txn[:len(txn)+1]
		r := &txn[len(txn)-1]
		decodeFields(b, r)
		if r.Flags&FlagCommit != 0 {
			if fn != nil {
				if err := fn(txn); err != nil {
					return res, err
				}
			}
			res.Records += len(txn)
			res.Txns++
			res.End = (i + 1) * RecordSize
			res.CRC = storedCRC(b)
			txn = txn[:0]
		}
	}
	res.Uncommitted = len(txn)
	res.Torn = LastNonZero(recs[res.End:]) >= 0
	return res, nil
}

// zeros is what LastNonZero compares a tail with, a page at a time.
var zeros [4096]byte

// LastNonZero returns the index of the last non-zero byte of b, or -1 when b holds only
// zeros. The tail after the records is most of a grown index file (a chunk of zeros):
// comparing it a page at a time with bytes.Equal (vectorised) costs a twentieth of a loop
// over its bytes, on every Open.
func LastNonZero(b []byte) int {
	end := len(b)
	for end > 0 {
		start := max(0, end-len(zeros))
		if !bytes.Equal(b[start:end], zeros[:end-start]) {
			for i := end - 1; ; i-- {
				if b[i] != 0 {
					return i
				}
			}
		}
		end = start
	}
	return -1
}

// verifyAhead verifies the records of recs in order and sends on progress the number
// verified so far, after every chunk, then closes it at the first record that does not
// verify or at the end. A record's CRC continues from the previous record's; for a
// record that verifies, its stored CRC is the one computed, so each chunk starts from
// the last stored CRC of the one before.
func verifyAhead(recs []byte, n int64, seed uint32, progress chan<- int64, quit <-chan struct{}) {
	defer close(progress)
	report := func(v int64) bool {
		select {
		case progress <- v:
			return true
		case <-quit: // the scan stopped early
			return false
		}
	}
	prev := seed
	for i := int64(0); i < n; i++ {
		c, ok := verify(recs[i*RecordSize:(i+1)*RecordSize], prev)
		if !ok {
			report(i)
			return
		}
		prev = c
		if (i+1)%verifyChunk == 0 && !report(i+1) {
			return
		}
	}
	report(n)
}

// storedCRC is the CRC a verified record carries.
func storedCRC(b []byte) uint32 {
	return uint32(b[60]) | uint32(b[61])<<8 | uint32(b[62])<<16 | uint32(b[63])<<24
}
