package tree

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"golang.org/x/time/rate"

	"github.com/crayfish-backup/crayfish/storage"
)

// ObjectStore is the part of a repository Upload needs. Put must verify
// that the bytes it reads hash to id and fail with an error wrapping
// storage.ErrCorrupt otherwise; it returns the bytes it stored.
type ObjectStore interface {
	Has(ctx context.Context, id storage.ObjectID) (bool, error)
	Put(ctx context.Context, id storage.ObjectID, size int64, r io.Reader) (int64, error)
}

// UploadOptions tune Upload.
type UploadOptions struct {
	// Concurrency is the number of objects checked and uploaded at once; default 8.
	Concurrency int
	// Limiter, if set, limits the bytes per second read from files.
	Limiter *rate.Limiter
	// Progress, if set, receives progress over the distinct objects.
	Progress ProgressFunc
}

// UploadStats count distinct objects: two files with the same content are
// one object.
type UploadStats struct {
	Uploaded            int64 // objects put
	UploadedBytes       int64 // their logical size
	StoredBytes         int64 // what Put reported storing (after compression)
	AlreadyPresent      int64 // objects the store already had
	AlreadyPresentBytes int64 // their logical size
}

const defaultUploadConcurrency = 8

// upload is one distinct object and the first file that holds it.
type upload struct {
	id   storage.ObjectID
	size int64
	path string
}

// Upload stores the content of every non-empty regular file of entries, read
// from snapshotDir/<path>, that store does not already hold. Each object is
// considered once however many files share it. The recorded id is trusted
// and Put verifies it, so a snapshot copy that changed since Snapshot hashed
// it fails with storage.ErrCorrupt rather than being stored under a wrong
// id. The first error cancels the other uploads and is returned wrapped
// with the file's path.
func Upload(ctx context.Context, snapshotDir string, entries []storage.FileEntry, store ObjectStore, opts UploadOptions) (UploadStats, error) {
	// Entries normally come from Snapshot, but they are paths we open: the
	// same validation as Restore keeps reads inside snapshotDir.
	if err := validateEntries(entries); err != nil {
		return UploadStats{}, fmt.Errorf("upload: %w", err)
	}
	if l := opts.Limiter; l != nil && l.Limit() != rate.Inf && l.Burst() <= 0 {
		return UploadStats{}, errors.New("upload: rate limiter has a zero burst and would never allow a byte")
	}
	uploads, total := distinctObjects(entries)
	concurrency := opts.Concurrency
	if concurrency <= 0 {
		concurrency = defaultUploadConcurrency
	}
	u := &uploader{dir: snapshotDir, store: store, limiter: opts.Limiter,
		progress: newProgressTracker(opts.Progress, int64(len(uploads)), total)}
	err := runPool(ctx, concurrency, uploads, u.upload)
	u.progress.finish()
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("upload: %w (%w)", ctx.Err(), err)
	}
	return u.snapshotStats(), err
}

// distinctObjects lists the objects to consider, first file first, and
// their total size.
func distinctObjects(entries []storage.FileEntry) ([]upload, int64) {
	seen := make(map[storage.ObjectID]bool)
	var out []upload
	var total int64
	for _, e := range entries {
		if e.Type != storage.TypeFile || e.Size == 0 || e.Content.IsZero() || seen[e.Content] {
			continue
		}
		seen[e.Content] = true
		out = append(out, upload{id: e.Content, size: e.Size, path: e.Path})
		total += e.Size
	}
	return out, total
}

// uploader holds the state shared by the workers of one Upload call.
type uploader struct {
	dir      string
	store    ObjectStore
	limiter  *rate.Limiter
	progress *progressTracker

	mu    sync.Mutex
	stats UploadStats
}

func (u *uploader) snapshotStats() UploadStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stats
}

func (u *uploader) upload(ctx context.Context, o upload) error {
	has, err := u.store.Has(ctx, o.id)
	if err != nil {
		return fmt.Errorf("upload %s: check object %s: %w", o.path, o.id, err)
	}
	if has {
		u.mu.Lock()
		u.stats.AlreadyPresent++
		u.stats.AlreadyPresentBytes += o.size
		u.mu.Unlock()
		u.progress.add(1, o.size)
		return nil
	}
	stored, err := u.put(ctx, o)
	if err != nil {
		return fmt.Errorf("upload %s: %w", o.path, err)
	}
	u.mu.Lock()
	u.stats.Uploaded++
	u.stats.UploadedBytes += o.size
	u.stats.StoredBytes += stored
	u.mu.Unlock()
	u.progress.addFile()
	return nil
}

// put streams one snapshot file into the store.
func (u *uploader) put(ctx context.Context, o upload) (int64, error) {
	f, info, err := openRegular(filepath.Join(u.dir, filepath.FromSlash(o.path)))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// A size change is certain corruption; saying so is clearer than the
	// hash mismatch Put would report after reading everything.
	if info.Size() != o.size {
		return 0, fmt.Errorf("snapshot copy is %d bytes, %d were hashed: %w", info.Size(), o.size, storage.ErrCorrupt)
	}
	r := &throttledReader{ctxReader: ctxReader{ctx: ctx, r: f, progress: u.progress}, limiter: u.limiter}
	return u.store.Put(ctx, o.id, o.size, r)
}

// throttledReader applies the bandwidth limit to the bytes read from a file.
// Reads are capped at the limiter's burst because WaitN rejects larger
// requests; waiting after the read, for the exact count, keeps the limit
// accurate for short reads at the end of a file.
type throttledReader struct {
	ctxReader
	limiter *rate.Limiter
}

func (r *throttledReader) Read(p []byte) (int, error) {
	limited := r.limiter != nil && r.limiter.Limit() != rate.Inf
	if limited {
		if b := r.limiter.Burst(); b > 0 && len(p) > b {
			p = p[:b]
		}
	}
	n, err := r.ctxReader.Read(p)
	if limited && n > 0 {
		if werr := r.limiter.WaitN(r.ctx, n); werr != nil {
			return 0, werr
		}
	}
	return n, err
}
