// Command capi is ckp's C interface: built with -buildmode=c-shared or c-archive it is
// libckp.so or libckp.a, whose functions ckp_util.h (beside this file) declares and
// documents. ckp_util.c holds the parts written in C; ckp_util.f90 in fortran/ is the
// Fortran module over the same functions.
//
//	go build -buildmode=c-shared  -o libckp.so ./capi
//	go build -buildmode=c-archive -o libckp.a  ./capi
//
// Handles are numbers (handles.go), status codes are errno values (errno.go), and
// the options string is parsed by a table of keys (options.go). The exported functions
// take and return handles as uintptr_t, which the header declares as pointer types of
// the same size and calling convention, so that no Go code ever holds a handle in a
// pointer-typed variable.
package main

/*
#include <stddef.h>
#include <stdint.h>

typedef const char ckp_cchar;

void ckp_set_last_error(const char *msg, size_t len);
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"unsafe"

	"github.com/ckp-go/ckp/engine"
)

func main() {}

// fail records err as the calling thread's last error and returns its status code.
func fail(err error) C.int {
	msg := err.Error()
	C.ckp_set_last_error((*C.char)(unsafe.Pointer(unsafe.StringData(msg))), C.size_t(len(msg)))
	return C.int(errnoOf(err))
}

// status returns 0 for nil, else fail(err).
func status(err error) C.int {
	if err == nil {
		return 0
	}
	return fail(err)
}

// goString copies a C string, or reports NULL as EINVAL naming what.
func goString(s *C.ckp_cchar, what string) (string, error) {
	if s == nil {
		return "", fmt.Errorf("%w: NULL %s", engine.ErrInvalid, what)
	}
	return C.GoString((*C.char)(s)), nil
}

//export ckpOpen
func ckpOpen(pathname, options *C.ckp_cchar, file *C.uintptr_t) C.int {
	if file == nil {
		return fail(fmt.Errorf("%w: ckpOpen: NULL file pointer", engine.ErrInvalid))
	}
	*file = 0
	path, err := goString(pathname, "pathname")
	if err != nil {
		return fail(err)
	}
	if path == "" {
		return fail(fmt.Errorf("%w: ckpOpen: empty pathname", engine.ErrInvalid))
	}
	var opts string
	if options != nil {
		opts = C.GoString((*C.char)(options))
	}
	o, err := parseOptions(opts)
	if err != nil {
		return fail(err)
	}
	eo, err := o.engineOptions()
	if err != nil {
		return fail(err)
	}
	f, err := engine.Open(path, eo)
	if err != nil {
		return fail(err)
	}
	h, err := addFile(f, o.remoteTimeout())
	if err != nil {
		f.Close()
		return fail(err)
	}
	*file = C.uintptr_t(h)
	return 0
}

//export ckpClose
func ckpClose(file C.uintptr_t) C.int {
	of, err := removeFile(uintptr(file))
	if err != nil {
		return fail(err)
	}
	return status(of.f.Close())
}

//export ckpLocate
func ckpLocate(file C.uintptr_t, name *C.ckp_cchar) C.uintptr_t {
	of, err := fileOf(uintptr(file))
	if err != nil {
		fail(err)
		return 0
	}
	n, err := goString(name, "name")
	if err != nil {
		fail(err)
		return 0
	}
	c, err := of.f.Locate(n)
	if err != nil {
		fail(err)
		return 0
	}
	h := handleOf(of, c)
	if h == 0 { // unregistered in between
		fail(fmt.Errorf("%w: no registered checkpoint %q", engine.ErrNotFound, n))
	}
	return C.uintptr_t(h)
}

//export ckpRegister
func ckpRegister(file C.uintptr_t, name *C.ckp_cchar, address unsafe.Pointer, size C.size_t, checkpoint *C.uintptr_t) C.int {
	if checkpoint != nil {
		*checkpoint = 0
	}
	of, err := fileOf(uintptr(file))
	if err != nil {
		return fail(err)
	}
	n, err := goString(name, "name")
	if err != nil {
		return fail(err)
	}
	if address == nil || size == 0 {
		return fail(fmt.Errorf("%w: checkpoint %q: NULL address or size 0", engine.ErrInvalid, n))
	}
	if uint64(size) > math.MaxInt {
		return fail(fmt.Errorf("%w: checkpoint %q: size %d too large", engine.ErrInvalid, n, uint64(size)))
	}
	// The region is the caller's memory, not Go's: the engine may keep a slice of it.
	c, err := of.f.Register(n, unsafe.Slice((*byte)(address), int(size)))
	if err != nil {
		return fail(err)
	}
	h, err := addCheckpoint(of, c)
	if err != nil {
		c.Unregister()
		return fail(err)
	}
	if checkpoint != nil {
		*checkpoint = C.uintptr_t(h)
	}
	return 0
}

//export ckpUnregister
func ckpUnregister(checkpoint C.uintptr_t) C.int {
	c, of, err := checkpointOf(uintptr(checkpoint))
	if err != nil {
		return fail(err)
	}
	if err := c.Unregister(); err != nil {
		return fail(err)
	}
	removeCheckpoint(of, c)
	return 0
}

//export ckpSave
func ckpSave(checkpoint C.uintptr_t) C.int {
	c, _, err := checkpointOf(uintptr(checkpoint))
	if err != nil {
		return fail(err)
	}
	return status(c.Save())
}

//export ckpSaveAll
func ckpSaveAll(file C.uintptr_t) C.int {
	of, err := fileOf(uintptr(file))
	if err != nil {
		return fail(err)
	}
	return status(of.f.SaveAll())
}

//export ckpRestore
func ckpRestore(checkpoint C.uintptr_t, version C.int) C.int {
	c, _, err := checkpointOf(uintptr(checkpoint))
	if err != nil {
		return fail(err)
	}
	return status(c.Restore(int(version)))
}

//export ckpRestoreAll
func ckpRestoreAll(file C.uintptr_t, version C.int) C.int {
	of, err := fileOf(uintptr(file))
	if err != nil {
		return fail(err)
	}
	return status(of.f.RestoreAll(int(version)))
}

//export ckpSync
func ckpSync(file C.uintptr_t) C.int {
	of, err := fileOf(uintptr(file))
	if err != nil {
		return fail(err)
	}
	return status(of.f.Sync())
}

// keptVersions returns the kept versions of checkpoint h, oldest first, for
// ckpNewest and ckpVersions: an error for a bad handle, or a newest version that
// does not fit in a C int.
func keptVersions(h uintptr) ([]engine.VersionInfo, error) {
	c, _, err := checkpointOf(h)
	if err != nil {
		return nil, err
	}
	vs := c.Versions()
	if len(vs) == 0 {
		// None saved, or closed or unregistered since the lookup: look again.
		if _, _, err := checkpointOf(h); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if newest := vs[len(vs)-1].Version; newest > math.MaxInt32 {
		return nil, fmt.Errorf("%w: checkpoint %q: newest version %d does not fit in an int", engine.ErrVersion, c.Name(), newest)
	}
	return vs, nil
}

//export ckpNewest
func ckpNewest(checkpoint C.uintptr_t, version *C.int) C.int {
	if version == nil {
		return fail(fmt.Errorf("%w: ckpNewest: NULL version pointer", engine.ErrInvalid))
	}
	vs, err := keptVersions(uintptr(checkpoint))
	if err != nil {
		return fail(err)
	}
	*version = 0
	if len(vs) > 0 {
		*version = C.int(vs[len(vs)-1].Version)
	}
	return 0
}

//export ckpVersions
func ckpVersions(checkpoint C.uintptr_t, versions *C.int, capacity C.int, count *C.int) C.int {
	if count == nil {
		return fail(fmt.Errorf("%w: ckpVersions: NULL count pointer", engine.ErrInvalid))
	}
	*count = 0
	if capacity < 0 || (capacity > 0 && versions == nil) {
		return fail(fmt.Errorf("%w: ckpVersions: capacity %d with a NULL or no array", engine.ErrInvalid, int(capacity)))
	}
	vs, err := keptVersions(uintptr(checkpoint))
	if err != nil {
		return fail(err)
	}
	// Versions are numbered from 1 up, so there are no more of them than the newest.
	out := unsafe.Slice(versions, min(int(capacity), len(vs)))
	for i := range out {
		out[i] = C.int(vs[i].Version)
	}
	*count = C.int(len(vs))
	return 0
}

//export ckpFlush
func ckpFlush(file C.uintptr_t) C.int {
	of, err := fileOf(uintptr(file))
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), of.timeout)
	defer cancel()
	return status(of.f.Flush(ctx))
}

// jobVersion converts a job version for C: 0 stays "none".
func jobVersion(of *openFile, v int) (C.int, error) {
	if v > math.MaxInt32 {
		return 0, fmt.Errorf("%w: %s: job version %d does not fit in an int", engine.ErrVersion, of.f.Path(), v)
	}
	return C.int(v), nil
}

// jobLife reads the job's newest life and its restart point for ckpJobVersion and
// ckpJobLife (0 for either when there is none), within timeout=.
func jobLife(file C.uintptr_t) (life, version C.int, err error) {
	of, err := fileOf(uintptr(file))
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), of.timeout)
	defer cancel()
	l, v, err := of.f.JobLife(ctx)
	if err != nil {
		return 0, 0, err
	}
	if l > math.MaxInt32 {
		return 0, 0, fmt.Errorf("%w: %s: life %d of the job does not fit in an int", engine.ErrVersion, of.f.Path(), l)
	}
	version, err = jobVersion(of, v)
	return C.int(l), version, err
}

//export ckpJobVersion
func ckpJobVersion(file C.uintptr_t, version *C.int) C.int {
	if version == nil {
		return fail(fmt.Errorf("%w: ckpJobVersion: NULL version pointer", engine.ErrInvalid))
	}
	_, v, err := jobLife(file)
	if err != nil {
		return fail(err)
	}
	*version = v
	return 0
}

//export ckpJobLife
func ckpJobLife(file C.uintptr_t, life, version *C.int) C.int {
	if life == nil || version == nil {
		return fail(fmt.Errorf("%w: ckpJobLife: NULL life or version pointer", engine.ErrInvalid))
	}
	*life, *version = 0, 0
	l, v, err := jobLife(file)
	if err != nil {
		return fail(err)
	}
	*life, *version = l, v
	return 0
}

//export ckpRestoreJob
func ckpRestoreJob(file C.uintptr_t, version *C.int) C.int {
	if version != nil {
		*version = 0
	}
	of, err := fileOf(uintptr(file))
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), of.timeout)
	defer cancel()
	v, err := of.f.RestoreJob(ctx)
	if err != nil {
		return fail(err)
	}
	cv, err := jobVersion(of, v)
	if err != nil {
		return fail(err)
	}
	if version != nil {
		*version = cv
	}
	return 0
}
