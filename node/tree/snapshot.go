package tree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	"github.com/crayfish-backup/crayfish/internal/pool"
	"github.com/crayfish-backup/crayfish/node/hashcache"
	"github.com/crayfish-backup/crayfish/storage"
)

// SnapshotOptions tune Snapshot.
type SnapshotOptions struct {
	// Workers is the number of goroutines hashing files; default runtime.NumCPU().
	Workers int
	// Progress, if set, receives hashing progress.
	Progress ProgressFunc
	// Cache, if set, supplies the hashes of files whose identity (inode,
	// size, mtime...) has not changed since they were last hashed, so they
	// are not read at all, and learns the hashes of the others. Snapshot
	// flushes it and, after a successful snapshot, prunes the entries of
	// files below root that it selected but did not find. See "Hash cache"
	// in the package documentation.
	Cache *hashcache.Cache
	// Include, if not empty, limits the snapshot to the entries that match
	// one of these patterns or lie below a directory that does, plus the
	// directories leading to them. Directories that cannot lead to a match
	// are not walked. See ValidatePatterns for the syntax.
	Include []string
	// Exclude leaves out the entries that match one of these patterns, and
	// everything below them: an excluded directory is not walked. Exclude
	// wins over Include.
	Exclude []string
	// InPlace records and hashes the files of root where they are, without
	// linking or copying anything: for trees nothing writes to any more,
	// such as the output of `nodetool snapshot`. dst must then be "", and
	// Upload must read from SnapshotResult.Dir, which is root.
	InPlace bool
	// RecordOwners fills SnapshotResult.Owners (for a restore as root).
	RecordOwners bool
	// Save, if set, makes the snapshot save every chunk it reads into
	// Save.Store as it reads it, so Upload finds it present and nothing is
	// read twice. Files are then not linked either (unless Link is set):
	// they are read live, with the checks of "Consistent reads", and
	// listed for Upload like the files the cache knows. See "Read once"
	// in the package documentation.
	Save *SaveOptions
	// Link, with Save and without InPlace, still hard-links each file into
	// dst before reading it, so a file deleted or replaced while the
	// snapshot runs is read as it was when linked. Without Save, files are
	// always linked.
	Link bool
}

// SnapshotResult is what Snapshot recorded.
type SnapshotResult struct {
	// Dir is the directory Upload must read the files from: the absolute
	// dst, or the resolved root of an in-place snapshot.
	Dir string
	// Entries lists every selected dir, file and symlink below the root,
	// sorted by Path.
	Entries []storage.FileEntry
	// Owners[i] is the owner of Entries[i] when SnapshotOptions.RecordOwners
	// is set (nil otherwise).
	Owners []Owner
	// Warnings describe entries that were skipped (special files, entries
	// that vanished while the snapshot ran, names that are not UTF-8),
	// files that kept changing while they were read, and hash cache
	// trouble.
	Warnings []string
	// Stats has Files, Dirs, Symlinks and Bytes filled in.
	Stats storage.NodeStats
	// Hash says how the files' hashes were obtained.
	Hash HashStats
	// Saved counts the distinct chunks read with SnapshotOptions.Save:
	// saved (Uploaded) or found in the store (AlreadyPresent).
	Saved UploadStats
}

// HashStats count how Snapshot obtained the hashes of regular files. A
// linked or in-place file is either read (FilesRead) or found in the cache
// (CacheHits); a file that had to be copied is always read, and may also be
// a cache hit (copied, not hashed).
type HashStats struct {
	FilesRead     int64 // files read, to hash or copy them
	BytesRead     int64 // bytes read, re-reads included
	Rereads       int64 // extra reads of files that changed, or had just been changed, while read
	CacheHits     int64 // files whose hashes came from the cache
	CacheHitBytes int64 // their size
	// NotLinked counts the cache hits that were not linked into the
	// snapshot directory at all (see "Unchanged files are not linked").
	NotLinked int64
}

