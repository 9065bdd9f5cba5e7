package engine

import "github.com/ckp-go/ckp/internal/pattern"

// Test patterns (package internal/pattern): the bytes of version v of region r.

func crashFill(p []byte, r, v int)              { pattern.Fill(p, r, v) }
func crashCheck(p []byte, r, v int) error       { return pattern.Check(p, r, v) }
func crashFillSparse(p []byte, r, v, from int)  { pattern.FillSparse(p, r, v, from) }
func crashCheckSparse(p []byte, r, v int) error { return pattern.CheckSparse(p, r, v) }
