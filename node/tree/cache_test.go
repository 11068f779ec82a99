package tree

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/hashcache"
	"github.com/crayfish-backup/crayfish/storage"
)

func openCache(t testing.TB) *hashcache.Cache {
	t.Helper()
	c, warn, err := hashcache.Open(filepath.Join(t.TempDir(), "hashcache.db"))
	if err != nil {
		t.Fatal(err)
	}
	if warn != nil {
		t.Fatal(warn)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// cacheTree writes a tree of regular files (one of several chunks, one
// empty) with mtimes in the past, and returns root and the contents.
func cacheTree(t testing.TB) (string, map[string][]byte) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "live")
	contents := map[string][]byte{
		"big.bin":   patterned(storage.ChunkSize+4321, 9),
		"empty":     {},
		"a/one.txt": []byte("one"),
		"a/two.txt": []byte("two!"),
		"b/c/same":  []byte("same size"),
	}
	for i := range 20 {
		contents[fmt.Sprintf("many/f%02d", i)] = fmt.Appendf(nil, "file %d", i)
	}
	for p, c := range contents {
		mustWrite(t, filepath.Join(root, p), c, 0o644)
		if err := os.Chtimes(filepath.Join(root, p), ts(1), ts(1)); err != nil {
			t.Fatal(err)
		}
	}
	return root, contents
}

func totalSize(contents map[string][]byte) int64 {
	var n int64
	for _, c := range contents {
		n += int64(len(c))
	}
	return n
}

// sameFiles checks that two snapshots recorded the same files.
func sameFiles(t *testing.T, a, b *SnapshotResult) {
	t.Helper()
	if len(a.Entries) != len(b.Entries) {
		t.Fatalf("%d entries vs %d", len(a.Entries), len(b.Entries))
	}
	for i := range a.Entries {
		x, y := a.Entries[i], b.Entries[i]
		if x.Path != y.Path || x.Type != y.Type || x.Size != y.Size || x.Content != y.Content ||
			!slices.Equal(x.Chunks, y.Chunks) || x.Mode != y.Mode || !x.MTime.Equal(y.MTime) {
			t.Errorf("%s: %+v vs %+v", x.Path, x, y)
		}
	}
}

func statCTime(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ctim.Nano()
}

// The cache cannot key linked files on ctime: measure what link(2) and
// unlink(2) do to the ctime of the inode on this machine's filesystem.
func TestHardLinkChangesCTime(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	mustWrite(t, p, []byte("x"), 0o644)
	c0 := statCTime(t, p)
	time.Sleep(20 * time.Millisecond)
	if err := os.Link(p, p+".link"); err != nil {
		t.Fatalf("no hard links here: %v", err)
	}
	c1 := statCTime(t, p)
	time.Sleep(20 * time.Millisecond)
	if err := os.Remove(p + ".link"); err != nil {
		t.Fatal(err)
	}
	c2 := statCTime(t, p)
	var fs syscall.Statfs_t
	syscall.Statfs(dir, &fs)
	t.Logf("filesystem type %#x: link changed ctime: %v (+%v); unlink changed ctime: %v (+%v)",
		fs.Type, c1 != c0, time.Duration(c1-c0), c2 != c1, time.Duration(c2-c1))
	if c1 == c0 || c2 == c1 {
		t.Logf("this filesystem leaves ctime alone on link/unlink; the cache still ignores ctime for linked files")
	}
}

