//go:build !cgo

package main

import (
	"fmt"
	"os"
)

// Without cgo there is no C interface to build: the package still compiles (for
// go build ./... and go vet on any platform), as a program that says so.
func main() {
	fmt.Fprintln(os.Stderr, "capi: the C interface needs cgo (CGO_ENABLED=1 and a C compiler)")
	os.Exit(1)
}
