package tree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/storage"
)

// BlobSource is the part of a repository Restore needs. It must be safe
// for concurrent use.
type BlobSource interface {
	// LoadBlob returns the verified plaintext of blob id. Errors wrap
	// storage.ErrNotFound or storage.ErrCorrupt when those are the cause.
	LoadBlob(ctx context.Context, id storage.ObjectID) ([]byte, error)
}

// chunkLookahead is how many chunks of one file Restore has in flight
// (being fetched, or fetched and waiting to be written): it bounds the
// memory per file to chunkLookahead × ChunkSize while letting a large file
// download with several requests at once.
const chunkLookahead = 4

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Concurrency is the number of files checked and downloaded at once;
	// default 4. Each file has up to 4 chunks in flight.
	Concurrency int
	// Progress, if set, receives progress over the regular files.
	Progress ProgressFunc
	// KeepExtra leaves files that are not in entries in place. Something in
	// the way of an entry (a file where a dir must be) is still replaced.
	KeepExtra bool
	// Include and Exclude, the patterns the backup was taken with, limit
	// what Restore owns in the target: an entry they do not select (a log
	// directory left out of backups, say) is not an extra and stays.
	Include, Exclude []string
	// Select narrows Include further: a restore of part of a backup owns
	// only what both choose (pass the entries through SelectEntries).
	Select []string
	// CheckRoot, if set, sees the target's real path once it exists and
	// before anything is written below it; an error stops the restore.
	CheckRoot func(root string) error
	// Owner, if set, gives the numeric owner of each entry, applied with
	// lchown semantics before the mode (chown clears setuid and setgid
	// bits). Changing owners needs root (CAP_CHOWN): a failure fails the
	// entry. Unset, everything belongs to whoever runs the restore.
	Owner OwnerFunc
	// Scratch: the tree is read back and thrown away (a restore drill),
	// so nothing is synced. Syncing costs the drill twice: the flush,
	// then unlinking flushed files, which on ext4 is several times the
	// cost of unlinking files still in the page cache.
	Scratch bool
}

// RestoreStats count what Restore did.
type RestoreStats struct {
	Files, Dirs, Symlinks int64 // entries restored, by type
	Downloaded            int64 // non-empty files fetched from the source
	DownloadedBytes       int64
	Kept                  int64 // files already present with the right content
	KeptBytes             int64
	Removed               int64 // extra entries deleted
	// Damaged lists, sorted by path, the files left out because the
	// source reported chunks of theirs missing or corrupt (ErrDamaged).
	Damaged []DamagedFile
}

const defaultRestoreConcurrency = 4