// A second snapshot of an unchanged tree only stats: no byte is read,
// although linking the files for the first snapshot and removing that
// snapshot both changed the files' ctime. Changing one file's content at
// the same size with a new mtime re-reads exactly that file.
func TestSnapshotCacheWarmRunIsStatOnly(t *testing.T) {
	root, contents := cacheTree(t)
	cache := openCache(t)
	snap := func(name string) *SnapshotResult {
		t.Helper()
		res, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), name), SnapshotOptions{Cache: cache, Workers: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Warnings) > 0 {
			t.Errorf("%s: warnings %q", name, res.Warnings)
		}
		return res
	}

	cold := snap("cold")
	files := int64(len(contents))
	if cold.Hash.FilesRead != files || cold.Hash.BytesRead != totalSize(contents) || cold.Hash.CacheHits != 0 {
		t.Errorf("cold: %+v, want %d files and %d bytes read", cold.Hash, files, totalSize(contents))
	}
	for p, c := range contents {
		if e := find(cold.Entries, p); e == nil || e.Content != sha(c) || !slices.Equal(e.Chunks, chunksOf(c)) {
			t.Errorf("cold %s: %+v", p, e)
		}
	}

	// While the first snapshot's links exist (ctime changed by link).
	warm := snap("warm")
	if warm.Hash.FilesRead != 0 || warm.Hash.BytesRead != 0 || warm.Hash.CacheHits != files || warm.Hash.CacheHitBytes != totalSize(contents) {
		t.Errorf("warm: %+v, want only cache hits", warm.Hash)
	}
	sameFiles(t, cold, warm)

	// After both were released (ctime changed again by unlink).
	os.RemoveAll(cold.Dir)
	os.RemoveAll(warm.Dir)
	again := snap("again")
	if again.Hash.BytesRead != 0 || again.Hash.CacheHits != files {
		t.Errorf("after release: %+v, want only cache hits", again.Hash)
	}
	sameFiles(t, cold, again)

	// Same size, new content and mtime, same inode: exactly that file is read.
	changed := []byte("SAME SIZE")
	p := filepath.Join(root, "b/c/same")
	mustWrite(t, p, changed, 0o644)
	if err := os.Chtimes(p, ts(2), ts(2)); err != nil {
		t.Fatal(err)
	}
	after := snap("after")
	if after.Hash.FilesRead != 1 || after.Hash.BytesRead != int64(len(changed)) || after.Hash.CacheHits != files-1 {
		t.Errorf("after a change: %+v, want 1 file and %d bytes read", after.Hash, len(changed))
	}
	if e := find(after.Entries, "b/c/same"); e.Content != sha(changed) || !e.MTime.Equal(ts(2)) {
		t.Errorf("changed file recorded as %+v", e)
	}

	// Replaced by another inode with the same size and mtime: read too.
	tmp := p + ".tmp"
	mustWrite(t, tmp, []byte("same SIZE"), 0o644)
	os.Chtimes(tmp, ts(2), ts(2))
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	replaced := snap("replaced")
	if replaced.Hash.FilesRead != 1 || find(replaced.Entries, "b/c/same").Content != sha([]byte("same SIZE")) {
		t.Errorf("after a replace: %+v", replaced.Hash)
	}

	// The result uploads and restores like an uncached one.
	store := newFakeStore()
	if _, err := Upload(context.Background(), replaced.Dir, replaced.Entries, store, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(context.Background(), target, replaced.Entries, store, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, replaced.Entries)
}

// A file modified less than racyWindow before it is read might still be
// written within the same timestamp tick without its mtime changing: it is
// read again after the window, and only then cached.
func TestSnapshotRereadsJustModifiedFiles(t *testing.T) {
	root := filepath.Join(t.TempDir(), "live")
	mustWrite(t, filepath.Join(root, "fresh"), []byte("just written"), 0o644)
	cache := openCache(t)
	now := time.Now() // as late as possible: the window is 50 ms even on a loaded machine
	os.Chtimes(filepath.Join(root, "fresh"), now, now)
	res, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s1"), SnapshotOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if res.Hash.FilesRead != 1 || res.Hash.Rereads != 1 || len(res.Warnings) != 0 {
		t.Errorf("fresh file: %+v, warnings %q; want one re-read", res.Hash, res.Warnings)
	}
	res, err = Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s2"), SnapshotOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if res.Hash.CacheHits != 1 {
		t.Errorf("second snapshot: %+v, want a cache hit", res.Hash)
	}
}

