// Package engine saves named regions of a program's memory as numbered versions and
// restores any of them after a crash.
//
// A checkpoint file is a data file (path) and an index file (path + ".idx"), both
// memory-mapped. Open opens or creates them; Register (or RegisterValue, for a
// pointer-free value) names a region; Save copies the region into the data file as its
// next version, with an xxhash64 the restore checks; SaveAll saves every registered
// region as one transaction (all of them or none after a crash). Restore and RestoreAll
// copy a version back: 1..N are absolute, 0 is the newest, -1 the one before, and so
// on. Locate finds a registered Checkpoint by name, Unregister forgets one, Close
// flushes and releases the file.
//
//	f, err := engine.Open("run.ckp", &engine.Options{Sync: engine.SyncNone, KeepVersions: 3})
//	c, err := f.Register("grid", grid)
//	_ = c.Restore(0) // resume from the newest version, if any
//	for step := range steps {
//		compute(grid)
//		err = c.Save()
//	}
//
// Options choose what a save costs and what it survives:
//   - Sync: SyncNone, SyncEvery(n), SyncInterval(d) or SyncAlways, from a process kill
//     (every policy) to a power cut (SyncAlways, or File.Sync after the save);
//     docs/DURABILITY.md has what each survives and costs.
//   - KeepVersions keeps the newest K versions of each checkpoint and reuses their
//     space; MaxSize bounds the data file (a save past it fails with ErrFull).
//   - Differential stores only the blocks of a large region that changed since the
//     previous version, found by the kernel's written-page tracking (package dirty) or
//     by hashing.
//   - Remote uploads versions in the background to an object store or a shared
//     directory (package store), so that another node can restore them; the ranks of a
//     job agree on a version with JobVersion and RestoreJob.
//
// Every error wraps one of the Err variables (errors.Is). A failed call leaves the
// caller's memory and every saved version as they were; damaged files are detected,
// never trusted, and do not crash the process. A File and its Checkpoints are safe for
// concurrent use; one writer holds a file at a time (ErrLocked), and any number of
// ReadOnly readers may open it alongside.
//
// Info, Checkpoints, VersionsOf, ReadVersion, Verify and Repair serve tools such as
// cmd/ckp. The bytes on disk are described in docs/FORMAT.md.
package engine
