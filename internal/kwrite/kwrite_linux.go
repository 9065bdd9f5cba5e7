//go:build linux

// Package kwrite makes the kernel write a program's memory, for tests of written-page
// tracking: through the page tables (read(2) from a pipe: PipeRead), and through a
// long-term pin as a device does, with no write through the page tables (a minimal
// io_uring: one ring, fixed buffers and IORING_OP_READ_FIXED, through raw system calls).
package kwrite

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel interface, from include/uapi/linux/io_uring.h.
const (
	offSQRing = 0
	offSQEs   = 0x10000000

	featSingleMmap = 1 << 0

	opReadFixed = 4

	enterGetEvents = 1 << 0

	registerBuffers   = 0
	unregisterBuffers = 1
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

type sqe struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off, addr     uint64
	len, rwFlags  uint32
	userData      uint64
	bufIndex      uint16
	personality   uint16
	spliceFDIn    int32
	addr3, pad2   uint64
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

var (
	_ [120 - unsafe.Sizeof(params{})]byte
	_ [unsafe.Sizeof(params{}) - 120]byte
	_ [64 - unsafe.Sizeof(sqe{})]byte
	_ [unsafe.Sizeof(sqe{}) - 64]byte
	_ [16 - unsafe.Sizeof(cqe{})]byte
)

// ErrUnavailable is wrapped by New's error when this kernel or process has no io_uring
// (an old kernel, kernel.io_uring_disabled, a seccomp profile).
var ErrUnavailable = errors.New("kwrite: io_uring unavailable")

// Ring is one io_uring with a submission queue of a few entries. It is not safe for
// concurrent use.
type Ring struct {
	fd    int
	rings []byte // SQ and CQ rings (one mapping: IORING_FEAT_SINGLE_MMAP)
	sqes  []byte
	p     params
}

// New sets up a ring, or returns an error wrapping ErrUnavailable.
func New() (*Ring, error) {
	r := &Ring{}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&r.p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %w", ErrUnavailable, e)
	}
	r.fd = int(fd)
	if err := r.mmap(); err != nil {
		unix.Close(r.fd)
		return nil, err
	}
	return r, nil
}

// Require returns a new ring, closed at the end of the test; when this kernel or
// process has none it skips the test, or fails it under CKP_DIRTY_REQUIRE=1 (as the
// kernel-tracking tests do).
func Require(tb testing.TB) *Ring {
	tb.Helper()
	r, err := New()
	if errors.Is(err, ErrUnavailable) && os.Getenv("CKP_DIRTY_REQUIRE") != "1" {
		tb.Skipf("%v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// Shared returns the ring's file descriptor and its parameters, for a child process to
// take it up with FromShared (the descriptor inherited: a Unix socket refuses io_uring
// descriptors). The ring keeps the descriptor: give the child a dup of it.
func (r *Ring) Shared() (fd int, params []byte) {
	return r.fd, unsafe.Slice((*byte)(unsafe.Pointer(&r.p)), unsafe.Sizeof(r.p))
}

// FromShared takes up a ring another process set up, from its descriptor (received)
// and parameters (from Shared). Fixed buffers registered on it are charged to the
// process that set it up, not to this one.
func FromShared(fd int, params []byte) (*Ring, error) {
	r := &Ring{fd: fd}
	if len(params) != int(unsafe.Sizeof(r.p)) {
		return nil, fmt.Errorf("kwrite: %d bytes of parameters", len(params))
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r.p)), unsafe.Sizeof(r.p)), params)
	if err := r.mmap(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Ring) mmap() error {
	if r.p.features&featSingleMmap == 0 {
		return fmt.Errorf("%w: kernel without IORING_FEAT_SINGLE_MMAP", ErrUnavailable)
	}
	size := max(r.p.sqOff.array+r.p.sqEntries*4, r.p.cqOff.cqes+r.p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	var err error
	r.rings, err = unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("kwrite: mmap rings: %w", err)
	}
	r.sqes, err = unix.Mmap(r.fd, offSQEs, int(r.p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Munmap(r.rings)
		return fmt.Errorf("kwrite: mmap sqes: %w", err)
	}
	return nil
}

func (r *Ring) u32(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.rings[off])) }

