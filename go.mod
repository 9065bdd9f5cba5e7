module github.com/ckp-go/ckp

go 1.26.0

require (
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/edsrzf/mmap-go v1.2.0
	golang.org/x/sys v0.50.0
)
