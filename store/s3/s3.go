// Package s3 is a store.Store in an S3 bucket, on github.com/minio/minio-go/v7.
//
// Objects are stored under Prefix + "/" + key.
//
// # Create
//
// Create writes with If-None-Match: *, which AWS S3 (since August 2024), MinIO and
// versitygw honour on PutObject and on CompleteMultipartUpload, answering 412
// (store.ErrExists) when the key exists. Objects up to SinglePutMax go in one PUT
// (minio-go's PutObject with SetMatchETagExcept("*")): one request, where parts
// would cost three more and, on a file-system-backed server, a copy of the whole
// object to join them. Larger ones are uploaded in parts of DefaultPartSize by this
// package, with minio.Core, and the condition is sent with the completion: the parts
// are invisible until then, so a large Create is as atomic as a small one. (minio-go
// v7.4.1's PutObject would send the header with a single PUT but drop it from
// CompleteMultipartUpload, silently replacing an existing object; a canary test
// watches for a fix.)
//
// A server may refuse a conditional PUT of an existing key before reading its body
// and close the connection: the client then sees a broken connection (a transient
// error) instead of the 412. versitygw does this. So when a Create fails with a
// transient error, it asks whether the object exists (HEAD) and answers ErrExists if
// so. Zero-byte objects are sent without a body for the same reason.
//
// A Create or Put whose context comes from store.WithVerifiedContent (the caller
// checks the bytes against its own hashes whenever it reads them) sends its payload
// unsigned over plain HTTP instead of with a SHA-256 of every byte computed by both
// ends (over HTTPS, minio-go never signs payloads): a single PUT as UNSIGNED-PAYLOAD
// with a CRC32C trailer that the server checks, the parts of a larger object as
// UNSIGNED-PAYLOAD. The requests themselves stay signed.
//
// A server that accepts If-None-Match but ignores it would let two Creates both win.
// So before the first Create the store probes the server, once: it creates a scratch
// key under the prefix twice with the condition, and if the second succeeds, Create
// fails from then on with store.ErrUnsupported. Put, Get, List and Delete work on any
// server. The scratch key is deleted; one left behind by a killed process is named
// with store.TempPrefix, so List never shows it. Prepare runs the probe ahead of the
// first Create (store.Preparer).
//
// # Errors and retries
//
// minio-go's own retries are turned off: a failed request returns at once, and a
// transient error (see store.IsPermanent) is left to the caller to retry with backoff.
// S3 error codes are mapped to the store's errors (NoSuchKey: ErrNotExist, NoSuchBucket:
// ErrNoBucket, AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch and any 403:
// ErrDenied, InvalidRange: ErrRange, NotImplemented: ErrUnsupported, 412 on a Create:
// ErrExists), keeping the S3 error wrapped; 5xx, 409, 429 and network errors stay
// transient.
package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/internal/body"
)

// Config says where a store's objects live and how to reach them.
type Config struct {
	// Endpoint is the server: "host:port", or a URL "https://host:port" or
	// "http://host:port" whose scheme decides TLS. Empty means "s3.amazonaws.com".
	Endpoint string
	// Bucket is the bucket's name; it must exist.
	Bucket string
	// Prefix is put before every key, with a '/' between; empty for none. Slashes at
	// its ends are dropped.
	Prefix string
	// AccessKey and SecretKey are the credentials. When both are empty they come
	// from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).
	AccessKey string
	SecretKey string
	// Region is the bucket's region; empty means "us-east-1".
	Region string
	// Insecure talks plain HTTP instead of TLS (a host:port Endpoint only).
	Insecure bool
}

// DefaultEndpoint is the endpoint of a Config without one.
const DefaultEndpoint = "s3.amazonaws.com"

// DefaultRegion is the region of a Config without one.
const DefaultRegion = "us-east-1"

