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
// Reports are a superset of the pages written: a page is never missed, but it may be
// reported without a write of the region's own bytes, e.g. when another object on a
// shared edge page was written, after a failed scan, or after MarkAll. Inside the region,
// on private anonymous memory, reports are exact on this kernel.
//
// The cost falls on the program, not on the scan. Measured on Linux 6.18 (2 vCPUs of a
// shared virtual machine; ranges over a quiet and a loaded run), per GiB of 4 KiB pages:
// Written takes 5-14 ms with 0.1% of the pages written, 9-15 ms with 10%, 14-24 ms with
// 100%; the first write to a protected page costs 0.8-1.1 us (a minor fault), against
// 15 ns unprotected; Track takes 19-33 ms populated, 4 ms untouched, 0.07 ms on
// transparent huge pages; xxhash64 of the whole GiB takes 87-155 ms. Counting the faults,
// the scan and hashing the written pages, tracking beats hashing everything up to about
// 25% of the pages written per save (2.2x cheaper at 10%, 15x at 1%); the faults alone
// cost as much as hashing everything at 40-50%. Dense writers should not be tracked.
// A caller about to overwrite the whole region calls Release first: one kernel call
// lifts the protection, the writes take no fault, and the next Written reports all.
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
