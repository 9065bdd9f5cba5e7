package dirty

import (
	"fmt"
	"sync"
	"time"
)

// Pins is what the kernel tells of this process's memory that the kernel or a device
// may write without a write through the process's page tables, which tracking never
// sees: pages pinned long-term. The kernel keeps no per-page record a program can read,
// only these per-process counts (/proc/self/status).
type Pins struct {
	// Pinned is VmPin, in bytes: pages pinned long-term and charged to this process's
	// pinned_vm. io_uring fixed buffers (IORING_REGISTER_BUFFERS) and RDMA memory
	// registrations (ib_umem: the verbs memory regions that UCX, libfabric and MPI
	// register on InfiniBand and similar fabrics) count here.
	Pinned int64
	// Locked is VmLck, in bytes: mlock'ed memory, and the DMA mappings of VFIO's type1
	// IOMMU driver (and of iommufd in its VFIO-compatible accounting), which charge
	// locked_vm.
	Locked int64
}

// None reports whether no memory of the process is pinned or locked.
func (p Pins) None() bool { return p.Pinned == 0 && p.Locked == 0 }

// Why returns "" when no memory of the process is pinned or locked, else why
// the tracker's reports cannot be trusted.
//
// Pins the kernel charges to no counter of this process are not seen: host memory
// registered with a GPU driver (cudaHostRegister pins pages without charging them),
// iommufd in its default accounting (charged to the user, not the process), other
// drivers that pin without accounting, and io_uring rings created by another process
// (charged to that process). Locked memory is suspected although mlock alone is
// harmless: the kernel does not tell the two apart.
func (p Pins) Why() string {
	switch {
	case p.Pinned > 0 && p.Locked > 0:
		return fmt.Sprintf("%d KiB of the process's memory pinned (VmPin) and %d KiB locked (VmLck): "+
			"the kernel and devices write pinned pages without a fault tracking would see", p.Pinned>>10, p.Locked>>10)
	case p.Pinned > 0:
		return fmt.Sprintf("%d KiB of the process's memory pinned (VmPin: io_uring fixed buffers, RDMA registrations): "+
			"the kernel and devices write pinned pages without a fault tracking would see", p.Pinned>>10)
	case p.Locked > 0:
		return fmt.Sprintf("%d KiB of the process's memory locked (VmLck: mlock, or VFIO DMA mappings): "+
			"devices write pinned pages without a fault tracking would see", p.Locked>>10)
	}
	return ""
}

// ReadPins returns the process's pinned and locked memory (see Pins). It costs a read of
// /proc/self/status, some microseconds. Elsewhere than Linux it returns an error
// wrapping ErrUnsupported.
func ReadPins() (Pins, error) { return readPins() }

// FaultCost returns the estimated time the first write to a protected page costs the
// program here: a minor fault that the kernel resolves. It differs by machine (0.7-1 µs
// on the virtual machine the project is measured on, about 25 µs on another where
// nested paging makes faults dear) and with the machine's load, so it is measured: on
// the first call (synchronously, 160 faults), and again in the background by a call
// made when the last measurement is 30 seconds old, which returns the previous value
// meanwhile. The measurement times writes to 32 scratch pages of private anonymous
// memory, write-protected as a Tracker protects them, against the same writes
// unprotected, and keeps the median of 5 rounds. The error is that of Available.
func FaultCost() (time.Duration, error) {
	if err := Available(); err != nil {
		return 0, err
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.at.IsZero() {
		c, err := measureFaultCost()
		if err != nil {
			return 0, err
		}
		fc.cost, fc.at = c, time.Now()
		return c, nil
	}
	if !fc.busy && time.Since(fc.at) > faultCostAge {
		fc.busy = true
		go func() {
			c, err := measureFaultCost()
			fc.mu.Lock()
			defer fc.mu.Unlock()
			fc.busy = false
			if err == nil {
				fc.cost = c
			}
			fc.at = time.Now()
		}()
	}
	return fc.cost, nil
}

// MeasureFaultCost measures the fault cost now (as FaultCost does, synchronously) and
// makes it what FaultCost returns.
func MeasureFaultCost() (time.Duration, error) {
	if err := Available(); err != nil {
		return 0, err
	}
	c, err := measureFaultCost()
	if err != nil {
		return 0, err
	}
	fc.mu.Lock()
	fc.cost, fc.at = c, time.Now()
	fc.mu.Unlock()
	return c, nil
}

// faultCostAge is how old FaultCost's measurement may get before a call starts another.
var faultCostAge = 30 * time.Second

// The measurement: faultRounds rounds of one write to each of faultPages pages.
const (
	faultPages  = 32
	faultRounds = 5
)

var fc struct {
	mu   sync.Mutex
	cost time.Duration
	at   time.Time // of the last measurement; zero: none yet
	busy bool      // a background measurement runs
}
