// Package location opens a store.Store from a location string, as the ckp command and
// the C interface take it:
//
//	s3://bucket/prefix     an S3 bucket (store/s3), at Options.Endpoint
//	dir:///shared/ckp      a directory (store.Dir), on a local or shared file system
//	/shared/ckp, ./ckp     the same: any other location is a directory path
//
// It imports store/s3, so a program that uses it links the S3 client; the engine
// itself never does.
package location

import (
	"fmt"
	"strings"

	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/s3"
)

// Options say how to reach an S3 location; a directory needs none of them.
type Options struct {
	// Endpoint is the S3 server: "host:port" or a URL ("https://host:port"); empty
	// means AWS S3 (s3.DefaultEndpoint).
	Endpoint string
	// Insecure talks plain HTTP to a host:port Endpoint.
	Insecure bool
	// Region is the bucket's region; empty means s3.DefaultRegion.
	Region string
	// AccessKey and SecretKey are the credentials; when both are empty they come from
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).
	AccessKey, SecretKey string
}

// IsS3 reports whether loc names an S3 location.
func IsS3(loc string) bool { return strings.HasPrefix(loc, "s3://") }

// Open returns the store at loc. A malformed location, or one with a scheme other than
// s3:// and dir://, is an error wrapping store.ErrInvalid; Open does not contact an S3
// server (the first operation does).
func Open(loc string, o Options) (store.Store, error) {
	switch {
	case loc == "":
		return nil, fmt.Errorf("%w: empty store location", store.ErrInvalid)
	case IsS3(loc):
		bucket, prefix, err := s3.ParseLocation(loc)
		if err != nil {
			return nil, err
		}
		return s3.New(s3.Config{Endpoint: o.Endpoint, Bucket: bucket, Prefix: prefix, AccessKey: o.AccessKey,
			SecretKey: o.SecretKey, Region: o.Region, Insecure: o.Insecure})
	case strings.HasPrefix(loc, "dir://"):
		return store.Dir(strings.TrimPrefix(loc, "dir://"))
	case strings.Contains(loc, "://"):
		return nil, fmt.Errorf("%w: store location %q: only s3:// and directories are supported", store.ErrInvalid, loc)
	}
	return store.Dir(loc)
}
