//go:build linux && (amd64 || arm64 || riscv64 || loong64 || s390x)

package dirty

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel interface, from include/uapi/linux/userfaultfd.h and fs.h (Linux 6.7+); the
// headers x/sys is generated from predate PAGEMAP_SCAN and UFFD_FEATURE_WP_ASYNC. The
// ioctl numbers use the generic encoding (dir<<30 | size<<16 | type<<8 | nr) shared by the
// architectures this file builds for.
const (
	uffdUserModeOnly = 1 // userfaultfd flag: handle faults from user mode only (no privilege needed)
	uffdAPI          = 0xAA

	uffdFeatureWPUnpopulated = 1 << 13 // arm unpopulated pages too (pte markers)
	uffdFeatureWPAsync       = 1 << 15 // the kernel resolves write faults itself

	uffdioRegisterModeWP     = 1 << 1
	uffdioWriteprotectModeWP = 1 << 0
	uffdioWriteprotectBit    = 1 << 0x06 // _UFFDIO_WRITEPROTECT in uffdio_register.ioctls

	iocUffdioAPI          = 0xC018AA3F // _IOWR(0xAA, 0x3F, struct uffdio_api)
	iocUffdioRegister     = 0xC020AA00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	iocUffdioUnregister   = 0x8010AA01 // _IOR(0xAA, 0x01, struct uffdio_range)
	iocUffdioWriteprotect = 0xC018AA06 // _IOWR(0xAA, 0x06, struct uffdio_writeprotect)
	iocPagemapScan        = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg)
	iocProcmapQuery       = 0xC0686611 // _IOWR('f', 17, struct procmap_query), Linux 6.11

	procmapQueryCoveringOrNextVMA = 0x10 // PROCMAP_QUERY_COVERING_OR_NEXT_VMA
	procmapQueryFileBackedVMA     = 0x20 // PROCMAP_QUERY_FILE_BACKED_VMA

	pageIsWritten = 1 << 1 // PAGE_IS_WRITTEN

	pmScanWPMatching   = 1 << 0 // PM_SCAN_WP_MATCHING: protect the pages reported
	pmScanCheckWPAsync = 1 << 1 // PM_SCAN_CHECK_WPASYNC: fail (EPERM) on memory not armed for async WP
)

type uffdioAPI struct{ api, features, ioctls uint64 }

type uffdioRange struct{ start, len uint64 }

type uffdioRegister struct {
	rng          uffdioRange
	mode, ioctls uint64
}

type uffdioWriteprotect struct {
	rng  uffdioRange
	mode uint64
}

// pageRegion is struct page_region.
type pageRegion struct{ start, end, categories uint64 }

// pmScanArg is struct pm_scan_arg.
type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages       uint64
	categoryInverted, categoryMask, categoryAnyofMask, returnMask uint64
}

// procmapQuery is struct procmap_query.
type procmapQuery struct {
	size, queryFlags, queryAddr, vmaStart, vmaEnd, vmaFlags, vmaPageSize, vmaOffset, inode uint64
	devMajor, devMinor, vmaNameSize, buildIDSize                                           uint32
	vmaNameAddr, buildIDAddr                                                               uint64
}

// Compile-time checks of the layouts the ioctl numbers encode.
var (
	_ [24 - unsafe.Sizeof(uffdioAPI{})]byte
	_ [unsafe.Sizeof(uffdioAPI{}) - 24]byte
	_ [32 - unsafe.Sizeof(uffdioRegister{})]byte
	_ [unsafe.Sizeof(uffdioRegister{}) - 32]byte
	_ [16 - unsafe.Sizeof(uffdioRange{})]byte
	_ [24 - unsafe.Sizeof(uffdioWriteprotect{})]byte
	_ [unsafe.Sizeof(uffdioWriteprotect{}) - 24]byte
	_ [96 - unsafe.Sizeof(pmScanArg{})]byte
	_ [unsafe.Sizeof(pmScanArg{}) - 96]byte
	_ [24 - unsafe.Sizeof(pageRegion{})]byte
	_ [104 - unsafe.Sizeof(procmapQuery{})]byte
	_ [unsafe.Sizeof(procmapQuery{}) - 104]byte
)

// scanVecLen is the number of ranges one PAGEMAP_SCAN call can return; a scan that finds
// more goes on from where the kernel stopped (walk_end).
const scanVecLen = 1024

