package hashcache

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/crayfish-backup/crayfish/storage"
)

// idsOf returns consistent made-up ids for a file of size bytes (the
// cache checks their shape, not the data behind them).
func idsOf(size int64, fill byte) (storage.ObjectID, []storage.ObjectID) {
	if size == 0 {
		return storage.ObjectID{}, nil
	}
	content := sha256.Sum256(fmt.Appendf(nil, "content %d %d", size, fill))
	if size <= storage.ChunkSize {
		return content, []storage.ObjectID{content}
	}
	var chunks []storage.ObjectID
	for i := range storage.NumChunks(size) {
		chunks = append(chunks, sha256.Sum256(fmt.Appendf(nil, "chunk %d %d %d", size, fill, i)))
	}
	return content, chunks
}

func testID(i int, size int64) FileID {
	return FileID{Dev: 42, Ino: uint64(1000 + i), Size: size, MTime: 1_700_000_000_123_456_789 + int64(i), CTime: 1_700_000_001_000_000_000, Type: 0}
}

func openT(t *testing.T, path string, batch int) *Cache {
	t.Helper()
	c, warn, err := open(path, batch)
	if err != nil {
		t.Fatal(err)
	}
	if warn != nil {
		t.Fatalf("unexpected warning: %v", warn)
	}
	return c
}

func TestStoreLookupRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hashcache.db")
	c := openT(t, path, BatchSize)
	sizes := []int64{0, 1, 4096, storage.ChunkSize, storage.ChunkSize + 1, 3*storage.ChunkSize - 5}
	for i, size := range sizes {
		content, chunks := idsOf(size, byte(i))
		c.Store(fmt.Sprintf("/root/f%d", i), testID(i, size), content, chunks)
	}
	check := func(c *Cache) {
		t.Helper()
		for i, size := range sizes {
			want, wantChunks := idsOf(size, byte(i))
			got, chunks, ok := c.Lookup(fmt.Sprintf("/root/f%d", i), testID(i, size))
			if !ok || got != want || !slices.Equal(chunks, wantChunks) {
				t.Errorf("size %d: ok %v, content %s, %d chunks; want %s, %d chunks", size, ok, got, len(chunks), want, len(wantChunks))
			}
		}
	}
	check(c) // from the buffer
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openT(t, path, BatchSize)
	defer c.Close()
	check(c) // from the file
	if n, err := c.Len(); err != nil || n != len(sizes) {
		t.Errorf("Len = %d, %v", n, err)
	}
}

// Any field of the identity that differs is a miss: the content may differ.
func TestLookupNeedsIdenticalID(t *testing.T) {
	c := openT(t, filepath.Join(t.TempDir(), "c.db"), BatchSize)
	defer c.Close()
	id := testID(1, 100)
	content, chunks := idsOf(100, 7)
	c.Store("/r/a", id, content, chunks)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*FileID){
		"dev":             func(f *FileID) { f.Dev++ },
		"ino":             func(f *FileID) { f.Ino++ },
		"size":            func(f *FileID) { f.Size++ },
		"mtime":           func(f *FileID) { f.MTime++ },
		"ctime":           func(f *FileID) { f.CTime++ },
		"ctime untracked": func(f *FileID) { *f = f.WithoutCTime() },
		"type":            func(f *FileID) { f.Type = uint32(os.ModeSymlink) },
	} {
		other := id
		mutate(&other)
		if _, _, ok := c.Lookup("/r/a", other); ok {
			t.Errorf("%s changed: hit", name)
		}
	}
	if _, _, ok := c.Lookup("/r/b", id); ok {
		t.Error("other path: hit")
	}
	if _, _, ok := c.Lookup("/r/a", id); !ok {
		t.Error("same id: miss")
	}
}

func TestStoreIgnoresInconsistentIDs(t *testing.T) {
	c := openT(t, filepath.Join(t.TempDir(), "c.db"), BatchSize)
	defer c.Close()
	content, chunks := idsOf(2*storage.ChunkSize, 1)
	small, smallChunks := idsOf(10, 2)
	bad := map[string]struct {
		size    int64
		content storage.ObjectID
		chunks  []storage.ObjectID
	}{
		"too few chunks":         {2 * storage.ChunkSize, content, chunks[:1]},
		"too many chunks":        {10, small, append(slices.Clone(smallChunks), small)},
		"small chunk != content": {10, small, []storage.ObjectID{content}},
		"empty with content":     {0, small, nil},
		"zero content":           {10, storage.ObjectID{}, smallChunks},
		"negative size":          {-1, small, nil},
	}
	for name, b := range bad {
		c.Store("/r/"+name, testID(0, b.size), b.content, b.chunks)
	}
	c.Store("", testID(0, 10), small, smallChunks)
	if n, err := c.Len(); err != nil || n != 0 {
		t.Errorf("stored %d inconsistent entries (%v)", n, err)
	}
}

