package engine

import (
	"os"
	"testing"

	"github.com/ckp-go/ckp/internal/slot"
)

// TestRepairRefusesUnknownFormat: FORMAT.md: "A reader that finds a version it does not
// know refuses the file (ErrCorrupt); it never guesses." Repair too: it does not take
// an intact header of an unknown version for a damaged one and rebuild the index from
// trailers it cannot read.
func TestRepairRefusesUnknownFormat(t *testing.T) {
	path := apiPath(t)
	f := apiOpen(t, path, nil)
	apiReg(t, f, "r", make([]byte, 100))
	apiNoErr(t, f.SaveAll(), "SaveAll")
	apiNoErr(t, f.Close(), "Close")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := slot.DecodeHeader(b)
	apiNoErr(t, err, "header")
	h.Version = 3 // a future format
	slot.EncodeHeader(b, h)
	apiPatchFile(t, path, 0, b[:slot.HeaderLen])
	if _, err := Open(path, &Options{ReadOnly: true}); err == nil {
		t.Fatal("Open accepted format 3")
	}
	rep, err := Repair(path, nil)
	if err == nil {
		t.Errorf("Repair rewrote the index of a format-3 file: %+v", rep)
	}
}