// New returns a Store in the bucket and under the prefix of cfg. It checks the
// configuration but does not contact the server: an unreachable server or a missing
// bucket shows in the first operation's error. An invalid configuration is an error
// wrapping store.ErrInvalid.
func New(cfg Config) (store.Store, error) {
	host, secure, err := parseEndpoint(cfg.Endpoint, cfg.Insecure)
	if err != nil {
		return nil, err
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("%w: s3: bucket %q: %w", store.ErrInvalid, cfg.Bucket, err)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := store.CheckKey(prefix); err != nil {
			return nil, fmt.Errorf("s3: prefix: %w", err)
		}
	}
	ak, sk, token := cfg.AccessKey, cfg.SecretKey, ""
	if ak == "" && sk == "" {
		ak, sk, token = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")
	}
	if ak == "" || sk == "" {
		return nil, fmt.Errorf("%w: s3: no credentials: set both the access key and the secret key, in the configuration or in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", store.ErrInvalid)
	}
	region := cfg.Region
	if region == "" {
		region = DefaultRegion
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, fmt.Errorf("s3: transport: %w", err)
	}
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	client, err := minio.New(host, &minio.Options{
		Creds:      credentials.NewStaticV4(ak, sk, token),
		Secure:     secure,
		Region:     region,
		Transport:  tr,
		MaxRetries: 1, // no retries inside: the caller retries with backoff
	})
	if err != nil {
		return nil, fmt.Errorf("%w: s3: endpoint %q: %w", store.ErrInvalid, cfg.Endpoint, err)
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	return &s3Store{
		client:   client,
		core:     &minio.Core{Client: client},
		bucket:   cfg.Bucket,
		prefix:   prefix,
		endpoint: scheme + "://" + host,
	}, nil
}

// parseEndpoint returns the host:port of an endpoint and whether to use TLS.
func parseEndpoint(ep string, insecure bool) (host string, secure bool, err error) {
	if ep == "" {
		ep = DefaultEndpoint
	}
	if !strings.Contains(ep, "://") {
		if strings.ContainsAny(ep, "/?#@ ") {
			return "", false, fmt.Errorf("%w: s3: endpoint %q: want host:port or a URL", store.ErrInvalid, ep)
		}
		return ep, !insecure, nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", false, fmt.Errorf("%w: s3: endpoint: %w", store.ErrInvalid, err)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return "", false, fmt.Errorf("%w: s3: endpoint %q: want scheme://host:port and nothing more", store.ErrInvalid, ep)
	}
	switch u.Scheme {
	case "http":
		return u.Host, false, nil
	case "https":
		if insecure {
			return "", false, fmt.Errorf("%w: s3: endpoint %q is https but Insecure asks for plain HTTP", store.ErrInvalid, ep)
		}
		return u.Host, true, nil
	}
	return "", false, fmt.Errorf("%w: s3: endpoint %q: scheme must be http or https", store.ErrInvalid, ep)
}

// ParseLocation splits "s3://bucket/prefix" (the prefix may be empty or missing) into
// the bucket and the prefix, without slashes at its ends. A malformed location is an
// error wrapping store.ErrInvalid.
func ParseLocation(loc string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(loc, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%w: s3: location %q does not start with s3://", store.ErrInvalid, loc)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return "", "", fmt.Errorf("%w: s3: location %q: bucket: %w", store.ErrInvalid, loc, err)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := store.CheckKey(prefix); err != nil {
			return "", "", fmt.Errorf("s3: location %q: prefix: %w", loc, err)
		}
	}
	return bucket, prefix, nil
}

type s3Store struct {
	client   *minio.Client
	core     *minio.Core
	bucket   string
	prefix   string
	endpoint string // scheme://host:port, for messages
	pageSize int    // List's page size; 0: the server's (1000); tests set it
	partSz   int64  // the part size of uploads; 0: DefaultPartSize; tests set it
	single   int64  // the largest single-PUT Create; 0: SinglePutMax; tests set it

	probeMu  sync.Mutex
	probed   bool  // the conditional-create probe has given an answer
	probeErr error // and this is it: nil, or ErrUnsupported
}

// String names the location: "s3://bucket/prefix (scheme://host:port)".
func (s *s3Store) String() string {
	loc := "s3://" + s.bucket
	if s.prefix != "" {
		loc += "/" + s.prefix
	}
	return loc + " (" + s.endpoint + ")"
}

