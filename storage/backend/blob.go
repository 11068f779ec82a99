package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	gcaws "gocloud.dev/aws"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob://
	_ "gocloud.dev/blob/fileblob"  // file://
	_ "gocloud.dev/blob/gcsblob"   // gs://
	_ "gocloud.dev/blob/memblob"   // mem:// (not shared between Opens)
	"gocloud.dev/blob/s3blob"      // s3:// (opened by openS3)
	"gocloud.dev/gcerrors"
)

const contentType = "application/octet-stream"

// GCS upload sizing: storage.Writer sends an object in one request when it is
// shorter than ChunkSize, and allocates ChunkSize per writer. Objects up to
// gcsSingleRequestMax get a chunk just above their size (a multiple of
// 256 KiB, the API's granularity); larger ones use the driver default
// (16 MiB resumable chunks).
const (
	gcsChunkUnit        = 256 << 10
	gcsSingleRequestMax = 16<<20 + 256<<10 // 16.25 MiB
)

func gcsBufferSize(n int) int {
	if n > gcsSingleRequestMax {
		return 0 // driver default
	}
	return (n/gcsChunkUnit + 1) * gcsChunkUnit // > n
}

// Open opens the object store at rawURL with gocloud.dev/blob:
//
//   - file:///abs/dir: created if missing; no .attrs sidecars; each Put
//     writes a temporary file next to its target ("<key>.<hex>.tmp"),
//     fsyncs it, renames (or, with ifNotExist, hard-links) it into place
//     and fsyncs the directory. Leftover temporary files from a crash are
//     never listed.
//   - mem://: in memory, private to this Backend.
//   - s3://bucket?region=...[&endpoint=...&use_path_style=true&disable_https=true]:
//     with an endpoint (a non-AWS store) request_checksum_calculation and
//     response_checksum_validation default to when_required. Its HTTP
//     client bounds every wait (see HTTPTimeouts; dial_timeout,
//     header_timeout and idle_timeout override them, as Go durations),
//     and the SDK makes one try per call: WithRetry is the only retry
//     loop.
//   - gs://bucket (STORAGE_EMULATOR_HOST is honoured).
//   - azblob://container[?protocol=http&domain=127.0.0.1:10000] (credentials
//     from AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_KEY and friends).
//
// Other URL parameters are passed to the driver.
func Open(ctx context.Context, rawURL string) (Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("backend: open %s: %w", rawURL, err)
	}
	b := &bucketBackend{scheme: u.Scheme}
	q := u.Query()
	var createdParent string
	switch u.Scheme {
	case "file":
		p := u.Path
		if u.Host == "." { // file://./relative, as fileblob reads it
			p = strings.TrimPrefix(p, "/")
		} else if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("backend: open %s: file URLs name a local path: file:///abs/dir", rawURL)
		}
		if p == "" {
			return nil, fmt.Errorf("backend: open %s: no directory", rawURL)
		}
		dir, err := filepath.Abs(filepath.FromSlash(p))
		if err != nil {
			return nil, fmt.Errorf("backend: open %s: %w", rawURL, err)
		}
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			createdParent = filepath.Dir(dir)
		}
		b.dir = dir
		u.Host, u.Path = "", filepath.ToSlash(dir)
		// No .attrs sidecar per object: nothing here reads blob attributes.
		q.Set("metadata", "skip")
		// Temporary files next to their target, never in os.TempDir (which
		// may be another mount); this package writes them itself (see put).
		q.Set("no_tmp_dir", "1")
		q.Set("create_dir", "1")
	case "s3":
		// Third-party S3 stores reject the SDK's default request checksums
		// (gocloud #3735); when_required sends none unless an API needs it.
		// Likewise they send no response checksums: validate them only when
		// a request asks for one (otherwise every GET logs a warning).
		if q.Has("endpoint") {
			if !q.Has("request_checksum_calculation") {
				q.Set("request_checksum_calculation", "when_required")
			}
			if !q.Has("response_checksum_validation") {
				q.Set("response_checksum_validation", "when_required")
			}
		}
	}
	u.RawQuery = q.Encode()
	var bucket *blob.Bucket
	if u.Scheme == "s3" {
		bucket, err = openS3(ctx, u)
	} else {
		bucket, err = blob.OpenBucket(ctx, u.String())
	}
	if err != nil {
		return nil, fmt.Errorf("backend: open %s: %w", rawURL, err)
	}
	b.bucket = bucket
	if createdParent != "" {
		// The new root directory's own entry must be durable too.
		if err := syncDir(createdParent); err != nil {
			bucket.Close()
			return nil, fmt.Errorf("backend: open %s: %w", rawURL, err)
		}
	}
	return b, nil
}