// Restore makes target hold exactly entries (plus extras if KeepExtra),
// fetching file content from src: the chunks of a file are loaded in order,
// up to chunkLookahead (4) at once, and written sequentially. Entries are
// untrusted: all of them are validated before anything is written
// (ErrUnsafePath, ErrInvalidEntry).
// Restore never writes outside target and never follows a symlink inside
// it: ancestors are checked with Lstat and replaced by real directories when
// needed, and files are written to a temporary file in their directory,
// verified (ErrVerify: a chunk of the wrong length, or a whole file of
// another size or SHA-256 than the entry records), made durable (small
// files a batch at a time, see "Durability" in the package documentation),
// and renamed into place, so an interrupted restore or a bad download
// leaves the old file intact.
//
// Damage does not stop a restore: a file with a chunk the source reports
// missing or corrupt (storage.ErrNotFound, storage.ErrCorrupt) is left out
// (its temporary file removed, whatever was at its path left as it was),
// the other files are restored, and Restore ends with ErrDamaged and the
// damaged files, with every damaged chunk of each, in RestoreStats.Damaged.
// Any other source error (a timeout) ends the restore at once, wrapped
// with the file's path and chunk.
// Files that already have the right size and SHA-256 are kept.
//
// With opts.Owner set, entries are also given their recorded owners.
//
// Directories the backup does not list but that are needed as ancestors of
// an entry are created with mode 0700. Hard links between files are not
// recorded by Snapshot, so every file is restored as its own inode.
//
// The order is: remove extras, create directories, create symlinks, write
// files, then set directory modes and times deepest first (writing into a
// directory changes its mtime), and finally sync the directories written to.
func Restore(ctx context.Context, target string, entries []storage.FileEntry, src BlobSource, opts RestoreOptions) (RestoreStats, error) {
	if err := validateEntries(entries); err != nil {
		return RestoreStats{}, fmt.Errorf("restore: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return RestoreStats{}, fmt.Errorf("restore: %w", err)
	}
	root, err := prepareTarget(target)
	if err != nil {
		return RestoreStats{}, err
	}
	if opts.CheckRoot != nil {
		if err := opts.CheckRoot(root); err != nil {
			return RestoreStats{}, err
		}
	}
	r := newRestorer(ctx, root, entries, src)
	r.ownerFn = opts.Owner
	r.scratch = opts.Scratch
	if r.filter, err = newFilter(opts.Include, opts.Exclude, opts.Select...); err != nil {
		return RestoreStats{}, fmt.Errorf("restore: %w", err)
	}
	err = r.run(opts)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// A step may have failed because of the cancellation in a way that
		// hides it (a source turning it into its own error).
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if err != nil {
		return r.stats, fmt.Errorf("restore %s: %w", target, err)
	}
	return r.stats, nil
}

// prepareTarget creates target if needed and returns its real absolute
// path. target itself may be a symlink (it is configuration); nothing below
// it is followed.
func prepareTarget(target string) (string, error) {
	if err := os.MkdirAll(target, 0o700); err != nil {
		return "", fmt.Errorf("restore target: %w", err)
	}
	real, err := filepath.EvalSymlinks(target)
	if err != nil {
		return "", fmt.Errorf("restore target: %w", err)
	}
	return filepath.Abs(real)
}

// restorer holds the state of one Restore call.
type restorer struct {
	ctx  context.Context
	root string
	src  BlobSource
	// inflight is the budget of chunk bytes being fetched or waiting to
	// be written, shared by all files (loadChunks).
	inflight *semaphore.Weighted
	entries  []storage.FileEntry // sorted by path
	wanted   map[string]bool     // entry paths and their ancestors
	dirOK    map[string]bool     // paths verified or made to be real directories
	ownerFn  OwnerFunc           // nil: owners are left alone
	scratch  bool                // RestoreOptions.Scratch: nothing is synced
	filter   *filter             // what the target holds that is ours; nil: all
	// fresh holds the directories this restore created: nothing but our
	// own entries can be in them.
	fresh map[string]bool

	mu       sync.Mutex // guards stats, toSync and devs during the file phase
	stats    RestoreStats
	toSync   map[string]bool   // directories that received a rename
	devs     map[string]uint64 // device of each directory in toSync
	progress *progressTracker

	// Written files waiting for the batch's syncfs and their renames (see
	// "Durability" in the package documentation).
	batchMu      sync.Mutex
	pending      []pendingFile
	pendingBytes int64
	noSyncfs     bool // syncfs(2) is refused here (seccomp): fsync each file; under batchMu
}

// Batches of small restored files: written to temporary files without a
// sync, then made durable together by one syncfs(2) and renamed into place.
const (
	batchFiles = 1000     // files per batch
	batchBytes = 64 << 20 // bytes per batch, bounding what one syncfs flushes
	// syncAloneSize: files at least this large are fsynced and renamed
	// one by one; the fsync costs little next to their writing.
	syncAloneSize = 8 << 20
)

// syncFSFunc is syncFS; tests replace it.
var syncFSFunc = syncFS

// testBeforeRenames, if set by a test, sees each batch after its sync and
// before its renames.
var testBeforeRenames func([]pendingFile)

// pendingFile is a restored file in a temporary file, not yet synced and
// renamed.
type pendingFile struct {
	tmp, p string
	e      *storage.FileEntry
}

func newRestorer(ctx context.Context, root string, entries []storage.FileEntry, src BlobSource) *restorer {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b storage.FileEntry) int { return strings.Compare(a.Path, b.Path) })
	wanted := make(map[string]bool, len(entries))
	for _, e := range sorted {
		wanted[e.Path] = true
		for _, d := range parentDirs(e.Path) {
			wanted[d] = true
		}
	}
	return &restorer{ctx: ctx, root: root, src: src, entries: sorted, wanted: wanted,
		inflight: semaphore.NewWeighted(inflightBytes), dirOK: make(map[string]bool), fresh: make(map[string]bool), toSync: make(map[string]bool),
		devs: make(map[string]uint64)}
}