// scanBuf is a Tracker's output vector for PAGEMAP_SCAN.
type scanBuf struct{ vec []pageRegion }

var sys struct {
	once    sync.Once
	err     error
	uffd    int // the process's userfaultfd, never closed
	pagemap int // /proc/self/pagemap, never closed
	maps    int // /proc/self/maps, never closed
}

func setup() error {
	sys.once.Do(func() { sys.err = open() })
	return sys.err
}

func unsupported(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnsupported, what, err)
}

func open() error {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK|uffdUserModeOnly, 0, 0)
	if e != 0 {
		var why string
		switch e {
		case unix.ENOSYS:
			why = "userfaultfd: not in this kernel or blocked by seccomp"
		case unix.EPERM:
			why = "userfaultfd: refused (seccomp, an LSM, or vm.unprivileged_userfaultfd)"
		case unix.EINVAL:
			why = "userfaultfd: kernel older than 5.11 (no UFFD_USER_MODE_ONLY)"
		default:
			why = "userfaultfd"
		}
		return unsupported(why, e)
	}
	uffd := int(fd)
	api := uffdioAPI{api: uffdAPI, features: uffdFeatureWPAsync | uffdFeatureWPUnpopulated}
	if err := ioctl(uffd, iocUffdioAPI, unsafe.Pointer(&api)); err != nil {
		unix.Close(uffd)
		return unsupported("UFFDIO_API with WP_ASYNC|WP_UNPOPULATED (needs Linux 6.7)", err)
	}
	pm, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(uffd)
		return unsupported("open /proc/self/pagemap", err)
	}
	maps, err := unix.Open("/proc/self/maps", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(uffd)
		unix.Close(pm)
		return unsupported("open /proc/self/maps", err)
	}
	sys.uffd, sys.pagemap, sys.maps = uffd, pm, maps
	if err := selfTest(); err != nil {
		unix.Close(uffd)
		unix.Close(pm)
		unix.Close(maps)
		return err
	}
	return nil
}

// selfTest tracks two pages of fresh memory through one write and two scans.
func selfTest() error {
	ps := int(pageSize)
	mem, err := unix.Mmap(-1, 0, 2*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return unsupported("self-test mmap", err)
	}
	defer unix.Munmap(mem)
	lo := uintptr(unsafe.Pointer(&mem[0]))
	s := span{lo, lo + 2*pageSize}
	if err := register(s); err != nil {
		return err
	}
	defer unregister(s)
	if err := protect(s); err != nil {
		return err
	}
	mem[ps] = 1
	var sb scanBuf
	got, err := scanWritten(s.lo, s.hi, nil, &sb)
	if err != nil {
		return unsupported("PAGEMAP_SCAN (needs Linux 6.7)", err)
	}
	again, err := scanWritten(s.lo, s.hi, nil, &sb)
	if err != nil {
		return unsupported("PAGEMAP_SCAN (needs Linux 6.7)", err)
	}
	if len(got) != 1 || got[0] != (span{lo + pageSize, lo + 2*pageSize}) || len(again) != 0 {
		return unsupported("self-test", fmt.Errorf("wrote page 1 of 2, scans reported %v then %v", got, again))
	}
	return nil
}

// ioctl issues an ioctl, retrying on EINTR and EAGAIN.
func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, err := ioctlN(fd, req, arg)
	return err
}

func ioctlN(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
	for tries := 0; ; tries++ {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e == 0 {
			return int(r), nil
		}
		if (e != unix.EINTR && e != unix.EAGAIN) || tries == 100 {
			return 0, e
		}
	}
}

// checkTrackable refuses memory whose contents can change without a write through this
// process's page tables: any mapping backed by a file, which includes shmem, memfd, shared
// anonymous memory and hugetlbfs (the kernel would register it, but write(2) to the file or
// another process's stores change the bytes unreported), and private file mappings, whose
// pages not yet copied on write show changes to the file.
func checkTrackable(lo, hi uintptr) error {
	q := procmapQuery{
		size:       uint64(unsafe.Sizeof(procmapQuery{})),
		queryFlags: procmapQueryFileBackedVMA | procmapQueryCoveringOrNextVMA,
		queryAddr:  uint64(lo),
	}
	err := ioctl(sys.maps, iocProcmapQuery, unsafe.Pointer(&q))
	switch {
	case err == nil:
		if uintptr(q.vmaStart) < hi {
			return fmt.Errorf("%w: [%#x, %#x) is file-backed or shared memory (mapping at %#x, inode %d)",
				ErrUnsupported, lo, hi, q.vmaStart, q.inode)
		}
		return nil
	case errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EINVAL):
		return checkMaps(lo, hi) // Linux 6.7 to 6.10: no PROCMAP_QUERY
	}
	return unsupported("PROCMAP_QUERY", err)
}