// Snapshot makes a point-in-time copy of the directory root inside dst and
// lists it. dst must not exist or be empty; it is created. Regular files are
// hard-linked into dst (copied when linking fails, e.g. across filesystems;
// with opts.Cache, files it knows unchanged are not linked at all, see
// "Unchanged files are not linked" in the package documentation) by
// opts.Workers goroutines once the walk has listed them, directories are
// created and symlinks are recreated, never followed. The
// SHA-256 of each regular file (Content) and of each of its
// storage.ChunkSize pieces (Chunks) are then computed from the copy, not
// from the live file, in one read per file by opts.Workers goroutines:
// linking everything first keeps the window in which the live tree can
// change as short as possible. Files are copied by those goroutines too,
// and hashed as they are copied. Files the cache knows unchanged are not
// read at all. A file that changes while it is read is read again (see
// "Consistent reads" in the package documentation).
//
// With opts.InPlace nothing is linked or copied: dst must be "", and the
// files are hashed where they are.
//
// A root that is itself a symlink is resolved (it is configuration, not
// data); nothing below it is followed. A missing root gives an error
// matching both ErrRootMissing and fs.ErrNotExist. A malformed pattern
// gives ErrBadPattern. On error dst is removed.
func Snapshot(ctx context.Context, root, dst string, opts SnapshotOptions) (_ *SnapshotResult, err error) {
	filter, err := newFilter(opts.Include, opts.Exclude)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if opts.InPlace && dst != "" {
		return nil, fmt.Errorf("snapshot %s: an in-place snapshot takes no destination (got %s)", root, dst)
	}
	src, err := resolveRoot(root)
	if err != nil {
		return nil, err
	}
	s := &snapshotter{ctx: ctx, src: src, opts: opts, filter: filter, cache: opts.Cache, entries: []storage.FileEntry{}}
	if opts.Save != nil && opts.Save.Store == nil {
		return nil, fmt.Errorf("snapshot %s: save options without a store", root)
	}
	s.readLive = opts.Save != nil && !opts.InPlace && !opts.Link
	if s.live, err = os.OpenRoot(src); err != nil {
		return nil, fmt.Errorf("snapshot root: %w", err)
	}
	defer s.live.Close()
	if !opts.InPlace {
		if s.dst, err = filepath.Abs(dst); err != nil {
			return nil, fmt.Errorf("snapshot destination: %w", err)
		}
		if err := checkOutside(src, s.dst); err != nil {
			return nil, err
		}
		if err := prepareDst(s.dst); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				os.RemoveAll(s.dst) // only links and copies: the live tree is untouched
			}
		}()
		s.openUnlinkedList()
		if s.unlinkedList != nil {
			defer s.unlinkedList.Close()
		}
	}

	if err := filepath.WalkDir(src, s.visit); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", root, err)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	if err := s.placeFiles(workers); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", root, err)
	}
	if err := s.hashFiles(workers, opts.Progress); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", root, err)
	}
	res := s.result()
	if err := s.finishUnlinkedList(); err != nil {
		return nil, fmt.Errorf("snapshot %s: list of unlinked files: %w", root, err)
	}
	s.maintainCache(res)
	res.Warnings = s.warnings
	return res, nil
}

