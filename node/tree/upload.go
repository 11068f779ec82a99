package tree

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/node/hashcache"
	"github.com/crayfish-backup/crayfish/storage"
)

// BlobStore is the part of a repository Upload needs. It must be safe for
// concurrent use: Upload calls HasBlob from one goroutine and SaveBlob from
// several at once.
type BlobStore interface {
	// HasBlob reports whether the blob is already stored (in the index or
	// saved earlier in this session).
	HasBlob(id storage.ObjectID) bool
	// SaveBlob stores data, the plaintext of blob id, and returns the bytes
	// it stored (after compression). It may keep a reference to data only
	// until it returns. It should verify that data hashes to id and fail
	// with an error wrapping storage.ErrCorrupt otherwise.
	SaveBlob(ctx context.Context, t storage.BlobType, id storage.ObjectID, data []byte) (stored int64, err error)
}

// UploadOptions tune Upload.
type UploadOptions struct {
	// Concurrency is the number of chunks read and saved at once; default
	// runtime.NumCPU(). Upload holds at most this many ChunkSize buffers.
	Concurrency int
	// Limiter, if set, limits the bytes per second read from files.
	Limiter *rate.Limiter
	// Throttled, if set, learns each time the limiter made a read wait,
	// and how long (a node's metrics); the readers call it concurrently.
	Throttled func(time.Duration)
	// Progress, if set, receives progress over the regular files (a file is
	// done when all its chunks are saved or skipped) and their bytes
	// (skipped chunks included).
	Progress ProgressFunc
	// Cache, if set, is the hash cache the snapshot was taken with. A file
	// Snapshot did not link whose live content turns out not to match the
	// hashes the cache gave it is forgotten there, so the next snapshot
	// reads it.
	Cache *hashcache.Cache
}

// UploadStats count chunks: every chunk of every regular file is either
// uploaded or already present, so Uploaded+AlreadyPresent is the number of
// chunks and UploadedBytes+AlreadyPresentBytes the size of the files.
type UploadStats struct {
	Uploaded            int64 // chunks saved
	UploadedBytes       int64 // their logical size
	StoredBytes         int64 // what SaveBlob reported storing (after compression)
	AlreadyPresent      int64 // chunks skipped: in the store, or earlier in this call
	AlreadyPresentBytes int64 // their logical size
}

// chunkPool recycles the ChunkSize buffers Upload reads chunks into; at
// most one per worker is in use.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, storage.ChunkSize); return &b }}

// chunkJob is one chunk to read and save.
type chunkJob struct {
	file  int // index into uploader.files
	index int // chunk number within the file
	id    storage.ObjectID
	off   int64
	size  int64
	dir   *dirHandle // the file's directory in the snapshot; the job holds a reference
}

// Upload saves every chunk of every regular file of entries, read from
// snapshotDir/<path>, that store does not already hold. Files that Snapshot
// did not link because the hash cache knew them are normally not read at
// all, since their chunks are in the store already; a chunk of one that is
// missing is read from the live file, and only if the file still has the
// identity (inode, size, mtime, ctime) it had during the snapshot, before
// and after the read, and the content the cache recorded: otherwise the
// upload fails with ErrSourceChanged, and the next snapshot reads it. snapshotDir is
// SnapshotResult.Dir: the snapshot copy, or the root itself after an
// in-place snapshot. Chunks are
// considered in path order; a chunk is skipped if store.HasBlob reports it
// or an earlier chunk of this call had the same id. The others are read
// (one pread of exactly that range each), hashed and saved by
// opts.Concurrency workers, so the chunks of one large file upload in
// parallel.
//
// Entries are validated like Restore's (ErrUnsafePath, ErrInvalidEntry),
// and files are opened through an os.Root of snapshotDir without following
// a symlink in their last component, so nothing outside snapshotDir is
// read even if it is a live tree that changes meanwhile. The recorded sizes and chunk ids
// are checked against the bytes read: a snapshot copy that changed since
// Snapshot hashed it fails with an error wrapping storage.ErrCorrupt that
// names the file and chunk, rather than being stored under a wrong id. The
// first error cancels the other uploads and is returned; the stats count
// what was done until then.
func Upload(ctx context.Context, snapshotDir string, entries []storage.FileEntry, store BlobStore, opts UploadOptions) (UploadStats, error) {
	// Entries normally come from Snapshot, but they are paths we open: the
	// same validation as Restore keeps reads inside snapshotDir.
	if err := validateEntries(entries); err != nil {
		return UploadStats{}, fmt.Errorf("upload: %w", err)
	}
	if l := opts.Limiter; l != nil && l.Limit() != rate.Inf && l.Burst() <= 0 {
		return UploadStats{}, errors.New("upload: rate limiter has a zero burst and would never allow a byte")
	}
	concurrency := opts.Concurrency
	if concurrency <= 0 {
		concurrency = runtime.NumCPU()
	}
	u := newUploader(entries, store, opts)
	u.cache = opts.Cache
	// Opened up front but only needed for chunks to save, so an upload
	// whose chunks are all present needs no snapshot directory.
	u.root, u.rootErr = os.OpenRoot(snapshotDir)
	if u.root != nil {
		defer u.root.Close()
	}
	u.dirs = newDirHandles(u.root, u.rootErr)
	err := pool.Each(ctx, concurrency, u.jobs(ctx), u.upload)
	u.progress.finish()
	if u.live != nil {
		u.live.Close()
	}
	u.dirs.closeAll()
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("upload: %w (%w)", ctx.Err(), err)
	}
	return u.snapshotStats(), err
}

