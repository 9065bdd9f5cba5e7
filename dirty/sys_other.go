//go:build !(linux && (amd64 || arm64 || riscv64 || loong64 || s390x))

package dirty

import (
	"fmt"
	"runtime"
	"time"
)

// Kernel write tracking exists on Linux only; the architectures above share the generic
// ioctl encoding that sys_linux.go relies on.

type scanBuf struct{}

func setup() error {
	return fmt.Errorf("%w on %s/%s", ErrUnsupported, runtime.GOOS, runtime.GOARCH)
}

func checkTrackable(lo, hi uintptr) error { return setup() }
func register(s span) error               { return setup() }
func unregister(s span) error             { return setup() }
func protect(s span) error                { return setup() }
func unprotect(s span) error              { return setup() }

func scanWritten(lo, hi uintptr, dst []span, sb *scanBuf) ([]span, error) {
	return appendSpan(dst, span{lo, hi}), setup()
}

func readPins() (Pins, error) { return Pins{}, setup() }

func measureFaultCost() (time.Duration, error) { return 0, setup() }
