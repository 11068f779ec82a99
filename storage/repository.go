package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// repositories
	_ "gocloud.dev/blob/memblob"  // mem:// repositories (tests; not shared between Opens)
	"gocloud.dev/gcerrors"
)

// Repository format identity written to and checked in the config object.
const (
	RepositoryFormat  = "crayfish"
	RepositoryVersion = 0 // major version; readers refuse anything larger
	RepositoryHash    = "sha256"
)

// Config is the content of the config object at the root of a repository.
type Config struct {
	Format    string    `json:"format"`  // always RepositoryFormat
	Version   int       `json:"version"` // major format version
	ID        string    `json:"id"`      // random, fixed when the repository is created
	Hash      string    `json:"hash"`    // content address algorithm: RepositoryHash
	CreatedAt time.Time `json:"created_at"`
}

// Keys of the layout (docs/repository-format.md).
const (
	configKey      = "config"
	objectsPrefix  = "objects/"
	manifestPrefix = "manifests/"
)

// maxConfigSize caps how much of the config object Open reads.
const maxConfigSize = 1 << 20

const contentType = "application/octet-stream"

func objectKey(id ObjectID) string {
	h := id.String()
	return objectsPrefix + h[:2] + "/" + h
}

// OpenOptions configures Open.
type OpenOptions struct {
	// Create writes the config object if the URL holds no repository.
	Create bool
}

// Repository is an open repository. Its methods are safe for concurrent use.
type Repository struct {
	url    string
	bucket *blob.Bucket
	config Config

	// durableDirs holds local directories (file:// only) whose own entry in
	// their parent has been fsynced by this process.
	durableDirs sync.Map
}

// Open opens the repository at url (file:///path or mem://). It reads only
// the config object. Without opts.Create a URL that holds no repository gives
// ErrNotInitialized; a config written by an incompatible format gives
// ErrUnsupportedVersion.
func Open(ctx context.Context, rawURL string, opts OpenOptions) (*Repository, error) {
	bucketURL, err := driverURL(rawURL, opts)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", rawURL, err)
	}
	b, err := blob.OpenBucket(ctx, bucketURL)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) { // file:// directory missing
			return nil, fmt.Errorf("open repository %s: %w", rawURL, ErrNotInitialized)
		}
		return nil, fmt.Errorf("open repository %s: %w", rawURL, err)
	}
	r := &Repository{url: rawURL, bucket: b}
	cfg, err := r.readConfig(ctx)
	if errors.Is(err, ErrNotFound) {
		if !opts.Create {
			b.Close()
			return nil, fmt.Errorf("open repository %s: %w", rawURL, ErrNotInitialized)
		}
		cfg, err = r.createConfig(ctx)
	}
	if err == nil {
		err = checkConfig(cfg)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open repository %s: %w", rawURL, err)
	}
	r.config = cfg
	return r, nil
}

// driverURL adds the driver options this package relies on to a file:// URL.
func driverURL(rawURL string, opts OpenOptions) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	if u.Scheme != "file" {
		return rawURL, nil
	}
	q := u.Query()
	// No .attrs sidecar per object: nothing here reads blob attributes.
	if !q.Has("metadata") {
		q.Set("metadata", "skip")
	}
	// Temporary files next to their target rather than in os.TempDir: the
	// final rename then never crosses a mount point (a repository usually
	// lives on another disk than /tmp), and the temporary file's directory
	// is the one to fsync after the rename.
	q.Set("no_tmp_dir", "1")
	if opts.Create {
		q.Set("create_dir", "1")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (r *Repository) readConfig(ctx context.Context) (Config, error) {
	var cfg Config
	rd, err := r.bucket.NewReader(ctx, configKey, nil)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", translate(err))
	}
	defer rd.Close()
	data, err := io.ReadAll(&limitReader{r: rd, n: maxConfigSize})
	if errors.Is(err, errTooLarge) {
		return cfg, fmt.Errorf("read config: larger than %d bytes: %w", maxConfigSize, ErrCorrupt)
	}
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", translate(err))
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("read config: %v: %w", err, ErrCorrupt)
	}
	return cfg, nil
}

// createConfig writes a new config unless one appeared meanwhile, in which
// case it returns that one.
func (r *Repository) createConfig(ctx context.Context) (Config, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Config{}, err
	}
	cfg := Config{
		Format:    RepositoryFormat,
		Version:   RepositoryVersion,
		ID:        hex.EncodeToString(id[:]),
		Hash:      RepositoryHash,
		CreatedAt: time.Now().UTC(),
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return Config{}, err
	}
	data = append(data, '\n')
	_, err = r.write(ctx, configKey, true, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		return r.readConfig(ctx) // another process created it first
	}
	if err != nil {
		return Config{}, fmt.Errorf("create config: %w", err)
	}
	return cfg, nil
}

