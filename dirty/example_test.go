package dirty_test

import (
	"fmt"
	"log"

	"github.com/ckp-go/ckp/dirty"
)

// A differential save: collect the pages written since the last save, then read (hash,
// copy) only those bytes. Where tracking is unavailable, hash the whole region.
func Example() {
	region := make([]byte, 64<<20)
	t, err := dirty.Track(region)
	if err != nil {
		log.Printf("no tracking (%v): hashing the whole region at each save", err)
		return
	}
	defer t.Close()

	for step := range 3 {
		region[step*1000000]++ // the program computes

		// Save: Written re-arms the pages before the bytes are read, so a write racing
		// with the copy is reported again next time.
		n, err := t.Written(func(start, end int) {
			_ = region[start:end] // hash and copy these bytes
		})
		if err != nil {
			log.Printf("scan failed (%v): the report covered everything", err)
		}
		if n > t.Pages()/5 {
			fmt.Println("dense writer: cheaper to Close and hash everything")
		}
	}
}
