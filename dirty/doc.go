// Package dirty asks the kernel which pages of a memory region were written since the
// last time it asked, so that a differential save hashes and copies only those blocks.
//
// On Linux 6.7 and later it uses asynchronous userfaultfd write protection with
// PAGEMAP_SCAN, which needs no privilege:
//
//	userfaultfd(UFFD_USER_MODE_ONLY)        one per process, shared by every Tracker
//	UFFDIO_API  WP_ASYNC|WP_UNPOPULATED     faults are resolved by the kernel itself
//	UFFDIO_REGISTER  MODE_WP                Track: the pages that hold the region
//	UFFDIO_WRITEPROTECT                     Track: arm every page, populated or not
//	   ... the program writes; the first write to a protected page takes a minor
//	       fault that clears the page's protection bit (it never blocks) ...
//	PAGEMAP_SCAN  PAGE_IS_WRITTEN,          Written: report the unprotected pages and
//	   PM_SCAN_WP_MATCHING                  protect them again, page by page under the
//	                                        page-table lock, so no write is lost
//	UFFDIO_UNREGISTER                       Close: the pages no other Tracker covers
//
// Granularity is the page (os.Getpagesize). A region need not be page-aligned: every page
// that holds a byte of it is tracked, and reports are clipped to the region. Two regions
// may share a page (small Go heap objects are packed) or overlap: pages are reference
// counted, and a write found by one Tracker's scan on a page another Tracker also covers
// is handed to that Tracker, so neither misses it.
//
// What the kernel reports. A write through this process's page tables: the program's
// stores, and the kernel's writes on its behalf that go through them, which take the
// same fault: read(2) from a pipe or a file, O_DIRECT reads (the pages are pinned for
// the transfer, and pinning for writing faults), process_vm_writev, writes to
// /proc/self/mem. A page pinned for writing long-term is reported once, when it is
// pinned.
// Pages replaced or discarded under the region are reported too, or make Written fail
// (then it reports the whole region): MADV_DONTNEED (see below), mremap of other
// memory onto the region or within it (the moved range loses its registration, and
// the scan fails on it).
//
// What it never reports: a write through a long-term pin, made after the scan that
// followed the pin. The kernel or a device writes pinned pages through their physical
// address, with no page-table write and no fault: io_uring fixed buffers
// (IORING_REGISTER_BUFFERS, then READ_FIXED), RDMA memory registrations (verbs memory
// regions, as UCX and libfabric register MPI buffers on InfiniBand and similar
// fabrics), VFIO DMA, host memory registered with a GPU and written by DMA. The kernel
// keeps no per-page record of pins a program can read; ReadPins returns its
// per-process counts, which io_uring and RDMA registrations (VmPin) and VFIO (VmLck)
// are charged to, and which GPU drivers and rings set up by another process are not.
// A caller must not trust a report while such memory exists, and should check what it
// trusts: package engine hashes every block of a save whose process has pinned or
// locked memory, and scrubs (hashes a rotating share of the blocks the kernel called
// unchanged) to catch the pins no counter shows.
//
// Within those limits, reports are a superset of the pages written: such a write is
// never missed, but a page may be reported without a write of the region's own bytes,
// e.g. when another object on a shared edge page was written, after a failed scan, or
// after MarkAll. Inside the region, on private anonymous memory, reports are exact on
// this kernel.
//
// The cost falls on the program, not on the scan. Measured on Linux 6.18 (2 vCPUs of a
// shared virtual machine; ranges over a quiet and a loaded run), per GiB of 4 KiB pages:
// Written takes 5-14 ms with 0.1% of the pages written, 9-15 ms with 10%, 14-24 ms with
// 100%; the first write to a protected page costs 0.7-1.1 us (a minor fault), against
// 15 ns unprotected, and about 23 us on another virtual machine of the same kind
// (nested paging makes faults dear); Track takes 19-33 ms populated, 4 ms untouched,
// 0.07 ms on transparent huge pages; xxhash64 of the whole GiB takes 87-155 ms on one
// core. So whether tracking beats hashing every block depends on the machine: at 1 us a
// fault, up to about a tenth of the pages written per save; at 25 us, up to a few in a
// thousand. FaultCost measures the fault where the program runs. A caller about to
// overwrite the whole region calls Release first: one kernel call lifts the
// protection, the writes take no fault, and the next Written reports all.
//
// Limits:
//   - Each tracked range that does not border another splits its mapping: up to two more
//     entries in /proc/self/maps per Tracker (2,000 scattered Trackers: 28 -> 4,028;
//     2,000 packed ones: +2). With vm.max_map_count at its default 65,530, about 32,000
//     scattered Trackers fit; past that Track fails (ENOMEM, wrapped in ErrUnsupported).
//   - A write to a protected transparent huge page splits its mapping into 4 KiB pages,
//     for good: tracked memory loses the huge-page TLB benefit after its first writes.
//   - os/exec (clone with CLONE_VM|CLONE_VFORK, then execve) leaves tracking intact. The
//     child of a plain fork (from C code) gets the memory unregistered; the parent's
//     tracking is unaffected.
//   - No privilege is needed: UFFD_USER_MODE_ONLY is allowed to every user whatever
//     vm.unprivileged_userfaultfd says (that knob governs faults taken in kernel mode),
//     and writes by the kernel are reported all the same, as asynchronous protection
//     never calls the userfaultfd handler. Default container seccomp profiles block
//     userfaultfd: there Available reports ErrUnsupported.
//
// Only private anonymous memory is tracked: the Go heap (make), anonymous private mmap,
// C malloc. File-backed and shared mappings (including memfd, MAP_SHARED|MAP_ANONYMOUS and
// hugetlbfs) are refused with ErrUnsupported, because their contents can change without a
// write through this process's page tables (write(2) to the file, another process), which
// the kernel would not report; private file mappings too, as their pages not yet copied
// on write show the file's changes. Discarding tracked memory (madvise MADV_DONTNEED)
// zeroes it without a write: the kernel reports discarded 4 KiB pages as written, but a
// whole discarded huge page only with a 2026 fix to PAGEMAP_SCAN's hole handling (this
// 6.18.44 reports it). Callers should not discard tracked memory.
//
// Elsewhere (other systems, older kernels, userfaultfd blocked by seccomp) Available and
// Track return errors wrapping ErrUnsupported, and the caller hashes the whole region.
//
// The package knows nothing of checkpoints.
package dirty
