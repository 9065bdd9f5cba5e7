package index

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes a whole index file (header and records, the last one flagged as
// given by the caller) to path, with permissions perm, via a temporary file and a
// rename; with durable it syncs the file and the directory.
func WriteFile(path string, h Header, recs []Record, perm os.FileMode, durable bool) error {
	buf := make([]byte, HeaderSize+len(recs)*RecordSize)
	prev := EncodeHeader(buf, h)
	for i := range recs {
		prev = Encode(buf[HeaderSize+i*RecordSize:], &recs[i], prev)
	}
	tmp := path + ".tmp"
	t, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("ckp: %w", err)
	}
	_, err = t.Write(buf)
	if err == nil && durable {
		err = t.Sync()
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ckp: write %s: %w", path, err)
	}
	if durable {
		return SyncDir(path)
	}
	return nil
}

// SyncDir makes a directory entry change under dir(path) durable.
func SyncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("ckp: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ckp: sync directory of %s: %w", path, err)
	}
	return nil
}
