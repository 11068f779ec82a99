package tree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/crayfish-backup/crayfish/storage"
)

// SnapshotOptions tune Snapshot.
type SnapshotOptions struct {
	// Workers is the number of goroutines hashing files; default runtime.NumCPU().
	Workers int
	// Progress, if set, receives hashing progress.
	Progress ProgressFunc
}

// SnapshotResult is what Snapshot recorded.
type SnapshotResult struct {
	// Entries lists every dir, file and symlink below the root, sorted by Path.
	Entries []storage.FileEntry
	// Warnings describe entries that were skipped (special files, entries
	// that vanished while the snapshot ran, names that are not UTF-8).
	Warnings []string
	// Stats has Files, Dirs, Symlinks and Bytes filled in.
	Stats storage.NodeStats
}

// Snapshot makes a point-in-time copy of the directory root inside dst and
// lists it. dst must not exist or be empty; it is created. Regular files are
// hard-linked into dst (copied when linking fails, e.g. across filesystems),
// directories are created and symlinks are recreated, never followed. The
// SHA-256 of each regular file (Content) and of each of its
// storage.ChunkSize pieces (Chunks) are then computed from the copy, not
// from the live file, in one read per file by opts.Workers goroutines:
// linking everything first keeps the window in which the live tree can
// change as short as possible.
//
// A root that is itself a symlink is resolved (it is configuration, not
// data); nothing below it is followed. A missing root gives an error
// matching both ErrRootMissing and fs.ErrNotExist. On error dst is removed.
func Snapshot(ctx context.Context, root, dst string, opts SnapshotOptions) (_ *SnapshotResult, err error) {
	src, err := resolveRoot(root)
	if err != nil {
		return nil, err
	}
	if err := checkOutside(src, dst); err != nil {
		return nil, err
	}
	if err := prepareDst(dst); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dst) // only links and copies: the live tree is untouched
		}
	}()

	s := &snapshotter{ctx: ctx, src: src, dst: dst, entries: []storage.FileEntry{}}
	if err := filepath.WalkDir(src, s.visit); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", root, err)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	if err := s.hashFiles(workers, opts.Progress); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", root, err)
	}
	return s.result(), nil
}