// checkMaps is checkTrackable from the text of /proc/self/maps: every mapping in [lo, hi)
// must be private and have no inode.
func checkMaps(lo, hi uintptr) error {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return unsupported("open /proc/self/maps", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode [path]
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		a, z, _ := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(a, 16, 64)
		end, err2 := strconv.ParseUint(z, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if uintptr(start) >= hi {
			break
		}
		if uintptr(end) <= lo {
			continue
		}
		if !strings.HasSuffix(fields[1], "p") || fields[4] != "0" {
			return fmt.Errorf("%w: [%#x, %#x) is file-backed or shared memory (%s)", ErrUnsupported, lo, hi, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return unsupported("read /proc/self/maps", err)
	}
	return nil
}

func register(s span) error {
	r := uffdioRegister{rng: uffdioRange{uint64(s.lo), uint64(s.hi - s.lo)}, mode: uffdioRegisterModeWP}
	if err := ioctl(sys.uffd, iocUffdioRegister, unsafe.Pointer(&r)); err != nil {
		what := fmt.Sprintf("UFFDIO_REGISTER [%#x, %#x)", s.lo, s.hi)
		switch {
		case errors.Is(err, unix.EBUSY):
			what += " (registered by another userfaultfd)"
		case errors.Is(err, unix.ENOMEM):
			what += " (vm.max_map_count reached?)"
		case errors.Is(err, unix.EINVAL):
			what += " (memory of a kind the kernel cannot track)"
		}
		return unsupported(what, err)
	}
	if r.ioctls&uffdioWriteprotectBit == 0 {
		_ = unregister(s)
		return fmt.Errorf("%w: UFFDIO_REGISTER [%#x, %#x): no write protection for this memory", ErrUnsupported, s.lo, s.hi)
	}
	return nil
}

func unregister(s span) error {
	r := uffdioRange{uint64(s.lo), uint64(s.hi - s.lo)}
	if err := ioctl(sys.uffd, iocUffdioUnregister, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("dirty: UFFDIO_UNREGISTER [%#x, %#x): %w", s.lo, s.hi, err)
	}
	return nil
}

func protect(s span) error {
	w := uffdioWriteprotect{rng: uffdioRange{uint64(s.lo), uint64(s.hi - s.lo)}, mode: uffdioWriteprotectModeWP}
	if err := ioctl(sys.uffd, iocUffdioWriteprotect, unsafe.Pointer(&w)); err != nil {
		return unsupported(fmt.Sprintf("UFFDIO_WRITEPROTECT [%#x, %#x)", s.lo, s.hi), err)
	}
	return nil
}

// unprotect removes the write protection of s: its pages then count as written (the
// kernel's PAGE_IS_WRITTEN is "not protected") and writes to them take no fault.
func unprotect(s span) error {
	w := uffdioWriteprotect{rng: uffdioRange{uint64(s.lo), uint64(s.hi - s.lo)}}
	if err := ioctl(sys.uffd, iocUffdioWriteprotect, unsafe.Pointer(&w)); err != nil {
		return fmt.Errorf("dirty: UFFDIO_WRITEPROTECT (off) [%#x, %#x): %w", s.lo, s.hi, err)
	}
	return nil
}

// scanWritten appends to dst the written pages of [lo, hi) and protects them again. On
// failure it appends everything from where the failed call started, as pages found there
// may have been protected without being reported.
func scanWritten(lo, hi uintptr, dst []span, sb *scanBuf) ([]span, error) {
	if sb.vec == nil {
		sb.vec = make([]pageRegion, scanVecLen)
	}
	for start := lo; start < hi; {
		arg := pmScanArg{
			size:  uint64(unsafe.Sizeof(pmScanArg{})),
			flags: pmScanWPMatching | pmScanCheckWPAsync,
			start: uint64(start), end: uint64(hi),
			vec: uint64(uintptr(unsafe.Pointer(&sb.vec[0]))), vecLen: uint64(len(sb.vec)),
			categoryMask: pageIsWritten, returnMask: pageIsWritten,
		}
		n, err := ioctlN(sys.pagemap, iocPagemapScan, unsafe.Pointer(&arg))
		runtime.KeepAlive(sb.vec)
		if err != nil {
			return appendSpan(dst, span{start, hi}), fmt.Errorf("PAGEMAP_SCAN: %w", err)
		}
		for _, r := range sb.vec[:n] {
			dst = appendSpan(dst, span{uintptr(r.start), uintptr(r.end)})
		}
		end := uintptr(arg.walkEnd)
		if end <= start || end > hi {
			return appendSpan(dst, span{start, hi}), fmt.Errorf("PAGEMAP_SCAN: walk ended at %#x in [%#x, %#x)", end, start, hi)
		}
		start = end
	}
	return dst, nil
}

// status is /proc/self/status, opened once and read from its start each time.
var status struct {
	sync.Mutex
	fd  int // 0: not open yet
	buf []byte
}

func readPins() (Pins, error) {
	status.Lock()
	defer status.Unlock()
	if status.fd == 0 {
		fd, err := unix.Open("/proc/self/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return Pins{}, fmt.Errorf("dirty: open /proc/self/status: %w", err)
		}
		status.fd, status.buf = fd, make([]byte, 16<<10)
	}
	n, err := unix.Pread(status.fd, status.buf, 0)
	if err != nil {
		return Pins{}, fmt.Errorf("dirty: read /proc/self/status: %w", err)
	}
	var p Pins
	pin, lck := false, false
	for b := status.buf[:n]; len(b) > 0; {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("VmPin:")):
			p.Pinned, pin = statusKB(line[6:])
		case bytes.HasPrefix(line, []byte("VmLck:")):
			p.Locked, lck = statusKB(line[6:])
		}
	}
	if !pin || !lck {
		return Pins{}, fmt.Errorf("dirty: /proc/self/status: no readable VmPin and VmLck lines")
	}
	return p, nil
}

// statusKB parses "   123 kB" into bytes.
func statusKB(b []byte) (int64, bool) {
	b = bytes.TrimSpace(b)
	num, ok := bytes.CutSuffix(b, []byte(" kB"))
	if !ok || len(num) == 0 || len(num) > 15 {
		return 0, false
	}
	var v int64
	for _, c := range bytes.TrimSpace(num) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v << 10, true
}

// scratch is the memory measureFaultCost writes: faultPages pages, registered with the
// process's userfaultfd for good.
var scratch struct {
	sync.Mutex
	mem []byte
}

func measureFaultCost() (time.Duration, error) {
	scratch.Lock()
	defer scratch.Unlock()
	ps := int(pageSize)
	if scratch.mem == nil {
		mem, err := unix.Mmap(-1, 0, faultPages*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return 0, unsupported("fault-cost mmap", err)
		}
		_ = unix.Madvise(mem, unix.MADV_NOHUGEPAGE) // one fault per 4 KiB page, as on most tracked memory
		for i := 0; i < len(mem); i += ps {
			mem[i] = 1
		}
		lo := uintptr(unsafe.Pointer(&mem[0]))
		if err := register(span{lo, lo + uintptr(len(mem))}); err != nil {
			unix.Munmap(mem)
			return 0, err
		}
		scratch.mem = mem
	}
	mem := scratch.mem
	lo := uintptr(unsafe.Pointer(&mem[0]))
	s := span{lo, lo + uintptr(len(mem))}
	var rounds [faultRounds]time.Duration
	for r := range rounds {
		if err := protect(s); err != nil {
			return 0, err
		}
		t0 := time.Now()
		for i := 0; i < len(mem); i += ps {
			mem[i]++ // a fault each
		}
		t1 := time.Now()
		for i := 0; i < len(mem); i += ps {
			mem[i]++ // the same writes, unprotected now
		}
		t2 := time.Now()
		rounds[r] = max(0, t1.Sub(t0)-t2.Sub(t1)) / faultPages
	}
	slices.Sort(rounds[:])
	return rounds[faultRounds/2], nil
}