// bucketBackend is a Backend over a gocloud blob.Bucket.
type bucketBackend struct {
	bucket *blob.Bucket
	scheme string
	dir    string // file:// only: absolute root directory
	fs     fileState
}

// wrap maps driver errors to the package's sentinels. FailedPrecondition
// means ErrExists only for a Put with ifNotExist (the only conditional
// request this package makes).
func wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound:
		return fmt.Errorf("%s %q: %w: %w", op, key, ErrNotFound, err)
	case gcerrors.FailedPrecondition:
		if op == "put" {
			return fmt.Errorf("%s %q: %w: %w", op, key, ErrExists, err)
		}
	}
	return fmt.Errorf("%s %q: %w", op, key, err)
}

func (b *bucketBackend) Put(ctx context.Context, key string, data []byte, ifNotExist bool) error {
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if b.dir != "" {
		return b.putFile(ctx, key, data, ifNotExist)
	}
	opts := &blob.WriterOptions{
		ContentType:                 contentType,
		DisableContentTypeDetection: true,
		IfNotExist:                  ifNotExist,
	}
	if b.scheme == "gs" {
		opts.BufferSize = gcsBufferSize(len(data))
	}
	return wrap("put", key, b.bucket.Upload(ctx, key, bytes.NewReader(data), opts))
}

func (b *bucketBackend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := CheckKey(key); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	r, size, err := b.openRange(ctx, key, 0, -1)
	if err != nil {
		return nil, wrap("get", key, err)
	}
	defer r.Close()
	buf := bytes.NewBuffer(make([]byte, 0, max(size, 0)+bytes.MinRead))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, wrap("get", key, err)
	}
	if int64(buf.Len()) != size {
		return nil, fmt.Errorf("get %q: read %d bytes of a %d-byte object: %w", key, buf.Len(), size, io.ErrUnexpectedEOF)
	}
	return buf.Bytes(), nil
}

// shortObjectError is GetRange's "the object ends before offset+length": it
// wraps io.ErrUnexpectedEOF and is not transient (the object is what it is).
type shortObjectError struct {
	key                  string
	offset, length, size int64
}

func (e *shortObjectError) Error() string {
	return fmt.Sprintf("get %q range [%d, +%d): object has %d bytes: %v", e.key, e.offset, e.length, e.size, io.ErrUnexpectedEOF)
}

func (e *shortObjectError) Unwrap() error { return io.ErrUnexpectedEOF }

func (b *bucketBackend) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := CheckKey(key); err != nil {
		return nil, fmt.Errorf("get range: %w", err)
	}
	if offset < 0 || length < -1 {
		return nil, fmt.Errorf("get %q range [%d, +%d): %w", key, offset, length, errBadRange)
	}
	// pastEnd answers a range that starts at or after the end of an object
	// of size bytes.
	pastEnd := func(size int64) ([]byte, error) {
		if offset > size || length > 0 {
			return []byte{}, &shortObjectError{key, offset, length, size}
		}
		return []byte{}, nil
	}
	if length == 0 {
		size, err := b.Size(ctx, key)
		if err != nil {
			return nil, err
		}
		if offset >= size {
			return pastEnd(size)
		}
		return []byte{}, nil
	}
	r, size, err := b.openRange(ctx, key, offset, length)
	if err != nil {
		if gcerrors.Code(err) != gcerrors.NotFound {
			// S3, GCS and Azure answer a range past the end with 416,
			// which the drivers do not map; look at the object's size.
			if size, serr := b.Size(ctx, key); serr == nil && offset >= size {
				return pastEnd(size)
			}
		}
		return nil, wrap("get range", key, err)
	}
	defer r.Close()
	want := size - offset
	if length >= 0 && length < want {
		want = length
	}
	if want <= 0 {
		return pastEnd(size)
	}
	buf := bytes.NewBuffer(make([]byte, 0, want+bytes.MinRead))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, wrap("get range", key, err)
	}
	if int64(buf.Len()) != want {
		// Fewer bytes than the object holds: a cut transfer, not a short
		// object.
		return nil, fmt.Errorf("get %q range [%d, +%d): read %d of %d bytes: %w", key, offset, length, buf.Len(), want, io.ErrUnexpectedEOF)
	}
	if length >= 0 && want < length {
		return buf.Bytes(), &shortObjectError{key, offset, length, size}
	}
	return buf.Bytes(), nil
}