// object returns the object name of a key.
func (s *s3Store) object(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

// checkKey checks the key and that the object name it makes is not too long.
func (s *s3Store) checkKey(key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	if n := len(s.object(key)); n > store.MaxKeyLen {
		return fmt.Errorf("%w: %s: key %.40q...: with the prefix, the object name is %d bytes, more than S3's %d",
			store.ErrInvalid, s, key, n, store.MaxKeyLen)
	}
	return nil
}

// fail maps an error of minio-go to the store's errors, keeping it wrapped.
func (s *s3Store) fail(ctx context.Context, op, key string, err error) error {
	what := fmt.Sprintf("%s: %s %q", s, op, key)
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(err, cerr) {
			return fmt.Errorf("%s: %w", what, err)
		}
		return fmt.Errorf("%s: %w: %w", what, cerr, err)
	}
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) || (resp.Code == "" && resp.StatusCode == 0) {
		return fmt.Errorf("%s: %w", what, err) // the network, most likely: transient
	}
	cause := fmt.Errorf("%s (S3 %s, HTTP %d): %w", what, resp.Code, resp.StatusCode, err)
	var kind error
	switch {
	case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed:
		if op == "create" {
			kind = store.ErrExists
		}
	case resp.Code == "NoSuchKey":
		kind = store.ErrNotExist
	case resp.Code == "NoSuchBucket":
		kind = store.ErrNoBucket
	case resp.Code == "InvalidRange" || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		kind = store.ErrRange
	case resp.Code == "NotImplemented" || resp.StatusCode == http.StatusNotImplemented:
		kind = store.ErrUnsupported
	case resp.StatusCode == http.StatusForbidden || slices.Contains(deniedCodes, resp.Code):
		kind = store.ErrDenied
	case slices.Contains(invalidCodes, resp.Code):
		kind = store.ErrInvalid
	case resp.StatusCode == http.StatusNotFound && resp.Code == "" && op != "list":
		kind = store.ErrNotExist // a HEAD's 404 has no body, so no code
	}
	if kind == nil {
		return cause // 5xx, 409 conflicts, 429 and 503 slow-downs, timeouts: transient
	}
	return fmt.Errorf("%w: %w", kind, cause)
}

// deniedCodes are the S3 error codes of bad credentials or missing permission.
var deniedCodes = []string{"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
	"AllAccessDisabled", "AccountProblem", "InvalidToken", "ExpiredToken", "InvalidSecurity",
	"RequestTimeTooSkewed", "AuthorizationHeaderMalformed",
	"XAdminUserNotFound"} // versitygw's answer (404) to an unknown access key

// invalidCodes are the S3 error codes of a request that can never succeed.
var invalidCodes = []string{"InvalidBucketName", "KeyTooLongError", "InvalidArgument",
	"EntityTooLarge", "InvalidObjectName", "XMinioInvalidObjectName", "MethodNotAllowed",
	// versitygw's posix backend keeps keys as files and directories: "a" and "a/b"
	// cannot both be objects (409s that no retry cures).
	"ExistingObjectIsDirectory", "ObjectParentIsFile"}

// Create writes the object with If-None-Match: *, after the once-only probe that the
// server honours it. When the PUT fails with a transient error, it asks whether the
// object exists (a HEAD request), so that a server that refused the PUT of an existing
// key by closing the connection (versitygw does) still gives ErrExists.
func (s *s3Store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	return s.write(ctx, modeCreate, key, r, size)
}

// Put writes or replaces the object.
func (s *s3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	return s.write(ctx, modePut, key, r, size)
}

// How write writes.
const (
	modePut    = iota // unconditionally
	modeCreate        // if absent, after checking the server and asking if it exists
	modeProbe         // if absent, straight away (the probe of conditional creates)
)

