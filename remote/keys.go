package remote

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/ckp-go/ckp/internal/base"
)

// Keys. What a rank puts in the store is under "m/" (manifests) and "d/" (data), by
// rank and life (the job protocol's lives: records.go, job.go):
//
//	m/<rank>/<life, 20 digits>/<checkpoint>/<version, 20 digits>
//	d/<rank>/<life, 20 digits>/<version, 20 digits>-<hash, 16 hex digits>-<length>
//
// <checkpoint> is the checkpoint's name with every byte outside [A-Za-z0-9_.-] (and a
// leading '.') written as %XX, or, when that is longer than maxSegName bytes, '~'
// followed by the 16 hex digits of the xxhash64 of the name (the manifests hold the
// name itself). A data object's key names the version that first uploaded it and its
// contents (the payload hash, or for blocks the hash of their hashes, and the length):
// no key is ever created again once deleted, so a Delete that a dead process left in
// flight can never remove a newer object.

const (
	manifestDir = "m/"
	dataDir     = "d/"
	maxSegName  = 200
)

// nameSegment returns the key segment of a checkpoint name.
func nameSegment(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if safeByte(c) && (i > 0 || c != '.') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		if b.Len() > maxSegName {
			return fmt.Sprintf("~%016x", xxhash.Sum64String(name))
		}
	}
	return b.String()
}

func safeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// segmentName decodes a key segment; ok is false for a hashed segment (whose name is in
// its manifests) or one that is not a checkpoint segment.
func segmentName(seg string) (name string, ok bool) {
	if seg == "" || seg[0] == '~' {
		return "", false
	}
	var b []byte
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c != '%' {
			if !safeByte(c) {
				return "", false
			}
			b = append(b, c)
			continue
		}
		if i+3 > len(seg) {
			return "", false
		}
		v, err := strconv.ParseUint(seg[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b = append(b, byte(v))
		i += 2
	}
	if len(b) == 0 || len(b) > base.MaxNameLen {
		return "", false
	}
	return string(b), true
}

func rankManifests(rank int) string { return manifestDir + strconv.Itoa(rank) + "/" }

func manifestKey(rank int, life uint64, seg string, v uint64) string {
	return fmt.Sprintf("%s%020d/%s/%020d", rankManifests(rank), life, seg, v)
}

func rankData(rank int) string { return dataDir + strconv.Itoa(rank) + "/" }

func dataKey(rank int, life, v, hash uint64, length int64) string {
	return fmt.Sprintf("%s%020d/%020d-%016x-%d", rankData(rank), life, v, hash, length)
}

// dataLife returns the life of data key k of rank, or false.
func dataLife(rank int, k string) (uint64, bool) {
	rest, ok := strings.CutPrefix(k, rankData(rank))
	if !ok || len(rest) < 21 || rest[20] != '/' {
		return 0, false
	}
	n, err := strconv.ParseUint(rest[:20], 10, 64)
	return n, err == nil
}

// manifestRef is a manifest key taken apart.
type manifestRef struct {
	rank int
	life uint64
	seg  string
	ver  uint64
}

// outOfRange reports whether key is a manifest key but for its rank, which is beyond
// MaxRanks: damage, or another program's key, never one of ours.
func outOfRange(key string) bool {
	rest, ok := strings.CutPrefix(key, manifestDir)
	if !ok {
		return false
	}
	digits, _, _ := strings.Cut(rest, "/")
	if digits == "" || len(digits) > 20 || strings.Trim(digits, "0123456789") != "" {
		return false
	}
	r, err := strconv.ParseUint(digits, 10, 64)
	return err != nil || r >= MaxRanks
}

// parseManifestKey parses "m/<rank>/<life>/<seg>/<version>".
func parseManifestKey(key string) (manifestRef, bool) {
	rest, ok := strings.CutPrefix(key, manifestDir)
	if !ok {
		return manifestRef{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || len(parts[1]) != 20 || len(parts[3]) != 20 {
		return manifestRef{}, false
	}
	rank, err1 := strconv.Atoi(parts[0])
	life, err2 := strconv.ParseUint(parts[1], 10, 64)
	v, err3 := strconv.ParseUint(parts[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || rank < 0 || rank >= MaxRanks || life == 0 || v == 0 || parts[2] == "" {
		return manifestRef{}, false
	}
	return manifestRef{rank, life, parts[2], v}, true
}
