package tree

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/crayfish-backup/crayfish/node/hashcache"
	"github.com/crayfish-backup/crayfish/storage"
)

// warmSnapshot takes a cold and then a warm snapshot of root with cache
// and returns the warm one, whose files the cache all knew.
func warmSnapshot(t *testing.T, root string, cache *hashcache.Cache) *SnapshotResult {
	t.Helper()
	cold, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "cold"), SnapshotOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if cold.Hash.NotLinked != 0 {
		t.Fatalf("cold snapshot: %+v, nothing should be spared from linking", cold.Hash)
	}
	os.RemoveAll(cold.Dir)
	warm, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "warm"), SnapshotOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if warm.Hash.NotLinked != warm.Stats.Files || warm.Hash.FilesRead != 0 {
		t.Fatalf("warm snapshot: %+v, want all %d files known and not linked", warm.Hash, warm.Stats.Files)
	}
	return warm
}

// A warm snapshot links no file the cache knows: its directory holds the
// directories and the list of unlinked files only. Upload into a store
// that has every chunk reads nothing (the live tree could be gone), and
// into an empty store reads the live files, whose identities still match,
// and stores exactly their content.
func TestSnapshotDoesNotLinkKnownFiles(t *testing.T) {
	root, contents := cacheTree(t)
	cache := openCache(t)
	warm := warmSnapshot(t, root, cache)
	err := filepath.WalkDir(warm.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() != unlinkedListName {
			t.Errorf("%s is in the snapshot directory", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	full := newFakeStore()
	for _, c := range contents {
		full.put(c)
		for _, ch := range chunkBytes(c) {
			full.put(ch)
		}
	}
	saves := full.totalSaves()
	// Without the live tree: nothing may need it.
	hidden := root + ".hidden"
	if err := os.Rename(root, hidden); err != nil {
		t.Fatal(err)
	}
	st, err := Upload(context.Background(), warm.Dir, warm.Entries, full, UploadOptions{})
	if err != nil || st.Uploaded != 0 || full.totalSaves() != saves {
		t.Fatalf("upload into a full store: %+v, %v", st, err)
	}
	if err := os.Rename(hidden, root); err != nil {
		t.Fatal(err)
	}

	empty := newFakeStore()
	st, err = Upload(context.Background(), warm.Dir, warm.Entries, empty, UploadOptions{})
	if err != nil {
		t.Fatalf("upload into an empty store: %v", err)
	}
	if st.UploadedBytes != totalSize(contents) {
		t.Errorf("uploaded %+v, want %d bytes", st, totalSize(contents))
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(context.Background(), target, warm.Entries, empty, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for p, c := range contents {
		if got := readFile(t, filepath.Join(target, p)); string(got) != string(c) {
			t.Errorf("%s restored wrong", p)
		}
	}
}

// chunkBytes splits b into its ChunkSize pieces.
func chunkBytes(b []byte) [][]byte {
	var out [][]byte
	for off := 0; off < len(b); off += storage.ChunkSize {
		out = append(out, b[off:min(off+storage.ChunkSize, len(b))])
	}
	return out
}

// A file the snapshot did not link that changes afterwards is never read
// for a missing chunk: the upload fails with ErrSourceChanged (not
// ErrCorrupt, which would make the step permanent), and stores nothing of
// it. So does one that is gone.
func TestUploadRefusesChangedUnlinkedFile(t *testing.T) {
	for _, change := range []string{"rewritten", "touched", "removed", "replaced"} {
		t.Run(change, func(t *testing.T) {
			root, _ := cacheTree(t)
			cache := openCache(t)
			warm := warmSnapshot(t, root, cache)
			p := filepath.Join(root, "a", "one.txt")
			switch change {
			case "rewritten": // same size, mtime kept: only the ctime tells
				mustWrite(t, p, []byte("ONE"), 0o644)
				if err := os.Chtimes(p, ts(1), ts(1)); err != nil {
					t.Fatal(err)
				}
			case "touched":
				if err := os.Chtimes(p, ts(2), ts(2)); err != nil {
					t.Fatal(err)
				}
			case "removed":
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			case "replaced":
				mustWrite(t, p+".new", []byte("one"), 0o644)
				if err := os.Rename(p+".new", p); err != nil {
					t.Fatal(err)
				}
			}
			store := newFakeStore()
			_, err := Upload(context.Background(), warm.Dir, warm.Entries, store, UploadOptions{})
			assertIs(t, err, ErrSourceChanged)
			if errors.Is(err, storage.ErrCorrupt) {
				t.Errorf("%v: must not be ErrCorrupt", err)
			}
			if store.HasBlob(sha([]byte("ONE"))) || store.HasBlob(sha([]byte("one"))) {
				t.Error("a chunk of the changed file was stored")
			}
		})
	}
}

// A cache entry that is wrong (content changed with the identity kept,
// which only a changed ctime would show for a linked file) makes the
// snapshot record the wrong content. Upload, reading the live file for
// the missing chunk, sees the mismatch, fails with ErrSourceChanged and
// drops the entry, so the next snapshot reads the file.
func TestUploadForgetsWrongCacheEntry(t *testing.T) {
	root, _ := cacheTree(t)
	cache := openCache(t)
	warmSnapshot(t, root, cache)
	p := filepath.Join(root, "a", "two.txt")
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := hashcache.FileIDOf(fi)
	wrong := []byte("TWO!")
	cache.Store(p, id.WithoutCTime(), sha(wrong), chunksOf(wrong))

	res, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s"), SnapshotOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if e := find(res.Entries, "a/two.txt"); e == nil || e.Content != sha(wrong) {
		t.Fatalf("the planted cache entry was not used: %+v", e)
	}
	_, err = Upload(context.Background(), res.Dir, res.Entries, newFakeStore(), UploadOptions{Cache: cache})
	assertIs(t, err, ErrSourceChanged)
	if _, _, ok := cache.Lookup(p, id.WithoutCTime()); ok {
		t.Error("the wrong cache entry is still there")
	}
	res, err = Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s2"), SnapshotOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if e := find(res.Entries, "a/two.txt"); e == nil || e.Content != sha([]byte("two!")) {
		t.Errorf("next snapshot recorded %+v", e)
	}
}

// A damaged list, or one that does not belong to us, fails the upload of
// a missing chunk instead of reading anything.
func TestUploadChecksUnlinkedList(t *testing.T) {
	for _, damage := range []string{"truncated", "flipped", "foreign"} {
		t.Run(damage, func(t *testing.T) {
			root, _ := cacheTree(t)
			warm := warmSnapshot(t, root, openCache(t))
			list := filepath.Join(warm.Dir, unlinkedListName)
			b, err := os.ReadFile(list)
			if err != nil {
				t.Fatal(err)
			}
			switch damage {
			case "truncated":
				b = b[:len(b)-10]
			case "flipped":
				b[len(b)/2] ^= 1
			case "foreign":
				if os.Geteuid() != 0 {
					t.Fatal("needs root to give the list another owner")
				}
				if err := os.Chown(list, 4242, 4242); err != nil {
					t.Fatal(err)
				}
			}
			if damage != "foreign" {
				if err := os.WriteFile(list, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err = Upload(context.Background(), warm.Dir, warm.Entries, newFakeStore(), UploadOptions{})
			assertIs(t, err, errUnlinkedList)
		})
	}
}

func TestUnlinkedListRoundTrip(t *testing.T) {
	files := []unlinkedFile{
		{rel: "a/b", id: hashcache.FileID{Dev: 1, Ino: 2, Size: 3, MTime: 4, CTime: 5}},
		{rel: "ü/c", id: hashcache.FileID{Dev: 1 << 60, Ino: 7, Size: 1 << 40, MTime: -1, CTime: 9, Type: 3}},
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "list"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeUnlinkedList(f, "/live/root", files); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	root, ids, ok := parseUnlinkedList(b)
	if !ok || root != "/live/root" || len(ids) != 2 || ids["a/b"] != files[0].id || ids["ü/c"] != files[1].id {
		t.Fatalf("got %q %+v %v", root, ids, ok)
	}
	for n := range len(b) {
		if _, _, ok := parseUnlinkedList(b[:n]); ok {
			t.Fatalf("a list cut to %d bytes parsed", n)
		}
	}
}

// A file the cache does not know is linked without an lstat of the link
// (the live file's lstat came just before). If the name was replaced
// between that lstat and the link by a FIFO or a symlink, the link is to
// that: it is dropped with a warning, never read (a FIFO would block) nor
// followed.
func TestSnapshotFileReplacedBeforeLink(t *testing.T) {
	for _, by := range []string{"fifo", "symlink"} {
		t.Run(by, func(t *testing.T) {
			root, _ := cacheTree(t)
			testPlaceHook = func(rel string) {
				if rel != "a/one.txt" {
					return
				}
				p := filepath.Join(root, "a", "one.txt")
				os.Remove(p)
				var err error
				if by == "fifo" {
					err = syscall.Mkfifo(p, 0o644)
				} else {
					err = os.Symlink("/etc/passwd", p)
				}
				if err != nil {
					t.Error(err)
				}
			}
			defer func() { testPlaceHook = nil }()
			res, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s"), SnapshotOptions{Cache: openCache(t)})
			if err != nil {
				t.Fatal(err)
			}
			if e := find(res.Entries, "a/one.txt"); e != nil {
				t.Errorf("recorded %+v", e)
			}
			if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "a/one.txt: changed type") {
				t.Errorf("warnings %q", res.Warnings)
			}
			if _, err := os.Lstat(filepath.Join(res.Dir, "a", "one.txt")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("link left in the snapshot: %v", err)
			}
		})
	}
}