func (s *s3Store) write(ctx context.Context, mode int, key string, r io.Reader, size int64) error {
	op := "put"
	if mode != modePut {
		op = "create"
	}
	if size < 0 {
		return fmt.Errorf("%w: %s: %s %q: negative size %d", store.ErrInvalid, s, op, key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s %q: %w", s, op, key, err)
	}
	// A body that can be read at offsets is handed over as such: parts are then read
	// in parallel, and again on a retry. Any other goes through a reader that fails
	// the upload if the body is shorter or longer than size.
	var in io.Reader
	var br *body.Reader
	sec, ok, err := body.Section(r, size)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %s: %s %q: %w", store.ErrInvalid, s, op, key, err)
	case ok:
		in = sec
	default:
		br = body.NewReader(ctx, r, size)
		in = br
		if size == 0 {
			// Nothing will read the body: check here that it is empty.
			if _, err := br.Read(nil); err != io.EOF {
				return s.bodyError(ctx, op, key, br.Err())
			}
		}
	}
	if mode == modeCreate {
		if err := s.checkConditional(ctx); err != nil {
			return err
		}
	}
	unsigned := store.VerifiedContent(ctx) && size > 0
	opts := minio.PutObjectOptions{ContentType: contentType, PartSize: uint64(s.partSize())}
	if mode != modePut {
		opts.SetMatchETagExcept("*") // minio-go sends it with PutObject only
	}
	switch {
	case size == 0:
		// No body at all: a request with a header and an empty signed payload.
		opts.DisableContentSha256 = true
		_, err = s.core.PutObject(ctx, s.bucket, s.object(key), bytes.NewReader(nil), 0, emptyMD5, emptySHA256, opts)
	case size <= s.singleMax() && unsigned:
		// UNSIGNED-PAYLOAD, with a CRC32C of the bytes sent as a trailer that the server
		// checks. (Client.PutObject would drop the trailer: the checksum-algorithm
		// header it adds first turns it off.)
		opts.DisableContentSha256, opts.Checksum = true, minio.ChecksumCRC32C
		_, err = s.core.PutObject(ctx, s.bucket, s.object(key), in, size, "", "", opts)
	case size <= s.singleMax():
		opts.DisableMultipart = true
		_, err = s.client.PutObject(ctx, s.bucket, s.object(key), in, size, opts)
	case mode != modePut:
		err = s.createMultipart(ctx, key, in, size, unsigned)
	default:
		opts.DisableContentSha256 = unsigned
		_, err = s.client.PutObject(ctx, s.bucket, s.object(key), in, size, opts)
	}
	if br != nil && br.Err() != nil {
		return s.bodyError(ctx, op, key, br.Err())
	}
	if err != nil {
		err = s.fail(ctx, op, key, err)
		if mode == modeCreate && !store.IsPermanent(err) && ctx.Err() == nil {
			// The server may have refused the PUT of an existing key by closing the
			// connection: ask.
			if _, serr := s.client.StatObject(ctx, s.bucket, s.object(key), minio.StatObjectOptions{}); serr == nil {
				return fmt.Errorf("%w: %s: %s %q", store.ErrExists, s, op, key)
			}
		}
		return err
	}
	return nil
}

// The MD5 (base64) and SHA-256 (hex) of no bytes.
const (
	emptyMD5    = "1B2M2Y8AsgTpgAmY7PhCfg=="
	emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// bodyError is the error of a body that failed or did not match its size.
func (s *s3Store) bodyError(ctx context.Context, op, key string, err error) error {
	if errors.Is(err, body.ErrSize) {
		return fmt.Errorf("%w: %s: %s %q: %w", store.ErrInvalid, s, op, key, err)
	}
	if ctx.Err() != nil {
		return s.fail(ctx, op, key, err)
	}
	return fmt.Errorf("%s: %s %q: reading the body: %w", s, op, key, err)
}

const contentType = "application/octet-stream"

// DefaultPartSize is the size of the parts of a multipart upload, minio-go's default.
const DefaultPartSize = 16 << 20

// SinglePutMax is the largest object Create and Put send in a single PUT; larger ones
// go in parts. The remote tier runs several uploads at once, so parts add requests
// more than they add parallelism.
const SinglePutMax = 64 << 20

func (s *s3Store) partSize() int64 {
	if s.partSz > 0 {
		return s.partSz
	}
	return DefaultPartSize
}

func (s *s3Store) singleMax() int64 {
	if s.single > 0 {
		return s.single
	}
	return SinglePutMax
}

// createMultipart uploads a large object in parts and completes the upload with
// If-None-Match: *, so that it appears only if no object exists under key.
// minio-go's PutObject cannot do this: it drops the condition from its
// CompleteMultipartUpload request (its completeUploadOpts rebuilds the options).
// src is an *io.SectionReader, whose parts are read in parallel, or a stream read
// part by part.
func (s *s3Store) createMultipart(ctx context.Context, key string, src io.Reader, size int64, unsigned bool) (err error) {
	name := s.object(key)
	partSize := max(s.partSize(), (size+maxParts-1)/maxParts)
	nparts := int((size + partSize - 1) / partSize)
	uploadID, err := s.core.NewMultipartUpload(ctx, s.bucket, name, minio.PutObjectOptions{ContentType: contentType})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil { // the parts are invisible; free their space
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			s.core.AbortMultipartUpload(actx, s.bucket, name, uploadID)
		}
	}()

	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parts := make([]minio.CompletePart, nparts)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	upload := func(i int, data io.Reader, n int64) {
		p, err := s.core.PutObjectPart(uctx, s.bucket, name, uploadID, i+1, data, n, minio.PutObjectPartOptions{DisableContentSha256: unsigned})
		if err != nil {
			fail(err)
			return
		}
		parts[i] = minio.CompletePart{PartNumber: i + 1, ETag: p.ETag}
	}
	ra, seekable := src.(io.ReaderAt)
	workers := uploadWorkers
	if !seekable {
		workers = streamWorkers // each holds a part in memory
	}
	bufs := make(chan []byte, workers) // a stream's part buffers, reused
	sem := make(chan struct{}, workers)
	for i := range nparts {
		off := int64(i) * partSize
		n := min(partSize, size-off)
		sem <- struct{}{}
		if uctx.Err() != nil {
			<-sem
			break
		}
		var data io.Reader
		var buf []byte
		if seekable {
			data = io.NewSectionReader(ra, off, n)
		} else {
			select {
			case buf = <-bufs:
			default:
				buf = make([]byte, partSize)
			}
			if _, rerr := io.ReadFull(src, buf[:n]); rerr != nil {
				<-sem
				fail(rerr)
				break
			}
			data = bytes.NewReader(buf[:n])
		}
		wg.Go(func() {
			defer func() { <-sem }()
			upload(i, data, n)
			if buf != nil {
				bufs <- buf
			}
		})
	}
	wg.Wait()
	if firstErr == nil && !seekable {
		// The stream must end here: the read of its last bytes checked that.
		if br, ok := src.(interface{ Err() error }); ok && br.Err() != nil {
			firstErr = br.Err()
		}
	}
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	opts := minio.PutObjectOptions{}
	opts.SetMatchETagExcept("*")
	_, err = s.core.CompleteMultipartUpload(ctx, s.bucket, name, uploadID, parts, opts)
	return err
}

