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
// The cost falls on the program, not on the scan: the first write to each protected page
// after a scan takes a minor fault (microseconds), and a write to a transparent huge page
// splits its mapping into 4 KiB pages. Dense writers are cheaper to hash than to track;
// see BENCHMARKS in the package tests.
//
// Only private anonymous memory is tracked: the Go heap (make), anonymous private mmap,
// C malloc. File-backed and shared mappings (including memfd, MAP_SHARED|MAP_ANONYMOUS and
// hugetlbfs) are refused with ErrUnsupported, because their contents can change without a
// write through this process's page tables (write(2) to the file, another process), which
// the kernel would not report. Discarding tracked memory with madvise(MADV_DONTNEED or
// MADV_FREE) is not a write: callers must not do it to a tracked region.
//
// Elsewhere (other systems, older kernels, userfaultfd blocked by seccomp) Available and
// Track return errors wrapping ErrUnsupported, and the caller hashes the whole region.
//
// The package knows nothing of checkpoints.
package dirty
