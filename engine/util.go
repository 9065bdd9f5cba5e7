package engine

import "fmt"

// errf wraps a sentinel error with a formatted message: "ckp: ...: message".
func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

func alignUp(n, a int64) int64 { return (n + a - 1) &^ (a - 1) }