// maxParts is S3's limit on the parts of an upload.
const maxParts = 10000

// uploadWorkers parts of a seekable body are uploaded at once, and streamWorkers of
// a stream (each a part held in memory).
const (
	uploadWorkers = 4
	streamWorkers = 2
)

// Prepare probes the server's conditional creates now, if that was not done yet
// (store.Preparer), so that the first Create does not wait for it.
func (s *s3Store) Prepare(ctx context.Context) error { return s.checkConditional(ctx) }

// checkConditional probes, once, that the server honours If-None-Match: * (see the
// package documentation). A transient failure of the probe is returned and the probe
// tried again by the next Create.
func (s *s3Store) checkConditional(ctx context.Context) error {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if s.probed {
		return s.probeErr
	}
	key := store.TempPrefix + "probe-" + randomHex(8)
	defer func() {
		// Best-effort: a scratch key left behind is invisible to List. (Not in the
		// background: on a file-system-backed server, deleting the last key under a
		// prefix removes its directories, which would race with a Create under it.)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		s.client.RemoveObject(dctx, s.bucket, s.object(key), minio.RemoveObjectOptions{})
	}()
	for i := range 2 {
		err := s.write(ctx, modeProbe, key, bytes.NewReader(nil), 0)
		switch {
		case i == 0 && errors.Is(err, store.ErrUnsupported):
			s.probed, s.probeErr = true, fmt.Errorf("%w: %s: the server does not implement conditional creates (If-None-Match: *), which Create needs: %w", store.ErrUnsupported, s, err)
			return s.probeErr
		case i == 0 && err != nil:
			return fmt.Errorf("%s: probing conditional creates: %w", s, err)
		case i == 1 && err == nil:
			s.probed, s.probeErr = true, fmt.Errorf("%w: %s: the server ignores If-None-Match: * (a second conditional create of one key succeeded), so Create cannot be atomic there; use a server that honours S3 conditional writes", store.ErrUnsupported, s)
			return s.probeErr
		case i == 1 && errors.Is(err, store.ErrExists):
			s.probed = true
			return nil
		case i == 1:
			return fmt.Errorf("%s: probing conditional creates: %w", s, err)
		}
	}
	panic("unreachable")
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Get returns n bytes of the object from off (n < 0: to the end).
func (s *s3Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("%w: %s: get %q: negative offset %d", store.ErrInvalid, s, key, off)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: get %q: %w", s, key, err)
	}
	if n == 0 { // no bytes to fetch: whether the object exists and is long enough
		size, err := s.size(ctx, key)
		if err != nil {
			return nil, err
		}
		if err := store.CheckRange(off, n, size); err != nil {
			return nil, fmt.Errorf("%s: get %q: %w", s, key, err)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var opts minio.GetObjectOptions
	ranged := off > 0 || n > 0
	if ranged {
		end := int64(0) // SetRange(off, 0): from off to the end
		if n > 0 {
			end = off + n - 1
		}
		if err := opts.SetRange(off, end); err != nil {
			return nil, fmt.Errorf("%w: %s: get %q: %w", store.ErrInvalid, s, key, err)
		}
	}
	rc, info, hdr, err := s.core.GetObject(ctx, s.bucket, s.object(key), opts)
	if err != nil {
		err = s.fail(ctx, "get", key, err)
		if errors.Is(err, store.ErrRange) && n < 0 {
			// "bytes=off-" with off == size is an empty range, which S3 refuses.
			size, serr := s.size(ctx, key)
			if serr != nil {
				return nil, serr
			}
			if off == size {
				return io.NopCloser(bytes.NewReader(nil)), nil
			}
			return nil, fmt.Errorf("%s: get %q: %w", s, key, store.CheckRange(off, n, size))
		}
		return nil, err
	}
	if !ranged {
		return &exactReader{rc: rc, left: info.Size}, nil
	}
	first, last, total, ok := parseContentRange(hdr.Get("Content-Range"))
	if !ok {
		// A server that ignored the Range header sent the whole object.
		total = info.Size
		if err := store.CheckRange(off, n, total); err != nil {
			rc.Close()
			return nil, fmt.Errorf("%s: get %q: %w", s, key, err)
		}
		if _, err := io.CopyN(io.Discard, rc, off); err != nil {
			rc.Close()
			return nil, s.fail(ctx, "get", key, err)
		}
		if n < 0 {
			n = total - off
		}
		return &exactReader{rc: rc, r: io.LimitReader(rc, n), left: n}, nil
	}
	if err := store.CheckRange(off, n, total); err != nil { // S3 cuts a range short at the end
		rc.Close()
		return nil, fmt.Errorf("%s: get %q: %w", s, key, err)
	}
	if n < 0 {
		n = total - off
	}
	if first != off || last != off+n-1 {
		rc.Close()
		return nil, fmt.Errorf("%s: get %q: asked for bytes %d-%d, the server sent %d-%d", s, key, off, off+n-1, first, last)
	}
	return &exactReader{rc: rc, left: n}, nil
}

// size returns the size of the object.
func (s *s3Store) size(ctx context.Context, key string) (int64, error) {
	info, err := s.client.StatObject(ctx, s.bucket, s.object(key), minio.StatObjectOptions{})
	if err != nil {
		return 0, s.fail(ctx, "get", key, err)
	}
	return info.Size, nil
}

// parseContentRange parses "bytes first-last/total".
func parseContentRange(h string) (first, last, total int64, ok bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, 0, false
	}
	rng, tot, ok1 := strings.Cut(rest, "/")
	f, l, ok2 := strings.Cut(rng, "-")
	if !ok1 || !ok2 {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	first, err1 = strconv.ParseInt(f, 10, 64)
	last, err2 = strconv.ParseInt(l, 10, 64)
	total, err3 = strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// exactReader reads a response body that must hold left more bytes: an early end is
// io.ErrUnexpectedEOF.
type exactReader struct {
	rc   io.ReadCloser
	r    io.Reader // rc, or a part of it; nil: rc
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	r := e.r
	if r == nil {
		r = e.rc
	}
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, io.ErrUnexpectedEOF
	}
	if e.left == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

func (e *exactReader) Close() error { return e.rc.Close() }

// List returns the objects whose keys start with prefix, sorted by key, paging
// through all of the server's answers.
func (s *s3Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	if err := store.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: list %q: %w", s, prefix, err)
	}
	base := ""
	if s.prefix != "" {
		base = s.prefix + "/"
	}
	objs := []store.Object{}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine if we return early
	for info := range s.client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{
		Prefix:    base + prefix,
		Recursive: true,
		MaxKeys:   s.pageSize,
	}) {
		if info.Err != nil {
			return nil, s.fail(ctx, "list", prefix, info.Err)
		}
		key, ok := strings.CutPrefix(info.Key, base)
		if !ok || store.CheckKey(key) != nil {
			continue // not a key of this store: a directory marker, a scratch key
		}
		objs = append(objs, store.Object{Key: key, Size: info.Size, Modified: info.LastModified})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: list %q: %w", s, prefix, err)
	}
	slices.SortFunc(objs, func(a, b store.Object) int { return strings.Compare(a.Key, b.Key) })
	return objs, nil
}

// Delete removes the object; S3 answers success for a missing one.
func (s *s3Store) Delete(ctx context.Context, key string) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: delete %q: %w", s, key, err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.object(key), minio.RemoveObjectOptions{}); err != nil {
		err = s.fail(ctx, "delete", key, err)
		if errors.Is(err, store.ErrNotExist) {
			return nil
		}
		return err
	}
	return nil
}