func (r *restorer) run(opts RestoreOptions) error {
	if !opts.KeepExtra {
		if err := r.removeExtras(); err != nil {
			return err
		}
	}
	if err := r.makeDirs(); err != nil {
		return err
	}
	if opts.KeepExtra {
		if err := r.removeOwnTemps(); err != nil {
			return err
		}
	}
	if err := r.makeSymlinks(); err != nil {
		return err
	}
	concurrency := opts.Concurrency
	if concurrency <= 0 {
		concurrency = defaultRestoreConcurrency
	}
	if err := r.writeFiles(concurrency, opts.Progress); err != nil {
		return err
	}
	if err := r.setDirMetadata(); err != nil {
		return err
	}
	if !r.scratch {
		if err := r.syncDirs(); err != nil {
			return err
		}
	}
	return r.damageResult()
}

// abs maps a validated entry path to its place under the target.
func (r *restorer) abs(rel string) string {
	return filepath.Join(r.root, filepath.FromSlash(rel))
}

// makeDirs makes every listed directory, and every ancestor of a listed
// entry, a real directory.
func (r *restorer) makeDirs() error {
	for _, e := range r.entries {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		dir := e.Path
		if e.Type != storage.TypeDir {
			dir = path.Dir(e.Path)
		}
		if dir == "." {
			continue
		}
		if err := r.ensureDir(dir); err != nil {
			return err
		}
		if e.Type == storage.TypeDir {
			r.stats.Dirs++
		}
	}
	return nil
}

// ensureDir makes rel and each of its ancestors a real directory, outermost
// first, so that every later Lstat, create or rename below rel goes through
// directories only and cannot be redirected by a symlink.
func (r *restorer) ensureDir(rel string) error {
	for _, d := range append(parentDirs(rel), rel) {
		if r.dirOK[d] {
			continue
		}
		created, err := r.ensureOneDir(r.abs(d))
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		r.dirOK[d] = true
		r.fresh[d] = created
	}
	return nil
}

// ensureOneDir makes p a real directory we can write into; its parent is
// already one. created says it made a new, empty directory.
func (r *restorer) ensureOneDir(p string) (created bool, err error) {
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Private until setDirMetadata applies the recorded mode.
		return true, os.Mkdir(p, 0o700)
	case err != nil:
		return false, err
	case fi.IsDir():
		// We must be able to create files in it; the recorded mode is
		// applied at the end, after the files.
		if m := fi.Mode(); m.Perm()&0o700 != 0o700 {
			return false, os.Chmod(p, m&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)|0o700)
		}
		return false, nil
	default:
		// A file or symlink where the backup has a directory: it cannot be
		// an entry (validation rejects entries below files and symlinks),
		// so it goes. os.Remove removes a symlink itself, never its target.
		if err := os.Remove(p); err != nil {
			return false, err
		}
		return true, os.Mkdir(p, 0o700)
	}
}

// makeSymlinks creates every symlink entry, replacing whatever is there.
// Link targets are data: they may point anywhere, and are never followed.
func (r *restorer) makeSymlinks() error {
	for _, e := range r.entries {
		if e.Type != storage.TypeSymlink {
			continue
		}
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if err := r.makeSymlink(e); err != nil {
			return fmt.Errorf("symlink %s: %w", e.Path, err)
		}
		r.stats.Symlinks++
	}
	return nil
}

func (r *restorer) makeSymlink(e storage.FileEntry) error {
	p := r.abs(e.Path)
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if t, err := os.Readlink(p); err == nil && t == e.LinkTarget {
			return r.lchown(p, &e) // lchown never follows the link
		}
	}
	// Create under a temporary name and rename over p: the replacement is
	// atomic and works whatever non-directory is at p.
	tmp, err := tempSymlink(e.LinkTarget, p)
	if err != nil {
		return err
	}
	if err := r.lchown(tmp, &e); err != nil {
		os.Remove(tmp)
		return err
	}
	return r.replace(tmp, p)
}

// lchown gives p the owner opts.Owner assigns to e, if any, without
// following a symlink at p.
func (r *restorer) lchown(p string, e *storage.FileEntry) error {
	if r.ownerFn == nil {
		return nil
	}
	o, ok := r.ownerFn(e)
	if !ok {
		return nil
	}
	return os.Lchown(p, int(o.UID), int(o.GID))
}

// chown is lchown through an open file.
func (r *restorer) chown(f *os.File, e *storage.FileEntry) error {
	if r.ownerFn == nil {
		return nil
	}
	o, ok := r.ownerFn(e)
	if !ok {
		return nil
	}
	return f.Chown(int(o.UID), int(o.GID))
}