// resolveRoot checks that root is a directory and returns its real path.
func resolveRoot(root string) (string, error) {
	fi, err := os.Stat(root)
	if errors.Is(err, fs.ErrNotExist) {
		// err is a *PathError naming root and wrapping fs.ErrNotExist.
		return "", fmt.Errorf("%w: %w", ErrRootMissing, err)
	}
	if err != nil {
		return "", fmt.Errorf("snapshot root: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("snapshot root %s: not a directory", root)
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("snapshot root: %w", err)
	}
	return filepath.Abs(real)
}

// checkOutside refuses a destination inside the tree being copied: the walk
// would otherwise find its own output.
func checkOutside(src, dst string) error {
	d, err := resolveExisting(dst)
	if err != nil {
		return fmt.Errorf("snapshot destination: %w", err)
	}
	if d == src || strings.HasPrefix(d, src+string(filepath.Separator)) {
		return fmt.Errorf("snapshot destination %s is inside the root %s", dst, src)
	}
	return nil
}

// resolveExisting returns the absolute real path of p, which need not exist:
// the symlinks of its deepest existing ancestor are resolved.
func resolveExisting(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for dir := abs; ; dir = filepath.Dir(dir) {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(real, rest), nil
		}
		if filepath.Dir(dir) == dir {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// prepareDst creates dst, accepting an existing empty directory. It never
// removes anything: a non-empty dst may be someone's data.
func prepareDst(dst string) error {
	names, err := os.ReadDir(dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dst, 0o700); err != nil {
			return fmt.Errorf("snapshot destination: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("snapshot destination: %w", err)
	case len(names) > 0:
		return fmt.Errorf("snapshot destination %s: not empty", dst)
	}
	return nil
}

// snapshotter holds the state of one Snapshot call.
type snapshotter struct {
	ctx      context.Context
	src, dst string
	entries  []storage.FileEntry
	files    []int // indexes into entries of regular files, hashed after the walk
	warnings []string
}

func (s *snapshotter) warn(format string, args ...any) {
	s.warnings = append(s.warnings, fmt.Sprintf(format, args...))
}

// visit is the filepath.WalkDir callback. WalkDir lists directories with
// lstat semantics, so symlinks are reported as such and never descended.
func (s *snapshotter) visit(p string, d fs.DirEntry, walkErr error) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if p == s.src {
		return walkErr // the root itself is not an entry
	}
	rel, err := filepath.Rel(s.src, p)
	if err != nil {
		return err
	}
	rel = filepath.ToSlash(rel)
	if walkErr != nil {
		if vanished(walkErr) {
			s.warn("%s: changed or vanished during snapshot, contents skipped", rel)
			return nil
		}
		return walkErr
	}
	if !utf8.ValidString(rel) {
		s.warn("%q: name is not valid UTF-8, skipped", rel)
		return skipIfDir(d)
	}
	if d.Type().IsRegular() {
		// The directory entry already says so; addFile lstats the linked
		// copy anyway, so skip an lstat of the live file.
		return s.addFile(rel, p)
	}
	info, err := d.Info() // an lstat
	if vanished(err) {
		s.warn("%s: vanished during snapshot, skipped", rel)
		return skipIfDir(d)
	}
	if err != nil {
		return err
	}
	switch mode := info.Mode(); {
	case mode.IsDir():
		return s.addDir(rel, info)
	case mode.IsRegular():
		return s.addFile(rel, p)
	case mode&fs.ModeSymlink != 0:
		return s.addSymlink(rel, p, info)
	default:
		s.warn("%s: special file (%v) skipped", rel, mode.Type())
		return nil
	}
}

// vanished reports errors that mean the live tree changed under us: a
// database deleting or replacing files while we walk is normal.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func skipIfDir(d fs.DirEntry) error {
	if d != nil && d.IsDir() {
		return fs.SkipDir
	}
	return nil
}

func (s *snapshotter) addDir(rel string, info fs.FileInfo) error {
	// The copy is private (0700); the recorded mode is what restore applies.
	if err := os.Mkdir(filepath.Join(s.dst, filepath.FromSlash(rel)), 0o700); err != nil {
		return err
	}
	s.entries = append(s.entries, storage.FileEntry{
		Path: rel, Type: storage.TypeDir, Mode: unixMode(info.Mode()), MTime: info.ModTime(),
	})
	return nil
}

func (s *snapshotter) addSymlink(rel, p string, info fs.FileInfo) error {
	target, err := os.Readlink(p)
	if vanished(err) {
		s.warn("%s: vanished during snapshot, skipped", rel)
		return nil
	}
	if err != nil {
		return err
	}
	if !utf8.ValidString(target) {
		s.warn("%s: symlink target %q is not valid UTF-8, skipped", rel, target)
		return nil
	}
	// Recreated in the copy so dst is a faithful image; it is never followed.
	if err := os.Symlink(target, filepath.Join(s.dst, filepath.FromSlash(rel))); err != nil {
		return err
	}
	s.entries = append(s.entries, storage.FileEntry{
		Path: rel, Type: storage.TypeSymlink, Mode: unixMode(info.Mode()), MTime: info.ModTime(),
		LinkTarget: target,
	})
	return nil
}

func (s *snapshotter) addFile(rel, p string) error {
	dp := filepath.Join(s.dst, filepath.FromSlash(rel))
	info, err := s.linkOrCopy(p, dp)
	if vanished(err) {
		s.warn("%s: vanished during snapshot, skipped", rel)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if !info.Mode().IsRegular() {
		// The name was replaced by something else (maybe a FIFO, whose read
		// would block) between listing and linking.
		os.Remove(dp)
		s.warn("%s: changed type during snapshot, skipped", rel)
		return nil
	}
	s.files = append(s.files, len(s.entries))
	s.entries = append(s.entries, storage.FileEntry{
		Path: rel, Type: storage.TypeFile, Mode: unixMode(info.Mode()), MTime: info.ModTime(),
		Size: info.Size(), // replaced by the number of bytes hashed
	})
	return nil
}

// linkOrCopy puts a copy of the live file src at dst and returns the
// metadata of the inode the copy came from. A hard link costs no I/O;
// linking fails across filesystems (EXDEV), when the kernel forbids linking
// files we do not own (EPERM), on link count limits and on filesystems
// without links, and then we copy. Errors that also break the copy (the file
// vanished, no permission to read) come out of the copy.
func (s *snapshotter) linkOrCopy(src, dst string) (fs.FileInfo, error) {
	if err := os.Link(src, dst); err == nil {
		// Same inode as the live file: its metadata is the copy's metadata.
		// link(2) does not follow symlinks, so Lstat also catches a swap.
		return os.Lstat(dst)
	}
	return copyFile(s.ctx, src, dst)
}

// copyFile copies the regular file src to a new file dst and returns the
// metadata of src as read from the open descriptor, i.e. of the inode whose
// bytes were copied.
func copyFile(ctx context.Context, src, dst string) (fs.FileInfo, error) {
	in, info, err := openRegular(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = copyBuffered(out, &ctxReader{ctx: ctx, r: in})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return nil, err
	}
	return info, nil
}

// hashFiles computes the content id and chunk ids of every regular file
// from its copy in dst, in a single read of each file. The entries slice no
// longer grows, so workers can fill in distinct elements concurrently.
func (s *snapshotter) hashFiles(workers int, progressFn ProgressFunc) error {
	var total int64
	for _, i := range s.files {
		total += s.entries[i].Size
	}
	progress := newProgressTracker(progressFn, int64(len(s.files)), total)
	defer progress.finish()
	return runPool(s.ctx, workers, s.files, func(ctx context.Context, i int) error {
		e := &s.entries[i]
		f, _, err := openRegular(filepath.Join(s.dst, filepath.FromSlash(e.Path)))
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		defer f.Close()
		content, chunks, n, err := hashContent(ctx, f, progress)
		if err != nil {
			return fmt.Errorf("hash %s: %w", e.Path, err)
		}
		// Record the size actually hashed so that Size, Content and Chunks
		// agree even if the (shared) inode grew since it was listed.
		e.Content, e.Chunks, e.Size = content, chunks, n
		progress.addFile()
		return nil
	})
}

func (s *snapshotter) result() *SnapshotResult {
	slices.SortFunc(s.entries, func(a, b storage.FileEntry) int { return strings.Compare(a.Path, b.Path) })
	res := &SnapshotResult{Entries: s.entries, Warnings: s.warnings}
	for _, e := range s.entries {
		switch e.Type {
		case storage.TypeFile:
			res.Stats.Files++
			res.Stats.Bytes += e.Size
		case storage.TypeDir:
			res.Stats.Dirs++
		case storage.TypeSymlink:
			res.Stats.Symlinks++
		}
	}
	return res
}