// RegisterBuffers registers bufs as the ring's fixed buffers 0, 1, ...: the kernel pins
// their pages (long-term, accounted in the process's VmPin) until UnregisterBuffers or
// Close.
func (r *Ring) RegisterBuffers(bufs ...[]byte) error {
	iov := make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		iov[i].Base = &b[0]
		iov[i].SetLen(len(b))
	}
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerBuffers, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), 0, 0)
	runtime.KeepAlive(iov)
	runtime.KeepAlive(bufs)
	if e != 0 {
		return fmt.Errorf("kwrite: IORING_REGISTER_BUFFERS: %w", e)
	}
	return nil
}

// UnregisterBuffers unpins the fixed buffers.
func (r *Ring) UnregisterBuffers() error {
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), unregisterBuffers, 0, 0, 0, 0)
	if e != 0 {
		return fmt.Errorf("kwrite: IORING_UNREGISTER_BUFFERS: %w", e)
	}
	return nil
}

// ReadFixed reads len(dst) bytes of f at off into dst, which lies in fixed buffer buf,
// with IORING_OP_READ_FIXED, and waits for it. The kernel writes dst through the pin.
func (r *Ring) ReadFixed(f *os.File, off int64, dst []byte, buf int) (int, error) {
	sq := &r.p.sqOff
	tail := atomic.LoadUint32(r.u32(sq.tail))
	idx := tail & *r.u32(sq.ringMask)
	e := (*sqe)(unsafe.Pointer(&r.sqes[uintptr(idx)*unsafe.Sizeof(sqe{})]))
	*e = sqe{opcode: opReadFixed, fd: int32(f.Fd()), off: uint64(off), addr: uint64(uintptr(unsafe.Pointer(&dst[0]))),
		len: uint32(len(dst)), userData: 1, bufIndex: uint16(buf)}
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&r.rings[sq.array])), r.p.sqEntries)
	array[idx] = idx
	atomic.StoreUint32(r.u32(sq.tail), tail+1)
	_, _, en := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 1, enterGetEvents, 0, 0)
	runtime.KeepAlive(f)
	runtime.KeepAlive(dst)
	if en != 0 {
		return 0, fmt.Errorf("kwrite: io_uring_enter: %w", en)
	}
	cq := &r.p.cqOff
	head := atomic.LoadUint32(r.u32(cq.head))
	if head == atomic.LoadUint32(r.u32(cq.tail)) {
		return 0, errors.New("kwrite: no completion after io_uring_enter")
	}
	c := (*cqe)(unsafe.Pointer(&r.rings[uintptr(cq.cqes)+uintptr(head&*r.u32(cq.ringMask))*unsafe.Sizeof(cqe{})]))
	res := c.res
	atomic.StoreUint32(r.u32(cq.head), head+1)
	if res < 0 {
		return 0, fmt.Errorf("kwrite: READ_FIXED: %w", unix.Errno(-res))
	}
	return int(res), nil
}

// Close unmaps and closes the ring, which unregisters its buffers (the kernel finishes
// that in the background). Closing twice does nothing.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return nil
	}
	unix.Munmap(r.sqes)
	unix.Munmap(r.rings)
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// PipeRead fills dst with data (as long as dst) by read(2) calls from a pipe that a
// goroutine feeds: the kernel writes dst through the page tables.
func PipeRead(dst, data []byte) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	go func() {
		pw.Write(data[:len(dst)])
		pw.Close()
	}()
	// syscall.Read, not os.File.Read: a direct read(2) into dst.
	for len(dst) > 0 {
		n, err := syscall.Read(int(pr.Fd()), dst)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		dst = dst[n:]
	}
	return nil
}