// tempSymlink creates a symlink to target next to p under a fresh
// temporary name and returns that name.
func tempSymlink(target, p string) (string, error) {
	dir, base := filepath.Split(p)
	prefix := strings.TrimSuffix(tempPattern(base), "*")
	for range 100 {
		tmp := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64(), 36))
		err := os.Symlink(target, tmp)
		if !errors.Is(err, fs.ErrExist) {
			return tmp, err
		}
	}
	return "", fmt.Errorf("no free temporary name next to %s", p)
}

// replace renames tmp over p, removing a directory that is in the way
// (rename cannot replace a directory with a non-directory: it fails, and
// is tried again once the directory is gone). Nothing under such a
// directory is an entry, since validation rejects entries below a file or
// symlink.
func (r *restorer) replace(tmp, p string) error {
	err := rename(tmp, p)
	if err != nil {
		if fi, lerr := os.Lstat(p); lerr == nil && fi.IsDir() {
			if err = os.RemoveAll(p); err == nil {
				err = rename(tmp, p)
			}
		}
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	r.mu.Lock()
	r.toSync[filepath.Dir(p)] = true
	r.mu.Unlock()
	return nil
}

// rename is rename(2). os.Rename lstats newpath first to refuse a
// directory there, which replace handles itself: a syscall per file saved.
func rename(oldpath, newpath string) error {
	for {
		err := syscall.Rename(oldpath, newpath)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
		}
		return nil
	}
}

// writeFiles restores every regular file with a pool of workers.
func (r *restorer) writeFiles(concurrency int, progressFn ProgressFunc) error {
	files, total := []*storage.FileEntry(nil), int64(0)
	for i := range r.entries {
		if e := &r.entries[i]; e.Type == storage.TypeFile {
			files = append(files, e)
			total += e.Size
		}
	}
	r.progress = newProgressTracker(progressFn, int64(len(files)), total)
	defer r.progress.finish()
	err := pool.Each(r.ctx, concurrency, slices.Values(interleave(files, concurrency)), r.restoreFile)
	if err == nil {
		err = r.commit(r.takeBatch(true))
	}
	if err != nil {
		// Written but neither synced nor renamed: not ours to keep.
		for _, f := range r.takeBatch(true) {
			os.Remove(f.tmp)
		}
	}
	return err
}

// interleave returns items reordered so that consecutive ones come from
// ways contiguous segments in turn: items[0], items[s], items[2s]...,
// items[1], items[s+1]... (s = len/ways, rounded up). Workers taking files
// in that order mostly write into different directories, instead of all
// queueing on the lock of the same one, while each segment is still
// fetched in path order, the order small files were packed in.
func interleave[T any](items []T, ways int) []T {
	if ways <= 1 || len(items) <= ways {
		return items
	}
	seg := (len(items) + ways - 1) / ways
	out := make([]T, 0, len(items))
	for k := range seg {
		for w := range ways {
			if i := w*seg + k; i < len(items) {
				out = append(out, items[i])
			}
		}
	}
	return out
}

