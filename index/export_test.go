package index

import (
	"encoding/binary"

	"github.com/ckp-go/ckp/crc"
)

// EncodeHeaderRaw recomputes the CRC of a header whose fields a test edited.
func EncodeHeaderRaw(b []byte) {
	binary.LittleEndian.PutUint32(b[60:], crc.CRC32C(0, b[:60]))
}