// In place nothing changes a file's ctime but a real change, so the cache
// compares it: a chmod alone makes the file be read again. (A linked file
// cannot be compared on ctime; a chmod alone keeps hitting there.)
func TestSnapshotCacheInPlaceTracksCTime(t *testing.T) {
	root, contents := cacheTree(t)
	cache := openCache(t)
	inPlace := func() *SnapshotResult {
		t.Helper()
		res, err := Snapshot(context.Background(), root, "", SnapshotOptions{Cache: cache, InPlace: true})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	cold := inPlace()
	if cold.Hash.FilesRead != int64(len(contents)) {
		t.Fatalf("cold: %+v", cold.Hash)
	}
	warm := inPlace()
	if warm.Hash.BytesRead != 0 || warm.Hash.CacheHits != int64(len(contents)) {
		t.Errorf("warm in place: %+v", warm.Hash)
	}
	sameFiles(t, cold, warm)
	if err := os.Chmod(filepath.Join(root, "a/one.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	chmodded := inPlace()
	if chmodded.Hash.FilesRead != 1 || chmodded.Hash.BytesRead != 3 {
		t.Errorf("after chmod: %+v, want a.txt read again", chmodded.Hash)
	}
	if e := find(chmodded.Entries, "a/one.txt"); e.Mode != 0o600 {
		t.Errorf("mode %#o", e.Mode)
	}
}

// A file that cannot be linked is copied; the cache, keyed on the live
// file's identity, then spares hashing it (copying still reads it).
func TestSnapshotCacheWithCopies(t *testing.T) {
	root, contents := cacheTree(t)
	other := otherFilesystem(t, root)
	cache := openCache(t)
	var results []*SnapshotResult
	for i := range 2 {
		res, err := Snapshot(context.Background(), root, filepath.Join(other, fmt.Sprint(i)), SnapshotOptions{Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		for p, c := range contents {
			if e := find(res.Entries, p); e == nil || e.Content != sha(c) || !slices.Equal(e.Chunks, chunksOf(c)) {
				t.Errorf("run %d: %s: %+v", i, p, e)
			}
			if got := readFile(t, filepath.Join(res.Dir, p)); string(got) != string(c) {
				t.Errorf("run %d: %s: copy differs", i, p)
			}
		}
		results = append(results, res)
	}
	if h := results[1].Hash; h.CacheHits != int64(len(contents)) || h.BytesRead != totalSize(contents) {
		t.Errorf("second run: %+v, want every file a hit and copied once", h)
	}
	sameFiles(t, results[0], results[1])
}

// otherFilesystem returns a fresh directory on another filesystem than
// dir (so linking fails with EXDEV), or skips the test.
func otherFilesystem(t testing.TB, dir string) string {
	t.Helper()
	other, err := os.MkdirTemp("/dev/shm", "crayfish-tree-test-")
	if err != nil {
		t.Fatalf("no /dev/shm (needed for a second filesystem): %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var a, b syscall.Stat_t
	if syscall.Stat(dir, &a) != nil || syscall.Stat(other, &b) != nil || a.Dev == b.Dev {
		t.Fatal("/dev/shm is on the same filesystem as the temp dir: the copy fallback cannot be exercised")
	}
	return other
}

// After a successful snapshot, the cache forgets the files below the root
// that the snapshot selected but did not find, and keeps the rest.
func TestSnapshotPrunesCache(t *testing.T) {
	root, contents := cacheTree(t)
	cache := openCache(t)
	if _, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s"), SnapshotOptions{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	if n, _ := cache.Len(); n != len(contents) {
		t.Fatalf("cache holds %d entries, want %d", n, len(contents))
	}
	// An entry of another root sharing the cache.
	content := sha([]byte("x"))
	cache.Store("/elsewhere/x", hashcache.FileID{Ino: 1, Size: 1}, content, []storage.ObjectID{content})

	os.Remove(filepath.Join(root, "a/one.txt"))
	os.RemoveAll(filepath.Join(root, "many"))
	// A snapshot of part of the tree only answers for that part.
	if _, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s2"),
		SnapshotOptions{Cache: cache, Include: []string{"a/**"}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := cache.Len(); n != len(contents)-1+1 {
		t.Errorf("after a partial snapshot: %d entries, want %d", n, len(contents))
	}
	if _, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s3"), SnapshotOptions{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	if n, _ := cache.Len(); n != len(contents)-1-20+1 {
		t.Errorf("after a full snapshot: %d entries, want %d", n, len(contents)-20)
	}
	if _, _, ok := cache.Lookup("/elsewhere/x", hashcache.FileID{Ino: 1, Size: 1}); !ok {
		t.Error("entry of another root pruned")
	}
}
