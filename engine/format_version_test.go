package engine

import (
	"encoding/binary"
	"os"
	"testing"
)

// TestNewFileIsFormat1WithoutDifferential: FORMAT.md: "format version, 2 (1 for files
// without versions stored by blocks)": a new file written without Differential is
// format 1, so that a build that reads only format 1 reads it; a writer turns the
// header into 2 only when opened with Differential.
func TestNewFileIsFormat1WithoutDifferential(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	apiReg(t, f, "r", make([]byte, 100))
	apiNoErr(t, f.SaveAll(), "SaveAll")
	apiNoErr(t, f.Close(), "Close")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != 1 {
		t.Errorf("a new file without Differential has format version %d, want 1", v)
	}
}
