package s3

import "github.com/ckp-go/ckp/store"

// SetSizes sets the part size of multipart uploads and the largest object sent in a
// single PUT of a store that New returned, so that tests reach multipart uploads with
// small objects.
func SetSizes(st store.Store, part, single int64) {
	s := st.(*s3Store)
	s.partSz, s.single = part, single
}
