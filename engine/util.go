package engine

import "github.com/ckp-go/ckp/internal/base"

// errf wraps a sentinel error with a formatted message: "ckp: ...: message".
func errf(sentinel error, format string, args ...any) error {
	return base.Errf(sentinel, format, args...)
}

func alignUp(n, a int64) int64 { return (n + a - 1) &^ (a - 1) }