// restoreFile keeps or writes one file. Its errors name the file; a
// batch's errors name theirs.
func (r *restorer) restoreFile(ctx context.Context, e *storage.FileEntry) error {
	p := r.abs(e.Path)
	// In a directory this restore created there is nothing to keep.
	if !r.fresh[path.Dir(e.Path)] {
		kept, err := r.keepExisting(ctx, p, *e)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if kept {
			r.count(func(s *RestoreStats) { s.Files++; s.Kept++; s.KeptBytes += e.Size })
			r.progress.add(1, e.Size)
			return nil
		}
	}
	tmp, err := r.writeTemp(ctx, p, e)
	var dmg *damageError
	if errors.As(err, &dmg) {
		// writeTemp removed the temporary file; p is as it was.
		r.addDamaged(dmg.file)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	f := pendingFile{tmp: tmp, p: p, e: e}
	if !batchedSync || e.Size >= syncAloneSize {
		// writeTemp synced it.
		if err := r.place(f); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		return nil
	}
	r.batchMu.Lock()
	r.pending = append(r.pending, f)
	r.pendingBytes += e.Size
	r.batchMu.Unlock()
	return r.commit(r.takeBatch(false))
}

// takeBatch returns the pending files and starts a new batch if the batch
// is full, or if all is set.
func (r *restorer) takeBatch(all bool) []pendingFile {
	r.batchMu.Lock()
	defer r.batchMu.Unlock()
	if !all && len(r.pending) < batchFiles && r.pendingBytes < batchBytes {
		return nil
	}
	b := r.pending
	r.pending, r.pendingBytes = nil, 0
	return b
}

// commit makes a batch of written files durable, with one syncfs(2) per
// filesystem they are on, and only then renames them into place. On error
// the temporary files not renamed yet are removed.
func (r *restorer) commit(files []pendingFile) (err error) {
	if len(files) == 0 {
		return nil
	}
	done := 0
	defer func() {
		if err != nil {
			for _, f := range files[done:] {
				os.Remove(f.tmp)
			}
		}
	}()
	if !r.scratch {
		if err := r.syncBatch(files); err != nil {
			return fmt.Errorf("sync %d restored files: %w", len(files), err)
		}
	}
	if testBeforeRenames != nil {
		testBeforeRenames(files)
	}
	for _, f := range files {
		if err := r.place(f); err != nil {
			done++ // place removed it
			return fmt.Errorf("%s: %w", f.e.Path, err)
		}
		done++
	}
	return nil
}

// syncBatch makes the content of the batch's files durable: syncfs once
// per filesystem, or, where syncfs(2) is refused, fsync per file.
func (r *restorer) syncBatch(files []pendingFile) error {
	r.batchMu.Lock()
	fallback := r.noSyncfs
	r.batchMu.Unlock()
	if !fallback {
		dirs := map[uint64]string{}
		for _, f := range files {
			dir := filepath.Dir(f.p)
			dev, err := r.devOf(dir)
			if err != nil {
				return err
			}
			dirs[dev] = dir
		}
		for _, dir := range dirs {
			err := syncFSFunc(dir)
			if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EPERM) {
				r.batchMu.Lock()
				r.noSyncfs = true
				r.batchMu.Unlock()
				fallback = true
				break
			}
			if err != nil {
				return err
			}
		}
	}
	if fallback {
		for _, f := range files {
			if err := fsyncPath(f.tmp); err != nil {
				return err
			}
		}
	}
	return nil
}

// place renames a written, durable temporary file into place and counts it.
func (r *restorer) place(f pendingFile) error {
	if err := r.replace(f.tmp, f.p); err != nil {
		return err
	}
	r.count(func(s *RestoreStats) {
		s.Files++
		if f.e.Size > 0 {
			s.Downloaded++
			s.DownloadedBytes += f.e.Size
		}
	})
	r.progress.addFile()
	return nil
}

func (r *restorer) count(f func(*RestoreStats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.stats)
}

// keepExisting reports whether p already is a regular file with the
// entry's content, and if so fixes its owner, mode and mtime. Anything else
// (no file, another type, other size, other hash, unreadable) means "write
// it".
func (r *restorer) keepExisting(ctx context.Context, p string, e storage.FileEntry) (bool, error) {
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != e.Size {
		return false, nil
	}
	f, _, err := openRegular(p)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	if e.Size > 0 {
		id, n, err := hashReader(ctx, f, nil)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err != nil || n != e.Size || id != e.Content {
			return false, nil
		}
	}
	// Chown and chmod through the descriptor we verified, not the path.
	if err := r.chown(f, &e); err != nil {
		return false, err
	}
	if err := f.Chmod(fileMode(e.Mode)); err != nil {
		return false, err
	}
	if err := os.Chtimes(p, time.Time{}, e.MTime); err != nil {
		return false, err
	}
	return true, nil
}

// writeTemp downloads the entry into a temporary file next to p, verifies
// it, gives it its owner, mode and mtime and returns its name. A file that
// is not batched (see restoreFile) is also synced. On any failure the
// temporary file is removed and p is left as it was.
func (r *restorer) writeTemp(ctx context.Context, p string, e *storage.FileEntry) (_ string, err error) {
	dir, base := filepath.Split(p)
	f, err := os.CreateTemp(dir, tempPattern(base))
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if e.Size > 0 {
		if err := r.download(ctx, f, *e); err != nil {
			return "", err
		}
	}
	// Owner, then mode, after the content: writing and chown clear
	// setuid/setgid. Mtime before the sync so it is durable too; rename
	// does not change it.
	if err := r.chown(f, e); err != nil {
		return "", err
	}
	if err := f.Chmod(fileMode(e.Mode)); err != nil {
		return "", err
	}
	if err := os.Chtimes(tmp, time.Time{}, e.MTime); err != nil {
		return "", err
	}
	if (!batchedSync || e.Size >= syncAloneSize) && !r.scratch {
		if err := f.Sync(); err != nil {
			return "", err
		}
	}
	return tmp, f.Close()
}