var errBadRange = errors.New("invalid range")

// openRange opens a range reader and returns it with the size of the whole
// object it reads from. fileblob takes the size from a stat of the path made
// before it opens the file, so a concurrent Put (a rename) can pair one
// version's size with the other's bytes; on file:// the size comes from the
// open file itself.
func (b *bucketBackend) openRange(ctx context.Context, key string, offset, length int64) (*blob.Reader, int64, error) {
	var f *os.File
	var opts *blob.ReaderOptions
	if b.dir != "" {
		opts = &blob.ReaderOptions{BeforeRead: func(as func(any) bool) error {
			as(&f)
			return nil
		}}
	}
	r, err := b.bucket.NewRangeReader(ctx, key, offset, length, opts)
	if err != nil {
		return nil, 0, err
	}
	size := r.Size()
	if f != nil {
		info, err := f.Stat()
		if err != nil {
			r.Close()
			return nil, 0, err
		}
		size = info.Size()
	}
	return r, size, nil
}

func (b *bucketBackend) Size(ctx context.Context, key string) (int64, error) {
	if err := CheckKey(key); err != nil {
		return 0, fmt.Errorf("size: %w", err)
	}
	a, err := b.bucket.Attributes(ctx, key)
	if err != nil {
		return 0, wrap("size", key, err)
	}
	return a.Size, nil
}

func (b *bucketBackend) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return wrap("delete", key, b.bucket.Delete(ctx, key))
}

func (b *bucketBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := checkPrefix(prefix); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if b.dir != "" {
		return b.listFile(ctx, prefix, fn)
	}
	it := b.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return wrap("list", prefix, err)
		}
		if obj.IsDir {
			continue
		}
		if err := fn(ObjectInfo{Key: obj.Key, Size: obj.Size, ModTime: obj.ModTime}); err != nil {
			return err
		}
	}
}

func (b *bucketBackend) Close() error { return b.bucket.Close() }

// HTTPTimeouts bound the waits of the s3:// HTTP client. None of them
// limits a whole request: a large transfer over a slow link takes what it
// takes as long as bytes keep moving.
type HTTPTimeouts struct {
	// Dial bounds a TCP connect (URL parameter dial_timeout).
	Dial time.Duration
	// ResponseHeader bounds the wait for a response's headers once the
	// request is written (header_timeout).
	ResponseHeader time.Duration
	// Idle bounds a pause in a body: a request body the store stops
	// taking, or a response body that stops coming (idle_timeout).
	Idle time.Duration
}

// DefaultHTTPTimeouts are the s3:// client's bounds unless the URL sets
// others: long enough for a store under load, short enough that a hung
// store fails a try (and WithRetry tries again) instead of a backup
// hanging for ever.
var DefaultHTTPTimeouts = HTTPTimeouts{Dial: 10 * time.Second, ResponseHeader: 30 * time.Second, Idle: 60 * time.Second}

// ErrStalled marks a try the s3:// client gave up because the store
// stopped answering: no connection, no response headers, or no progress
// of a body within its HTTPTimeouts. It is transient.
var ErrStalled = errors.New("backend: the object store stopped answering")

// openS3 opens an s3:// URL as gocloud's s3blob URL opener does (the same
// parameters), but with an HTTP client of bounded waits and without the
// SDK's own retries, which would multiply WithRetry's tries (three SDK
// tries each, with backoffs up to 20 s).
func openS3(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	q := u.Query()
	timeouts := DefaultHTTPTimeouts
	for key, d := range map[string]*time.Duration{"dial_timeout": &timeouts.Dial,
		"header_timeout": &timeouts.ResponseHeader, "idle_timeout": &timeouts.Idle} {
		if !q.Has(key) {
			continue
		}
		v, err := time.ParseDuration(q.Get(key))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%s=%q: want a positive duration such as 30s", key, q.Get(key))
		}
		*d = v
		q.Del(key)
	}
	var bopts s3blob.Options
	var sopts []func(*s3.Options)
	if v := q.Get("ssetype"); v != "" {
		for _, t := range s3types.ServerSideEncryptionAes256.Values() {
			if strings.EqualFold(string(t), v) {
				bopts.EncryptionType = t
			}
		}
		if bopts.EncryptionType == "" {
			return nil, fmt.Errorf("ssetype=%q: not a server-side encryption type", v)
		}
	}
	bopts.KMSEncryptionID = q.Get("kmskeyid")
	for _, key := range []string{"accelerate", "disable_https", "use_path_style", "s3ForcePathStyle"} {
		if !q.Has(key) {
			continue
		}
		on, err := strconv.ParseBool(q.Get(key))
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w", key, q.Get(key), err)
		}
		sopts = append(sopts, func(o *s3.Options) {
			switch key {
			case "accelerate":
				o.UseAccelerate = on
			case "disable_https":
				o.EndpointOptions.DisableHTTPS = on
			default:
				o.UsePathStyle = on
			}
		})
	}
	for _, key := range []string{"ssetype", "kmskeyid", "accelerate", "disable_https", "use_path_style", "s3ForcePathStyle"} {
		q.Del(key)
	}
	cfg, err := gcaws.V2ConfigFromURLParams(ctx, q)
	if err != nil {
		return nil, err
	}
	cfg.HTTPClient = newWatchedClient(timeouts)
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	bopts.RequestChecksumCalculation = cfg.RequestChecksumCalculation // the upload manager does not read cfg
	return s3blob.OpenBucket(ctx, s3.NewFromConfig(cfg, sopts...), u.Host, &bopts)
}

