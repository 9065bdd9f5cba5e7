package index

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

// Scan walks the records in recs (the index file after its header), chained from seed,
// and calls fn once per committed transaction with its records in order. The slice
// passed to fn is reused between calls; name records alias recs. Scan stops at the first
// record that does not verify, or when fn returns an error, which it returns.
func Scan(recs []byte, seed uint32, fn func(txn []Record) error) (Result, error) {
	var res Result
	res.CRC = seed
	prev := seed
	txn := make([]Record, 0, 16)
	off := int64(0)
	n := int64(len(recs)) / RecordSize * RecordSize
	for off < n {
		// Decode straight into the next slot of txn: no copy of the record.
		if len(txn) == cap(txn) {
			txn = append(txn, Record{})[:len(txn)]
		}
		txn = txn[:len(txn)+1]
		r := &txn[len(txn)-1]
		c, ok := Decode(recs[off:off+RecordSize], prev, r)
		if !ok {
			txn = txn[:len(txn)-1]
			break
		}
		prev = c
		off += RecordSize
		if r.Flags&FlagCommit != 0 {
			if fn != nil {
				if err := fn(txn); err != nil {
					return res, err
				}
			}
			res.Records += len(txn)
			res.Txns++
			res.End = off
			res.CRC = c
			txn = txn[:0]
		}
	}
	res.Uncommitted = len(txn)
	for _, b := range recs[res.End:] {
		if b != 0 {
			res.Torn = true
			break
		}
	}
	return res, nil
}
