//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/ckp-go/ckp/powercut/internal/record"
	"golang.org/x/sys/unix"
)

// The "log" workload is the stand-in used to prove the harness: it appends
// records (see package record) to /mnt/log and prints "@ckp acked N" after
// record N-1 is written. In mode fsync it calls fsync before acking; in
// mode nosync (the control) it does not, so a power cut must lose acked
// records.
//
// Parameters: CKP_RECSIZE (bytes, default 65536), CKP_RECORDS (default
// 2000), CKP_SEED (default 1).
func init() { workloads["log"] = logWorkload }

func logWorkload(mode string) error {
	if mode != "fsync" && mode != "nosync" {
		return fmt.Errorf("log: CKP_MODE must be fsync or nosync, not %q", mode)
	}
	size, err := strconv.Atoi(env("CKP_RECSIZE", "65536"))
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(env("CKP_RECORDS", "2000"))
	if err != nil {
		return err
	}
	seed, err := strconv.ParseUint(env("CKP_SEED", "1"), 10, 64)
	if err != nil {
		return err
	}
	// The empty file and its directory entry are made durable before the
	// timed part, so that the control loses data, not the whole file.
	f, err := os.OpenFile("/mnt/log", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	if err := syncDir("/mnt"); err != nil {
		return err
	}
	ready("workload=log mode=%s recsize=%d records=%d", mode, size, n)
	buf := make([]byte, size)
	for i := 0; i < n; i++ {
		record.Fill(buf, seed, uint64(i))
		if _, err := f.Write(buf); err != nil {
			return fmt.Errorf("write record %d: %w", i, err)
		}
		if mode == "fsync" {
			if err := f.Sync(); err != nil {
				return fmt.Errorf("fsync record %d: %w", i, err)
			}
		}
		say("acked %d", i+1)
	}
	say("done records=%d", n)
	return nil
}

func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}