// uploader holds the state of one Upload call.
type uploader struct {
	root    *os.Root // the snapshot directory
	rootErr error    // why root could not be opened
	store   BlobStore
	limiter *rate.Limiter
	// throttled learns the waits the limiter imposed (nil: nobody asks).
	throttled func(time.Duration)
	files     []*storage.FileEntry // regular files, sorted by path
	progress  *progressTracker
	cache     *hashcache.Cache

	// The snapshot's directories, for the jobs of their files.
	dirs *dirHandles

	// The files Snapshot did not link, read from its list on first need.
	listOnce sync.Once
	listErr  error
	live     *os.Root // the live root they are in
	liveIDs  map[string]hashcache.FileID

	mu        sync.Mutex
	stats     UploadStats
	remaining []int // per file, chunks not yet handled
}

func newUploader(entries []storage.FileEntry, store BlobStore, opts UploadOptions) *uploader {
	u := &uploader{store: store, limiter: opts.Limiter, throttled: opts.Throttled}
	var total, empty int64
	for i := range entries {
		if e := &entries[i]; e.Type == storage.TypeFile {
			u.files = append(u.files, e)
			total += e.Size
			if e.Size == 0 {
				empty++
			}
		}
	}
	slices.SortFunc(u.files, func(a, b *storage.FileEntry) int { return strings.Compare(a.Path, b.Path) })
	u.remaining = make([]int, len(u.files))
	for i, e := range u.files {
		u.remaining[i] = len(e.Chunks)
	}
	u.progress = newProgressTracker(opts.Progress, int64(len(u.files)), total)
	u.progress.add(empty, 0) // empty files have no chunks: nothing left to do
	return u
}

func (u *uploader) snapshotStats() UploadStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stats
}

// jobs yields, in path order, the chunks that need saving and accounts
// for the ones that do not. It runs in the goroutine feeding the workers,
// so the set of ids seen needs no lock, and a chunk whose twin is still
// being saved by a worker is not saved twice.
func (u *uploader) jobs(ctx context.Context) iter.Seq[chunkJob] {
	return func(yield func(chunkJob) bool) {
		seen := make(map[storage.ObjectID]bool)
		cur := dirCursor{set: u.dirs}
		defer cur.close()
		for fi, e := range u.files {
			for ci, id := range e.Chunks {
				if ctx.Err() != nil {
					return
				}
				size := chunkLen(e.Size, ci)
				if seen[id] || u.store.HasBlob(id) {
					u.handled(fi, size, false, 0)
					continue
				}
				seen[id] = true
				j := chunkJob{file: fi, index: ci, id: id, off: int64(ci) * storage.ChunkSize, size: size, dir: cur.handle(e.Path)}
				if !yield(j) {
					j.dir.release() // not taken
					return
				}
			}
		}
	}
}

// handled records one chunk as saved (uploaded) or skipped.
func (u *uploader) handled(file int, size int64, uploaded bool, stored int64) {
	u.mu.Lock()
	if uploaded {
		u.stats.Uploaded++
		u.stats.UploadedBytes += size
		u.stats.StoredBytes += stored
	} else {
		u.stats.AlreadyPresent++
		u.stats.AlreadyPresentBytes += size
	}
	u.remaining[file]--
	var done int64
	if u.remaining[file] == 0 {
		done = 1
	}
	u.mu.Unlock()
	u.progress.add(done, size)
}

// upload reads, checks and saves one chunk.
func (u *uploader) upload(ctx context.Context, j chunkJob) error {
	defer j.dir.release()
	e := u.files[j.file]
	stored, err := u.save(ctx, e, j)
	if err != nil {
		return fmt.Errorf("upload %s: chunk %d: %w", e.Path, j.index, err)
	}
	u.handled(j.file, j.size, true, stored)
	return nil
}

