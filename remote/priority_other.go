//go:build !linux

package remote

// background does nothing where threads have no priority of their own.
func background() (restore func()) { return func() {} }
