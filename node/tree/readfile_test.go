package tree

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/storage"
)

// A file rewritten in place while it is hashed would be recorded as a mix
// of two versions. Snapshot sees its identity change across the read and
// reads it again, in every mode.
func TestSnapshotRereadsFileChangedWhileRead(t *testing.T) {
	for _, mode := range []string{"link", "inplace", "copy", "live"} {
		t.Run(mode, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "live")
			p := filepath.Join(root, "db")
			before, after := patterned(storage.ChunkSize+1<<20, 1), patterned(storage.ChunkSize+1<<20, 2)
			mustWrite(t, p, before, 0o644)
			os.Chtimes(p, ts(1), ts(1)) // not racy: the first read is trusted unless it changes
			dst := filepath.Join(t.TempDir(), "snap")
			switch mode {
			case "inplace":
				dst = ""
			case "copy":
				dst = filepath.Join(otherFilesystem(t, filepath.Dir(root)), "snap")
			}
			testMidReadHook = func(rel string, attempt int) {
				if attempt == 1 { // rewrite in place after the first block was read
					f, err := os.OpenFile(p, os.O_WRONLY, 0)
					if err != nil {
						t.Error(err)
						return
					}
					f.WriteAt(after, 0)
					f.Close()
				}
			}
			t.Cleanup(func() { testMidReadHook = nil })
			opts := SnapshotOptions{InPlace: mode == "inplace", Cache: openCache(t)}
			store := newFakeStore()
			if mode == "live" {
				opts.Save = &SaveOptions{Store: store}
			}
			res, err := Snapshot(context.Background(), root, dst, opts)
			if err != nil {
				t.Fatal(err)
			}
			if mode == "live" {
				for i, id := range chunksOf(after) {
					if !store.HasBlob(id) {
						t.Errorf("chunk %d of the version recorded was not saved", i)
					}
				}
			}
			e := find(res.Entries, "db")
			if e.Content != sha(after) {
				t.Errorf("recorded %s, want the new version %s (the old one is %s)", e.Content, sha(after), sha(before))
			}
			// Changed during the first read; the second read is trusted, or
			// (if it starts within the 50 ms "just modified" window, which
			// depends on machine load) a third one is.
			if res.Hash.Rereads < 1 || res.Hash.Rereads > 2 || len(res.Warnings) != 0 {
				t.Errorf("%+v, warnings %q", res.Hash, res.Warnings)
			}
			if mode == "copy" && string(readFile(t, filepath.Join(res.Dir, "db"))) != string(after) {
				t.Error("copy holds a mix")
			}
		})
	}
}

// A file that changes during every read is recorded as last read, with a
// warning naming it, and is not cached.
func TestSnapshotWarnsAboutFileThatKeepsChanging(t *testing.T) {
	root := filepath.Join(t.TempDir(), "live")
	p := filepath.Join(root, "busy")
	mustWrite(t, p, patterned(1<<20, 1), 0o644)
	mustWrite(t, filepath.Join(root, "quiet"), []byte("quiet"), 0o644)
	os.Chtimes(filepath.Join(root, "quiet"), ts(1), ts(1))
	testMidReadHook = func(rel string, attempt int) {
		if rel == "busy" {
			mustWrite(t, p, patterned(1<<20, byte(attempt+1)), 0o644)
		}
	}
	t.Cleanup(func() { testMidReadHook = nil })
	cache := openCache(t)
	res, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "snap"), SnapshotOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.HasPrefix(res.Warnings[0], "busy: changed while being read") {
		t.Errorf("warnings %q", res.Warnings)
	}
	if res.Hash.Rereads != maxReadAttempts-1 {
		t.Errorf("%+v", res.Hash)
	}
	testMidReadHook = nil
	res, err = Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "snap2"), SnapshotOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if res.Hash.CacheHits != 1 || res.Hash.FilesRead != 1 {
		t.Errorf("second snapshot %+v: want quiet from the cache and busy read", res.Hash)
	}
}
