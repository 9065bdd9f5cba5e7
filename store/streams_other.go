//go:build !linux

package store

// readStreams: without statfs's file system type, several reads at once.
func readStreams(string) int { return 4 }