// Stores are buffered and committed in batches by a background goroutine;
// buffered entries are visible, and nothing is lost at Close.
func TestBatchedCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	c := openT(t, path, 10)
	content, chunks := idsOf(5, 1)
	const n = 95
	for i := range n {
		c.Store(fmt.Sprintf("/r/%03d", i), testID(i, 5), content, chunks)
		if _, _, ok := c.Lookup(fmt.Sprintf("/r/%03d", i), testID(i, 5)); !ok {
			t.Fatalf("entry %d not visible right after Store", i)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	writes := int(c.commits.Load())
	if writes > n/10+1 || writes < 1 {
		t.Errorf("%d write transactions for %d entries in batches of 10", writes, n)
	}
	t.Logf("%d entries, %d write transactions", n, writes)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openT(t, path, 10)
	defer c.Close()
	if got, err := c.Len(); err != nil || got != n {
		t.Errorf("after reopen: %d entries (%v), want %d", got, err, n)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := openT(t, filepath.Join(t.TempDir(), "c.db"), 7)
	defer c.Close()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := fmt.Sprintf("/r/%d/%d", w, i)
				size := int64(i%3) * storage.ChunkSize / 2
				content, chunks := idsOf(size, byte(w))
				c.Store(p, testID(i, size), content, chunks)
				if got, _, ok := c.Lookup(p, testID(i, size)); !ok || got != content {
					t.Errorf("%s: miss right after store", p)
				}
				if i%50 == 0 {
					if err := c.Flush(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			c.Prune("/r/nothing/", func(string) bool { return false })
		}
	})
	wg.Wait()
	if n, err := c.Len(); err != nil || n != 8*200 {
		t.Errorf("Len = %d, %v", n, err)
	}
}

func TestPrune(t *testing.T) {
	c := openT(t, filepath.Join(t.TempDir(), "c.db"), 3)
	defer c.Close()
	content, chunks := idsOf(1, 1)
	paths := []string{"/a/x", "/a/y", "/a/z/1", "/ab/x", "/b/x"}
	for i, p := range paths {
		c.Store(p, testID(i, 1), content, chunks)
	}
	var asked []string
	removed, err := c.Prune("/a/", func(p string) bool {
		asked = append(asked, p)
		return p == "/a/y"
	})
	if err != nil || removed != 2 {
		t.Fatalf("removed %d, %v", removed, err)
	}
	if !slices.Equal(asked, []string{"/a/x", "/a/y", "/a/z/1"}) {
		t.Errorf("keep asked about %q", asked)
	}
	for i, p := range paths {
		_, _, ok := c.Lookup(p, testID(i, 1))
		if want := p != "/a/x" && p != "/a/z/1"; ok != want {
			t.Errorf("%s: present %v, want %v", p, ok, want)
		}
	}
}

// A cache file that is not a readable bbolt file of this format is
// replaced by an empty one, with a warning, never an error.
func TestDamagedFileIsRecreated(t *testing.T) {
	valid := func(t *testing.T, path string) {
		c := openT(t, path, BatchSize)
		content, chunks := idsOf(1, 1)
		for i := range 2000 {
			c.Store(fmt.Sprintf("/r/%05d/%s", i, strings.Repeat("x", 100)), testID(i, 1), content, chunks)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for name, damage := range map[string]func(t *testing.T, path string){
		"garbage": func(t *testing.T, path string) {
			os.WriteFile(path, []byte(strings.Repeat("not a database ", 1000)), 0o600)
		},
		"truncated": func(t *testing.T, path string) {
			valid(t, path)
			if err := os.Truncate(path, 5000); err != nil {
				t.Fatal(err)
			}
		},
		"scribbled pages": func(t *testing.T, path string) {
			valid(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := 4 * 4096; i < len(b); i += 4096 { // every page but the metas
				copy(b[i:], "garbage over a page header")
			}
			os.WriteFile(path, b, 0o600)
		},
		"other format": func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error {
				b, _ := tx.CreateBucket(bucketMeta)
				b.Put(keyFormat, []byte("crayfish-hashcache-0"))
				_, err := tx.CreateBucket(bucketFiles)
				return err
			})
			db.Close()
		},
		"bad value": func(t *testing.T, path string) {
			valid(t, path)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketFiles).Put([]byte("/r/bad"), make([]byte, idSize+40))
			})
			db.Close()
		},
		"foreign bbolt file": func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("raft")); return err })
			db.Close()
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hashcache.db")
			damage(t, path)
			c, warn, err := Open(path)
			if err != nil {
				t.Fatalf("Open failed instead of recreating: %v", err)
			}
			defer c.Close()
			if warn == nil || !strings.Contains(warn.Error(), "recreated") {
				t.Errorf("warning %v", warn)
			}
			t.Logf("warning: %v", warn)
			if n, err := c.Len(); err != nil || n != 0 {
				t.Errorf("recreated cache has %d entries (%v)", n, err)
			}
			content, chunks := idsOf(1, 1)
			c.Store("/r/new", testID(0, 1), content, chunks)
			if _, _, ok := c.Lookup("/r/new", testID(0, 1)); !ok {
				t.Error("recreated cache does not work")
			}
		})
	}
}

func TestOpenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	c := openT(t, path, BatchSize)
	defer c.Close()
	_, _, err := Open(path) // flock is per open file, so this conflicts even in-process
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("file in use was touched: %v", err)
	}
}

func TestOpenUnwritableDir(t *testing.T) {
	_, _, err := Open(filepath.Join(t.TempDir(), "missing", "c.db"))
	if err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// A bbolt panic (damaged page found while in use) disables the cache and
// makes Close remove the file, so the next Open starts afresh.
func TestPanicDisablesCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	c := openT(t, path, BatchSize)
	content, chunks := idsOf(1, 1)
	c.Store("/r/a", testID(0, 1), content, chunks)
	if err := c.guard(func() error { panic("unexpected page type") }); err == nil {
		t.Fatal("guard swallowed the panic without an error")
	}
	if _, _, ok := c.Lookup("/r/a", testID(0, 1)); ok {
		t.Error("broken cache still hits")
	}
	c.Store("/r/b", testID(0, 1), content, chunks)
	c.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("damaged file kept: %v", err)
	}
	c = openT(t, path, BatchSize)
	c.Close()
}

// A value whose checksum does not match (a damaged page pairing one key
// with other bytes) is a miss.
func TestChecksumGuardsValues(t *testing.T) {
	id := testID(0, 2*storage.ChunkSize)
	content, chunks := idsOf(id.Size, 3)
	v := encode("/r/a", id, content, chunks)
	if _, _, ok := decode("/r/a", v, id); !ok {
		t.Fatal("valid value rejected")
	}
	if _, _, ok := decode("/r/b", v, id); ok {
		t.Error("value accepted under another key")
	}
	for _, i := range []int{0, idSize, idSize + 40, len(v) - 1} {
		bad := slices.Clone(v)
		bad[i] ^= 1
		if _, _, ok := decode("/r/a", bad, getID(bad)); ok {
			t.Errorf("flipped byte %d accepted", i)
		}
	}
	if _, _, ok := decode("/r/a", v[:len(v)-5], id); ok {
		t.Error("truncated value accepted")
	}
}

func TestNilCache(t *testing.T) {
	var c *Cache
	c.Store("/a", FileID{}, storage.ObjectID{}, nil)
	if _, _, ok := c.Lookup("/a", FileID{}); ok {
		t.Error("nil cache hit")
	}
	if err := c.Flush(); err != nil {
		t.Error(err)
	}
	if _, err := c.Prune("", func(string) bool { return false }); err != nil {
		t.Error(err)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}

func TestFileIDOf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := FileIDOf(fi)
	if !ok {
		t.Fatal("no inode metadata on this platform: the cache needs it")
	}
	st := fi.Sys().(*syscall.Stat_t)
	if id.Ino != st.Ino || id.Size != 5 || id.MTime != fi.ModTime().UnixNano() || id.CTime == 0 || id.Type != 0 {
		t.Errorf("id %+v", id)
	}
	if id.WithoutCTime().CTime != 0 || id.WithoutCTime().Ino != id.Ino {
		t.Error("WithoutCTime")
	}
	dir, _ := os.Lstat(filepath.Dir(p))
	if did, _ := FileIDOf(dir); did.Type != uint32(os.ModeDir) {
		t.Errorf("dir type %#x", did.Type)
	}
}

// Forget drops an entry at once for Lookup (even one still waiting to be
// committed), and from the file with the next commit, across a reopen.
func TestForget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hashcache.db")
	c := openT(t, path, BatchSize)
	for i := range 3 {
		content, chunks := idsOf(100, byte(i))
		c.Store(fmt.Sprintf("/root/f%d", i), testID(i, 100), content, chunks)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Forget("/root/f0") // committed entry
	content, chunks := idsOf(100, 9)
	c.Store("/root/f9", testID(9, 100), content, chunks)
	c.Forget("/root/f9") // entry still pending
	c.Forget("/root/none")
	for _, p := range []string{"/root/f0", "/root/f9"} {
		if _, _, ok := c.Lookup(p, testID(int(p[len(p)-1]-'0'), 100)); ok {
			t.Errorf("%s still found after Forget", p)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openT(t, path, BatchSize)
	defer c.Close()
	if n, err := c.Len(); err != nil || n != 2 {
		t.Errorf("after reopen: %d entries, %v; want f1 and f2", n, err)
	}
	if _, _, ok := c.Lookup("/root/f1", testID(1, 100)); !ok {
		t.Error("f1 lost")
	}
	var nilCache *Cache
	nilCache.Forget("/x")
}

func TestFileIDBinary(t *testing.T) {
	id := FileID{Dev: 1 << 63, Ino: 2, Size: 3, MTime: -4, CTime: 5, Type: 6}
	b, err := id.AppendBinary([]byte("x"))
	if err != nil || len(b) != 1+EncodedFileIDSize {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	var got FileID
	if err := got.UnmarshalBinary(b[1:]); err != nil || got != id {
		t.Fatalf("%+v, %v", got, err)
	}
	if err := got.UnmarshalBinary(b); err == nil {
		t.Error("a value of the wrong length decoded")
	}
}
