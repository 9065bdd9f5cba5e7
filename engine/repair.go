package engine

import "github.com/ckp-go/ckp/internal/repair"

// Repair rebuilds the index of the checkpoint file at path from its data file alone:
// every slot trailer (found by its magic, checked by its CRC, which is seeded with the
// file's id) names its checkpoint, version and transaction, and its payload is checked
// against its hash. A SaveAll is taken back only when every one of its versions is
// intact, so the rebuilt file keeps SaveAll atomic. Versions that retention had
// dropped but whose slots were not reused yet come back too.
//
// The new index is written beside the old one, synced, and renamed over it; the old
// index, if any, is kept as path.idx.bak. Repair needs the writer's lock (ErrLocked
// when a writer holds the file); with RepairOptions.DryRun it only reports, writes
// nothing and takes no lock.
func Repair(path string, opts *RepairOptions) (*RepairReport, error) {
	return repair.Repair(path, opts)
}

// RepairOptions configure Repair. The zero value repairs.
type RepairOptions = repair.Options

// RepairReport says what Repair found.
type RepairReport = repair.Report