func checkConfig(cfg Config) error {
	if cfg.Format != RepositoryFormat || cfg.Version < 0 || cfg.Version > RepositoryVersion {
		return fmt.Errorf("config says format %q version %d; this build supports format %q up to version %d: %w",
			cfg.Format, cfg.Version, RepositoryFormat, RepositoryVersion, ErrUnsupportedVersion)
	}
	if cfg.Hash != RepositoryHash {
		return fmt.Errorf("config says hash %q; this build supports only %q: %w",
			cfg.Hash, RepositoryHash, ErrUnsupportedVersion)
	}
	if cfg.ID == "" {
		return fmt.Errorf("config has no repository id: %w", ErrCorrupt)
	}
	return nil
}

// Close releases the repository's bucket.
func (r *Repository) Close() error { return r.bucket.Close() }

// URL returns the URL the repository was opened with.
func (r *Repository) URL() string { return r.url }

// Config returns the repository's config as read (or written) by Open.
func (r *Repository) Config() Config { return r.config }

// Has reports whether the object id is stored. It does not verify it.
func (r *Repository) Has(ctx context.Context, id ObjectID) (bool, error) {
	ok, err := r.bucket.Exists(ctx, objectKey(id))
	if err != nil {
		return false, fmt.Errorf("has object %s: %w", id, translate(err))
	}
	return ok, nil
}