// watchedClient is the s3:// HTTP client: the SDK's transport with the
// dial and response-header bounds, and per request a watchdog that
// cancels it when a body (the upload, then the download) makes no progress
// for the idle bound. A read deadline on the connection would not do: the
// transport reads its connection during the whole upload, and a deadline
// would cut a long healthy one.
type watchedClient struct {
	c        aws.HTTPClient
	timeouts HTTPTimeouts
}

func newWatchedClient(t HTTPTimeouts) *watchedClient {
	c := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = t.Dial }).
		WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = t.ResponseHeader })
	return &watchedClient{c: c, timeouts: t}
}

func (w *watchedClient) Do(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	ctx, cancel := context.WithCancelCause(parent)
	dog := &watchdog{idle: w.timeouts.Idle, cancel: cancel}
	req = req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		dog.arm()
		req.Body = &watchedBody{rc: req.Body, dog: dog, ctx: ctx, upload: true}
		if getBody := req.GetBody; getBody != nil {
			req.GetBody = func() (io.ReadCloser, error) {
				rc, err := getBody()
				if err != nil || rc == http.NoBody {
					return rc, err
				}
				return &watchedBody{rc: rc, dog: dog, ctx: ctx, upload: true}, nil
			}
		}
	}
	resp, err := w.c.Do(req)
	dog.disarm()
	if err != nil {
		cause := context.Cause(ctx)
		cancel(nil)
		var nerr net.Error
		switch {
		case parent.Err() != nil:
		case errors.Is(cause, ErrStalled):
			err = fmt.Errorf("%w (%v)", cause, err)
		case errors.As(err, &nerr) && nerr.Timeout():
			// A dial or response-header timeout; %v: the chain must not
			// hold a context error, which IsTransient takes for the
			// caller's.
			err = fmt.Errorf("%w: %v (bounds: dial %v, response headers %v)", ErrStalled, err, w.timeouts.Dial, w.timeouts.ResponseHeader)
		}
		return nil, err
	}
	dog.arm()
	resp.Body = &watchedBody{rc: resp.Body, dog: dog, ctx: ctx, done: func() { cancel(nil) }}
	return resp, nil
}

// watchdog cancels a request's context with an ErrStalled cause when it is
// armed and not re-armed within idle.
type watchdog struct {
	idle   time.Duration
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	timer  *time.Timer
}

func (d *watchdog) arm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer == nil {
		d.timer = time.AfterFunc(d.idle, func() {
			d.cancel(fmt.Errorf("%w: no progress of a body for %v", ErrStalled, d.idle))
		})
		return
	}
	d.timer.Reset(d.idle)
}

func (d *watchdog) disarm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
}

// watchedBody re-arms the watchdog at every read that moves bytes. An
// upload's body disarms it at its end (then the response-header bound
// applies); a response's body ends the request at EOF or Close.
type watchedBody struct {
	rc     io.ReadCloser
	dog    *watchdog
	ctx    context.Context
	upload bool
	done   func()
	once   sync.Once
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.dog.arm()
	}
	if err != nil {
		if cause := context.Cause(b.ctx); errors.Is(cause, ErrStalled) {
			return n, fmt.Errorf("%w (%v)", cause, err)
		}
		if err == io.EOF {
			b.finish()
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	if !b.upload {
		b.finish()
	}
	return err
}

func (b *watchedBody) finish() {
	b.dog.disarm()
	if b.done != nil {
		b.once.Do(b.done)
	}
}