func (u *uploader) save(ctx context.Context, e *storage.FileEntry, j chunkJob) (int64, error) {
	if u.rootErr != nil {
		return 0, u.rootErr
	}
	liveID, live, err := u.unlinked(e.Path)
	if err != nil {
		return 0, err
	}
	if live {
		return u.saveLive(ctx, e, j, liveID)
	}
	if j.dir.err != nil {
		return 0, j.dir.err
	}
	f, info, err := openRegularAt(j.dir.f, path.Base(e.Path), filepath.Join(u.root.Name(), filepath.FromSlash(e.Path)))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// A size change is certain corruption, and the recorded size is what
	// the chunk offsets come from.
	if info.Size() != e.Size {
		return 0, fmt.Errorf("snapshot copy is %d bytes, %d were hashed: %w", info.Size(), e.Size, storage.ErrCorrupt)
	}
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := (*bp)[:j.size]
	if err := u.readAt(ctx, f, buf, j.off); err != nil {
		return 0, err
	}
	if got := storage.HashBytes(buf); got != j.id {
		return 0, fmt.Errorf("snapshot copy changed since it was hashed (sha256 %s, recorded %s): %w",
			got, j.id, storage.ErrCorrupt)
	}
	return u.store.SaveBlob(ctx, storage.BlobData, j.id, buf)
}

// unlinked reports whether the file at rel was left out of the snapshot
// directory, and with which identity, loading Snapshot's list on first
// use.
func (u *uploader) unlinked(rel string) (hashcache.FileID, bool, error) {
	u.listOnce.Do(func() {
		root, ids, err := readUnlinkedList(u.root)
		if err != nil || ids == nil {
			u.listErr = err
			return
		}
		u.liveIDs = ids
		// nil if the root is gone: reading the listed files then fails.
		u.live, _ = os.OpenRoot(root)
	})
	if u.listErr != nil {
		return hashcache.FileID{}, false, u.listErr
	}
	id, ok := u.liveIDs[rel]
	return id, ok, nil
}

// saveLive reads a chunk of a file Snapshot did not link from the live
// tree, checking that the file is still the one the snapshot recorded:
// same identity before and after the read, ctime included, and the
// content the cache gave it.
func (u *uploader) saveLive(ctx context.Context, e *storage.FileEntry, j chunkJob, want hashcache.FileID) (int64, error) {
	if u.live == nil {
		return 0, fmt.Errorf("%w: live root of the snapshot unavailable", ErrSourceChanged)
	}
	f, info, err := openRegularIn(u.live, e.Path)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrSourceChanged, err)
	}
	defer f.Close()
	if err := sameIdentity(info, want); err != nil {
		return 0, err
	}
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := (*bp)[:j.size]
	if err := u.readAt(ctx, f, buf, j.off); err != nil {
		if errors.Is(err, storage.ErrCorrupt) { // it shrank
			return 0, fmt.Errorf("%w: %w", ErrSourceChanged, err)
		}
		return 0, err
	}
	after, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := sameIdentity(after, want); err != nil {
		return 0, err
	}
	if got := storage.HashBytes(buf); got != j.id {
		// Same identity, other content: written with its mtime set back.
		// The cache entry is wrong; without it the next snapshot reads it.
		u.cache.Forget(filepath.Join(u.live.Name(), filepath.FromSlash(e.Path)))
		return 0, fmt.Errorf("%w: content differs from the hashes cached for it (sha256 %s, recorded %s)",
			ErrSourceChanged, got, j.id)
	}
	return u.store.SaveBlob(ctx, storage.BlobData, j.id, buf)
}

// sameIdentity checks that the live file fi describes still has the
// identity the snapshot recorded.
func sameIdentity(fi fs.FileInfo, want hashcache.FileID) error {
	if got, ok := hashcache.FileIDOf(fi); !ok || got != want {
		return fmt.Errorf("%w: identity %+v, recorded %+v", ErrSourceChanged, got, want)
	}
	return nil
}

// readAt fills buf from f at off. With a bandwidth limit it reads in
// pieces of at most the limiter's burst (WaitN rejects larger requests) and
// waits for each piece before reading it.
func (u *uploader) readAt(ctx context.Context, f *os.File, buf []byte, off int64) error {
	limited := u.limiter != nil && u.limiter.Limit() != rate.Inf
	for done := 0; done < len(buf); {
		n := len(buf) - done
		if limited {
			n = min(n, u.limiter.Burst())
		}
		if err := waitLimit(ctx, u.limiter, u.throttled, n); err != nil {
			return err
		}
		m, err := f.ReadAt(buf[done:done+n], off+int64(done))
		done += m
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("snapshot copy shrank while being read: %w", storage.ErrCorrupt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