// Put stores the bytes read from src under id and returns the number of bytes
// stored (header plus payload). size is the expected plaintext length, or -1
// if unknown. The object becomes visible only once complete and verified:
// if SHA-256 of what was read is not id, or fewer or more than size bytes
// were read, nothing is stored and the error wraps ErrCorrupt. An existing
// object with this id is replaced by the new, verified copy (same content;
// this also repairs a damaged one).
func (r *Repository) Put(ctx context.Context, id ObjectID, size int64, src io.Reader) (int64, error) {
	if size >= 0 {
		src = &limitReader{r: src, n: size} // a longer source fails early
	}
	h := sha256.New()
	in := &trackingReader{r: io.TeeReader(src, h)}
	var read int64
	sourceErr := func(err error) error {
		if errors.Is(err, errTooLarge) {
			return fmt.Errorf("put object %s: source has more than %d bytes: %w", id, size, ErrCorrupt)
		}
		return fmt.Errorf("put object %s: read source: %w", id, err)
	}

	// Buffer a prefix: the whole object if it is small.
	bufSize := probeSize
	if size >= 0 && size < probeSize {
		bufSize = int(size) + 1 // +1 to see EOF without a second buffer
	}
	buf := make([]byte, bufSize)
	n, err := io.ReadFull(in, buf)
	read += int64(n)
	complete := err == io.EOF || err == io.ErrUnexpectedEOF
	if err != nil && !complete {
		return 0, sourceErr(err)
	}
	buf = buf[:n]

	verify := func() error {
		if size >= 0 && read != size {
			return fmt.Errorf("put object %s: source gave %d bytes, expected %d: %w", id, read, size, ErrCorrupt)
		}
		if got := ObjectID(h.Sum(nil)); got != id {
			return fmt.Errorf("put object %s: content hashes to %s: %w", id, got, ErrCorrupt)
		}
		return nil
	}

	// The prefix, compressed, decides the codec.
	packed := blockEncoder().EncodeAll(buf, nil)
	codec := codecZstd
	if len(packed) >= len(buf) {
		codec = codecRaw
	}

	if complete {
		// Verify before opening a writer: a bad object costs no write at all.
		if err := verify(); err != nil {
			return 0, err
		}
		payload := packed
		if codec == codecRaw {
			payload = buf
		}
		stored, err := r.write(ctx, objectKey(id), false, func(w io.Writer) error {
			if _, err := w.Write([]byte{codec}); err != nil {
				return err
			}
			_, err := w.Write(payload)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("put object %s: %w", id, err)
		}
		return stored, nil
	}

	// Large object: write the prefix as chosen, then stream the rest of src.
	// With zstd the prefix already compressed is the first frame and the
	// rest a second one (concatenated frames decode as one stream).
	stored, err := r.write(ctx, objectKey(id), false, func(w io.Writer) error {
		rest := &countingReader{r: in}
		defer func() { read += rest.n }()
		if codec == codecRaw {
			packed = buf
		}
		if _, err := w.Write([]byte{codec}); err != nil {
			return err
		}
		if _, err := w.Write(packed); err != nil {
			return err
		}
		if codec == codecRaw {
			_, err := io.Copy(w, rest)
			return err
		}
		enc := streamEncoders.Get().(*zstd.Encoder)
		enc.Reset(w)
		if _, err := io.Copy(enc, rest); err != nil {
			return err // the encoder is dropped, not pooled, after an error
		}
		if err := enc.Close(); err != nil {
			return err
		}
		enc.Reset(nil)
		streamEncoders.Put(enc)
		return nil
	}, verify)
	if err != nil {
		if in.err != nil {
			return 0, sourceErr(in.err)
		}
		if errors.Is(err, ErrCorrupt) {
			return 0, err // already carries context
		}
		return 0, fmt.Errorf("put object %s: %w", id, err)
	}
	return stored, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// write stores key atomically: fill writes the content, then every check must
// pass before the write is committed; on any error the write is aborted by
// cancelling its context, so nothing becomes visible under key. It returns
// the number of bytes written. With ifNotExist an existing key fails the
// write with gcerrors.FailedPrecondition (not atomic across processes on
// file://, see the format doc). On file:// the data and the directory entry
// are fsynced before write returns.
func (r *Repository) write(ctx context.Context, key string, ifNotExist bool, fill func(io.Writer) error, checks ...func() error) (int64, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var file *os.File // set by the file:// driver
	w, err := r.bucket.NewWriter(wctx, key, &blob.WriterOptions{
		ContentType: contentType,
		IfNotExist:  ifNotExist,
		BeforeWrite: func(as func(any) bool) error {
			as(&file)
			return nil
		},
	})
	if err != nil {
		return 0, translate(err)
	}
	tw := &trackingWriter{w: w}
	abort := func(err error) (int64, error) {
		cancel()
		_ = w.Close() // fails because of the cancel; the temporary data is dropped
		return 0, err
	}
	if err := fill(tw); err != nil {
		if tw.err != nil {
			err = translate(tw.err)
		}
		return abort(err)
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return abort(err)
		}
	}
	if file != nil {
		if err := file.Sync(); err != nil {
			return abort(err)
		}
	}
	if err := w.Close(); err != nil {
		return 0, translate(err)
	}
	if file != nil {
		if err := r.syncDirs(filepath.Dir(file.Name()), key); err != nil {
			return 0, err
		}
	}
	return tw.n, nil
}

// syncDirs makes a renamed file's directory entry durable: it fsyncs dir and,
// once per process, each directory between dir and the repository root
// (they may have just been created for this key).
func (r *Repository) syncDirs(dir, key string) error {
	if err := syncDir(dir); err != nil {
		return err
	}
	for range strings.Count(key, "/") {
		if _, ok := r.durableDirs.Load(dir); ok {
			return nil
		}
		parent := filepath.Dir(dir)
		if err := syncDir(parent); err != nil {
			return err
		}
		r.durableDirs.Store(dir, true)
		dir = parent
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) { // file systems that cannot sync directories
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Get streams the plaintext of id into dst, verifying its SHA-256 as it goes,
// and returns the number of bytes written to dst. A mismatch or undecodable
// data gives an error wrapping ErrCorrupt, after dst may already have
// received bytes (write to a temporary file). A missing object gives
// ErrNotFound.
func (r *Repository) Get(ctx context.Context, id ObjectID, dst io.Writer) (int64, error) {
	rd, err := r.bucket.NewReader(ctx, objectKey(id), nil)
	if err != nil {
		return 0, fmt.Errorf("get object %s: %w", id, translate(err))
	}
	defer rd.Close()
	src := &trackingReader{r: rd}

	var header [1]byte
	if _, err := io.ReadFull(src, header[:]); err != nil {
		if src.err != nil {
			return 0, fmt.Errorf("get object %s: %w", id, translate(src.err))
		}
		return 0, fmt.Errorf("get object %s: empty object: %w", id, ErrCorrupt)
	}

	h := sha256.New()
	out := &trackingWriter{w: io.MultiWriter(h, dst)}
	switch header[0] {
	case codecRaw:
		_, err = io.Copy(out, src)
	case codecZstd:
		var dec *zstd.Decoder
		if dec, err = getDecoder(src); err == nil {
			_, err = dec.WriteTo(out)
			putDecoder(dec)
		}
	default:
		return 0, fmt.Errorf("get object %s: unknown codec %d: %w", id, header[0], ErrCorrupt)
	}
	switch {
	case src.err != nil:
		return out.n, fmt.Errorf("get object %s: read: %w", id, translate(src.err))
	case out.err != nil:
		return out.n, fmt.Errorf("get object %s: write: %w", id, out.err)
	case err != nil:
		return out.n, fmt.Errorf("get object %s: decode: %v: %w", id, err, ErrCorrupt)
	}
	if got := ObjectID(h.Sum(nil)); got != id {
		return out.n, fmt.Errorf("get object %s: content hashes to %s: %w", id, got, ErrCorrupt)
	}
	return out.n, nil
}

// translate maps gocloud's NotFound to ErrNotFound, keeping the original
// error's text; other errors are returned unchanged.
func translate(err error) error {
	if err != nil && gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("%w (%v)", ErrNotFound, err)
	}
	return err
}
