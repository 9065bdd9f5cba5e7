package main

import (
	"fmt"
	"math/bits"
	"sync"
	"syscall"
	"time"

	"github.com/ckp-go/ckp/engine"
)

// Handles are numbers, never addresses: C holds no Go pointer, and a stale or foreign
// handle is refused, never dereferenced. A CheckpointFile is the file's id (1, 2, ...);
// a Checkpoint is its file's id in the high half of the word and its own sequence
// number within the file in the low half, so a Checkpoint of a closed file is told
// apart (EBADF) from an unregistered one (ENOENT) without keeping anything for either.
// Ids are never reused.
const seqBits = bits.UintSize / 2

const maxID = 1<<seqBits - 1

// errHandles: the ids of one half of a handle ran out (only a 32-bit process that
// opens 65,535 files, or registers 65,535 times on one file, gets there).
var errHandles = fmt.Errorf("%w: too many handles", syscall.EMFILE)

// openFile is an open CheckpointFile.
type openFile struct {
	f  *engine.File
	id uintptr
	// timeout bounds ckpFlush, ckpJobVersion and ckpRestoreJob (the timeout= option).
	timeout time.Duration

	nextSeq uintptr
	ckpts   map[uintptr]*engine.Checkpoint // by sequence number
	seqOf   map[*engine.Checkpoint]uintptr
}

// table holds every open file. Lookups take the read lock; open, register,
// unregister and close take the write lock, never across an engine call that waits.
var table = struct {
	sync.RWMutex
	files  map[uintptr]*openFile
	nextID uintptr
}{files: make(map[uintptr]*openFile), nextID: 1}

// addFile records an opened engine file, whose calls that wait for the store wait up
// to timeout, and returns its handle.
func addFile(f *engine.File, timeout time.Duration) (uintptr, error) {
	table.Lock()
	defer table.Unlock()
	if table.nextID > maxID {
		return 0, errHandles
	}
	id := table.nextID
	table.nextID++
	table.files[id] = &openFile{f: f, id: id, timeout: timeout, nextSeq: 1,
		ckpts: make(map[uintptr]*engine.Checkpoint), seqOf: make(map[*engine.Checkpoint]uintptr)}
	return id, nil
}

// errNullFile and errNullCheckpoint are the errors of NULL handles.
var (
	errNullFile       = fmt.Errorf("%w: NULL CheckpointFile", engine.ErrInvalid)
	errNullCheckpoint = fmt.Errorf("%w: NULL Checkpoint", engine.ErrInvalid)
)

// fileOf returns the open file of handle h.
func fileOf(h uintptr) (*openFile, error) {
	if h == 0 {
		return nil, errNullFile
	}
	table.RLock()
	of := table.files[h]
	table.RUnlock()
	if of == nil {
		return nil, fmt.Errorf("%w: CheckpointFile %#x is closed or was never opened", engine.ErrClosed, h)
	}
	return of, nil
}

// removeFile takes handle h out of the table (ckpClose) and returns its file.
func removeFile(h uintptr) (*openFile, error) {
	if h == 0 {
		return nil, errNullFile
	}
	table.Lock()
	defer table.Unlock()
	of := table.files[h]
	if of == nil {
		return nil, fmt.Errorf("%w: CheckpointFile %#x is closed or was never opened", engine.ErrClosed, h)
	}
	delete(table.files, h)
	return of, nil
}

// addCheckpoint records a registered checkpoint of of and returns its handle.
func addCheckpoint(of *openFile, c *engine.Checkpoint) (uintptr, error) {
	table.Lock()
	defer table.Unlock()
	if of.nextSeq > maxID {
		return 0, errHandles
	}
	seq := of.nextSeq
	of.nextSeq++
	of.ckpts[seq] = c
	of.seqOf[c] = seq
	return of.id<<seqBits | seq, nil
}

// handleOf returns the handle of a registered checkpoint of of, or 0.
func handleOf(of *openFile, c *engine.Checkpoint) uintptr {
	table.RLock()
	defer table.RUnlock()
	if seq, ok := of.seqOf[c]; ok {
		return of.id<<seqBits | seq
	}
	return 0
}

// checkpointOf returns the engine checkpoint of handle h and its file.
func checkpointOf(h uintptr) (*engine.Checkpoint, *openFile, error) {
	if h == 0 {
		return nil, nil, errNullCheckpoint
	}
	fid, seq := h>>seqBits, h&maxID
	table.RLock()
	of := table.files[fid]
	var c *engine.Checkpoint
	if of != nil {
		c = of.ckpts[seq]
	}
	table.RUnlock()
	switch {
	case of == nil:
		return nil, nil, fmt.Errorf("%w: the CheckpointFile of Checkpoint %#x is closed", engine.ErrClosed, h)
	case c == nil:
		return nil, nil, fmt.Errorf("%w: Checkpoint %#x is not registered", engine.ErrNotFound, h)
	}
	return c, of, nil
}

// removeCheckpoint forgets the handle of c (after ckpUnregister).
func removeCheckpoint(of *openFile, c *engine.Checkpoint) {
	table.Lock()
	defer table.Unlock()
	if seq, ok := of.seqOf[c]; ok {
		delete(of.seqOf, c)
		delete(of.ckpts, seq)
	}
}