// openUnlinkedList creates the list of the files the cache spares from
// linking, and of those read live. Without a cache and without reading
// live, or where the name cannot be created (a filesystem that insists on
// UTF-8 names), every file is linked.
func (s *snapshotter) openUnlinkedList() {
	if s.cache == nil && !s.readLive {
		return
	}
	f, err := os.OpenFile(filepath.Join(s.dst, unlinkedListName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		s.unlinkedList = f
	} else {
		s.readLive = false
	}
}

// finishUnlinkedList writes the list of files not linked, or removes it
// when every file was linked.
func (s *snapshotter) finishUnlinkedList() error {
	if s.unlinkedList == nil {
		return nil
	}
	var files []unlinkedFile
	for _, j := range s.files {
		if (j.hit || j.live) && !s.dropped[j.entry] {
			files = append(files, unlinkedFile{rel: j.rel, id: j.id})
		}
	}
	if len(files) == 0 {
		return os.Remove(s.unlinkedList.Name())
	}
	return writeUnlinkedList(s.unlinkedList, s.src, files)
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

// testPlaceHook, if set by a test, is called between the lstat of a live
// file that the cache does not know and its link.
var testPlaceHook func(rel string)

// testWalkHook, if set by a test, sees every path the walk visits.
var testWalkHook func(rel string)

// snapshotter holds the state of one Snapshot call.
type snapshotter struct {
	ctx    context.Context
	src    string   // resolved root
	dst    string   // absolute destination; "" in place
	live   *os.Root // src, for reading live files (in place, or to copy them)
	opts   SnapshotOptions
	filter *filter
	cache  *hashcache.Cache

	// Parallel slices, one element per entry. They stop growing when the
	// walk ends; then each hashing worker writes only the elements of the
	// files it was given.
	entries []storage.FileEntry
	owners  []Owner
	dropped []bool // the file vanished or changed type before it could be read

	files   []fileJob    // regular files, hashed after the walk
	pending []pendingDir // directories recorded only if something below them is

	// unlinkedList, when set, is the open list of files not linked
	// because the cache knew them or they were read live; nil: every file
	// is linked.
	unlinkedList *os.File
	// readLive: files are read (and saved) from the live tree, not linked.
	readLive bool
	saved    saveCounter

	mu       sync.Mutex // guards warnings once the workers run
	warnings []string

	filesRead, bytesRead, rereads, hits, hitBytes, notLinked atomic.Int64
}

// fileJob is a regular file to hash.
type fileJob struct {
	entry int    // index into entries
	rel   string // slash path below the root
	// How the file gets into the snapshot: linked into dst (the default),
	// read where it is (InPlace), copied into dst by the worker that
	// hashes it (linking failed), or not at all because the cache knew it
	// (hit: its entry is complete, and Upload reads it from the live tree,
	// if at all, only while its identity is still id), or read live
	// (live: saved as read; Upload reads it like a hit).
	linked, copy, hit, live bool
	// place: not placed yet (placeFiles links it or finds it in the cache).
	place bool
	// looked: the cache was consulted already, and missed.
	looked bool
	id     hashcache.FileID // identity from the walk's lstat (of the link, for a linked file)
	idOK   bool
}

// pendingDir is a directory that is not itself included but may lead to
// included entries. It is recorded (and created in dst) by the first
// included entry found below it, so directories that lead nowhere leave
// no trace.
type pendingDir struct {
	e        storage.FileEntry
	owner    Owner
	recorded bool
}

func (s *snapshotter) warn(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	if testWalkHook != nil {
		testWalkHook(rel)
	}
	if walkErr != nil {
		if vanished(walkErr) {
			s.warn("%s: changed or vanished during snapshot, contents skipped", rel)
			return nil
		}
		return walkErr
	}
	// Selection first, so that unwanted names cause no warnings.
	if s.filter.excluded(rel) {
		return skipIfDir(d)
	}
	included := s.filter.included(rel)
	if !included && (!d.IsDir() || !s.filter.mayContain(rel)) {
		return skipIfDir(d)
	}
	if !utf8.ValidString(rel) {
		s.warn("%q: name is not valid UTF-8, skipped", rel)
		return skipIfDir(d)
	}
	if d.Type().IsRegular() && !s.opts.InPlace {
		// The directory entry already says so; placeFile lstats it.
		return s.addFile(rel, nil)
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
		return s.addDir(rel, info, included)
	case !included:
		return nil // a directory when listed, something else now
	case mode.IsRegular():
		return s.addFile(rel, info)
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

// appendEntry appends an entry and its owner and returns its index.
func (s *snapshotter) appendEntry(e storage.FileEntry, o Owner) int {
	s.entries = append(s.entries, e)
	s.dropped = append(s.dropped, false)
	if s.opts.RecordOwners {
		s.owners = append(s.owners, o)
	}
	return len(s.entries) - 1
}

func ownerOrZero(fi fs.FileInfo) Owner {
	o, _ := ownerOf(fi)
	return o
}

// trimPending forgets the pending directories that are not ancestors of
// rel: the walk is depth first, so it is done with them.
func (s *snapshotter) trimPending(rel string) {
	for n := len(s.pending); n > 0 && !strings.HasPrefix(rel, s.pending[n-1].e.Path+"/"); n-- {
		s.pending = s.pending[:n-1]
	}
}

// recordPending records (and creates in dst) the pending ancestors of rel
// not recorded yet, outermost first.
func (s *snapshotter) recordPending(rel string) error {
	s.trimPending(rel)
	for i := range s.pending {
		pd := &s.pending[i]
		if pd.recorded {
			continue
		}
		if err := s.mkdir(pd.e.Path); err != nil {
			return err
		}
		s.appendEntry(pd.e, pd.owner)
		pd.recorded = true
	}
	return nil
}

func (s *snapshotter) mkdir(rel string) error {
	if s.dst == "" {
		return nil
	}
	// The copy is private (0700); the recorded mode is what restore applies.
	return os.Mkdir(s.dstPath(rel), 0o700)
}

func (s *snapshotter) dstPath(rel string) string {
	return filepath.Join(s.dst, filepath.FromSlash(rel))
}

func (s *snapshotter) addDir(rel string, info fs.FileInfo, included bool) error {
	e := storage.FileEntry{Path: rel, Type: storage.TypeDir, Mode: unixMode(info.Mode()), MTime: info.ModTime()}
	if !included {
		s.trimPending(rel)
		s.pending = append(s.pending, pendingDir{e: e, owner: ownerOrZero(info)})
		return nil
	}
	if err := s.recordPending(rel); err != nil {
		return err
	}
	if err := s.mkdir(rel); err != nil {
		return err
	}
	s.appendEntry(e, ownerOrZero(info))
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
	if err := s.recordPending(rel); err != nil {
		return err
	}
	if s.dst != "" {
		// Recreated in the copy so dst is a faithful image; it is never followed.
		if err := os.Symlink(target, s.dstPath(rel)); err != nil {
			return err
		}
	}
	s.appendEntry(storage.FileEntry{
		Path: rel, Type: storage.TypeSymlink, Mode: unixMode(info.Mode()), MTime: info.ModTime(),
		LinkTarget: target,
	}, ownerOrZero(info))
	return nil
}

// addFile records a regular file. In place, info is the walk's lstat of
// it, and that is all. Otherwise the walk only reserves its entry: after
// the walk, placeFiles looks it up in the cache or links it into dst, by
// several goroutines at once.
func (s *snapshotter) addFile(rel string, info fs.FileInfo) error {
	if !s.opts.InPlace {
		if err := s.recordPending(rel); err != nil {
			return err
		}
		entry := s.appendEntry(storage.FileEntry{Path: rel, Type: storage.TypeFile}, Owner{})
		s.files = append(s.files, fileJob{rel: rel, entry: entry, place: true})
		return nil
	}
	job := fileJob{rel: rel}
	job.id, job.idOK = hashcache.FileIDOf(info)
	job.entry = s.appendEntry(storage.FileEntry{}, ownerOrZero(info))
	s.setEntry(&job, info)
	s.files = append(s.files, job)
	return nil
}

// setEntry fills the entry of a regular file from its lstat. Mode, MTime
// and Size are replaced by those of the inode as it was hashed, if it is
// read.
func (s *snapshotter) setEntry(j *fileJob, info fs.FileInfo) {
	e := &s.entries[j.entry]
	e.Path, e.Type = j.rel, storage.TypeFile
	e.Mode, e.MTime, e.Size = unixMode(info.Mode()), info.ModTime(), info.Size()
	if s.opts.RecordOwners {
		s.owners[j.entry] = ownerOrZero(info)
	}
}

// drop leaves a file out of the snapshot, with a warning.
func (s *snapshotter) drop(j *fileJob, why string) {
	s.dropped[j.entry] = true
	s.warn("%s: %s during snapshot, skipped", j.rel, why)
}

// placeFiles gets every regular file the walk found into the snapshot:
// known to the cache (not linked), linked into dst, or marked for copying.
// The entries slice no longer grows, so workers fill in distinct elements.
func (s *snapshotter) placeFiles(workers int) error {
	var todo []int
	for i := range s.files {
		if s.files[i].place {
			todo = append(todo, i)
		}
	}
	dirs := newDirHandles(s.live, nil)
	defer dirs.closeAll()
	return pool.Each(s.ctx, workers, s.readJobs(todo, dirs), func(_ context.Context, rj readJob) error {
		defer rj.dir.release()
		return s.placeFile(&s.files[rj.file], rj.dir)
	})
}

// placeFile gets one file into the snapshot. With the list of unlinked
// files open, the live file is lstatted and looked up in the cache first
// (addKnownFile); a file the cache does not know is linked. Linking fails
// across filesystems (EXDEV), when the kernel forbids linking files we do
// not own (EPERM), on link count limits and on filesystems without links;
// the file is then copied by a hashing worker. A linked file is lstatted
// through its link (the live inode; link(2) does not follow symlinks, so
// the lstat also catches a swap) unless the live lstat was taken already:
// the reader then checks the type of what it opens.
func (s *snapshotter) placeFile(j *fileJob, dir *dirHandle) error {
	p := s.cacheKey(j.rel) // the live path
	var info fs.FileInfo
	if s.unlinkedList != nil {
		var err error
		if err = dir.err; err == nil {
			info, err = lstatAt(dir.f, path.Base(j.rel), p)
		}
		switch {
		case vanished(err):
			s.drop(j, "vanished")
			return nil
		case err != nil:
			return fmt.Errorf("%s: %w", j.rel, err)
		case !info.Mode().IsRegular():
			s.drop(j, "changed type")
			return nil
		}
		if s.addKnownFile(j, info) {
			return nil
		}
		if testPlaceHook != nil {
			testPlaceHook(j.rel)
		}
		if s.readLive && s.opts.Save.saves(info.Size()) {
			j.live = true
			j.id, j.idOK = hashcache.FileIDOf(info)
			s.setEntry(j, info)
			return nil
		}
	}
	dp := s.dstPath(j.rel)
	err := os.Link(p, dp)
	switch {
	case err == nil:
		j.linked = true
		if info != nil {
			break
		}
		if info, err = os.Lstat(dp); err != nil {
			return fmt.Errorf("%s: %w", j.rel, err)
		}
		if !info.Mode().IsRegular() {
			// The name was replaced by something else (maybe a FIFO,
			// whose read would block) between listing and linking.
			os.Remove(dp)
			s.drop(j, "changed type")
			return nil
		}
	case vanished(err):
		s.drop(j, "vanished")
		return nil
	default:
		j.copy = true
		if info, err = os.Lstat(p); vanished(err) {
			s.drop(j, "vanished")
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %w", j.rel, err)
		}
		if !info.Mode().IsRegular() {
			s.drop(j, "changed type")
			return nil
		}
	}
	j.id, j.idOK = hashcache.FileIDOf(info)
	s.setEntry(j, info)
	return nil
}

// addKnownFile records, without linking it, a file whose identity (from
// the lstat of the live file, info) the cache knows, and reports whether
// it did. Its hashes come from the cache, and its full identity goes into
// the list of unlinked files for Upload. On a miss j notes that the cache
// was consulted. Unless the file is read live, the identity is looked up
// without its ctime, as for a linked file (see cacheID): the cache learnt
// it from a link.
func (s *snapshotter) addKnownFile(j *fileJob, info fs.FileInfo) bool {
	id, ok := hashcache.FileIDOf(info)
	if !ok {
		return false
	}
	j.looked = true
	key := id
	if !s.readLive || !s.opts.Save.saves(info.Size()) {
		key = id.WithoutCTime() // the cache learnt it from a link
	}
	content, chunks, hit := s.cache.Lookup(s.cacheKey(j.rel), key)
	if !hit {
		return false
	}
	j.hit, j.id, j.idOK = true, id, true
	s.setEntry(j, info)
	e := &s.entries[j.entry]
	e.Content, e.Chunks = content, chunks
	s.hits.Add(1)
	s.hitBytes.Add(info.Size())
	s.notLinked.Add(1)
	return true
}

// cacheKey is the key of a file in the hash cache: its absolute live path,
// so that several roots can share one cache.
func (s *snapshotter) cacheKey(rel string) string {
	return filepath.Join(s.src, filepath.FromSlash(rel))
}

// cacheID is the identity under which a file's hashes are cached. A linked
// file is compared without its ctime: link(2) and unlink(2) change the
// ctime of the inode (its link count changes), so every snapshot and every
// release of one would make its ctime new, and the cache would never hit.
// See "Hash cache" in the package documentation.
func cacheID(j fileJob, id hashcache.FileID) hashcache.FileID {
	if j.linked {
		return id.WithoutCTime()
	}
	return id
}

func (s *snapshotter) result() *SnapshotResult {
	order := make([]int, 0, len(s.entries))
	for i := range s.entries {
		if !s.dropped[i] {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(s.entries[a].Path, s.entries[b].Path) })
	res := &SnapshotResult{Dir: s.dst, Entries: make([]storage.FileEntry, len(order)), Hash: HashStats{
		FilesRead: s.filesRead.Load(), BytesRead: s.bytesRead.Load(), Rereads: s.rereads.Load(),
		CacheHits: s.hits.Load(), CacheHitBytes: s.hitBytes.Load(), NotLinked: s.notLinked.Load(),
	}, Saved: s.saved.stats()}
	if res.Dir == "" {
		res.Dir = s.src
	}
	if s.opts.RecordOwners {
		res.Owners = make([]Owner, len(order))
	}
	for k, i := range order {
		e := s.entries[i]
		res.Entries[k] = e
		if res.Owners != nil {
			res.Owners[k] = s.owners[i]
		}
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

// maintainCache flushes the cache and drops the entries below the root
// that this snapshot was responsible for (it would have recorded them) but
// did not see: files deleted since, or skipped. Entries outside the
// selection are left to the snapshots that select them. Failures are
// warnings: the cache is an optimisation.
func (s *snapshotter) maintainCache(res *SnapshotResult) {
	if s.cache == nil {
		return
	}
	seen := make(map[string]bool, res.Stats.Files)
	for _, e := range res.Entries {
		if e.Type == storage.TypeFile {
			seen[e.Path] = true
		}
	}
	prefix := s.src
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	_, err := s.cache.Prune(prefix, func(key string) bool {
		rel := filepath.ToSlash(key[len(prefix):])
		return seen[rel] || !s.filter.selects(rel)
	})
	if err != nil {
		s.warn("hash cache: %v", err)
	}
}
