package tree

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/crayfish-backup/crayfish/storage"
)

// liveFixture is makeSourceTree plus a file of three chunks.
func liveFixture(t *testing.T) *sourceTree {
	t.Helper()
	st := makeSourceTree(t)
	multi := patterned(2*storage.ChunkSize+5, 9)
	mustWrite(t, filepath.Join(st.root, "a/multi.bin"), multi, 0o644)
	os.Chtimes(filepath.Join(st.root, "a/multi.bin"), ts(90), ts(90))
	os.Chtimes(filepath.Join(st.root, "a"), ts(91), ts(91))
	st.contents["a/multi.bin"] = multi
	return st
}

// regularFilesIn lists the regular files below dir (links or copies).
func regularFilesIn(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.Contains(p, unlinkedListName) {
			out = append(out, p)
		}
		return err
	})
	return out
}

// With Save and without Link, every file is read once, live, and its
// chunks are saved as they are read: nothing is linked, every distinct
// chunk is saved once, Upload then reads nothing, and the saved chunks
// restore the tree exactly.
func TestSnapshotSaveReadsOnceWithoutLinks(t *testing.T) {
	st := liveFixture(t)
	store := newFakeStore()
	dst := filepath.Join(t.TempDir(), "snap")
	res, err := Snapshot(context.Background(), st.root, dst, SnapshotOptions{Save: &SaveOptions{Store: store}})
	if err != nil {
		t.Fatal(err)
	}
	if files := regularFilesIn(t, dst); len(files) != 0 {
		t.Errorf("files linked or copied into the snapshot: %q", files)
	}
	distinct := map[storage.ObjectID]bool{}
	var size int64
	for _, c := range st.contents {
		size += int64(len(c))
		for _, id := range chunksOf(c) {
			distinct[id] = true
		}
	}
	if res.Hash.BytesRead != size || res.Hash.Rereads != 0 {
		t.Errorf("read %d bytes (%d rereads), the files hold %d", res.Hash.BytesRead, res.Hash.Rereads, size)
	}
	if res.Saved.Uploaded != int64(len(distinct)) || res.Saved.UploadedBytes == 0 || res.Saved.StoredBytes == 0 {
		t.Errorf("saved %+v, want %d distinct chunks", res.Saved, len(distinct))
	}
	for id := range distinct {
		if n := store.saves[id]; n != 1 {
			t.Errorf("chunk %s saved %d times", id, n)
		}
	}
	for _, e := range res.Entries {
		if e.Type != storage.TypeFile {
			continue
		}
		if c := st.contents[e.Path]; e.Content != sha(c) || !slices.Equal(e.Chunks, chunksOf(c)) || e.Size != int64(len(c)) {
			t.Errorf("%s recorded as %s (%d bytes, %d chunks)", e.Path, e.Content, e.Size, len(e.Chunks))
		}
	}

	before := store.totalSaves()
	up, err := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if up.Uploaded != 0 || store.totalSaves() != before {
		t.Errorf("upload after a saving snapshot saved %d chunks", up.Uploaded)
	}

	target := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(context.Background(), target, res.Entries, store, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, res.Entries)
	for p, c := range st.contents {
		if got := readFile(t, filepath.Join(target, p)); !slices.Equal(got, c) {
			t.Errorf("%s restored with other content", p)
		}
	}
}

// A chunk that went missing after the snapshot saved it (garbage
// collected, or its pack lost) is read again from the live file while the
// file is unchanged; once the file has changed, Upload refuses it
// (ErrSourceChanged) rather than store a chunk of another version.
func TestSnapshotSaveMissingChunkReadLive(t *testing.T) {
	st := liveFixture(t)
	store := newFakeStore()
	res, err := Snapshot(context.Background(), st.root, filepath.Join(t.TempDir(), "snap"), SnapshotOptions{Save: &SaveOptions{Store: store}})
	if err != nil {
		t.Fatal(err)
	}
	lost := chunksOf(st.contents["a/multi.bin"])[1]
	delete(store.blobs, lost)
	up, err := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if up.Uploaded != 1 || !store.HasBlob(lost) {
		t.Errorf("uploaded %d chunks; the lost one is back: %v", up.Uploaded, store.HasBlob(lost))
	}

	delete(store.blobs, lost)
	p := filepath.Join(st.root, "a/multi.bin")
	mustWrite(t, p, patterned(2*storage.ChunkSize+5, 10), 0o644)
	_, err = Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{})
	assertIs(t, err, ErrSourceChanged)
	if store.HasBlob(lost) {
		t.Error("a chunk of the new version was stored under the old id")
	}
}

// A file deleted between the walk and its read is left out with a
// warning; the snapshot goes on.
func TestSnapshotSaveVanishedFile(t *testing.T) {
	st := liveFixture(t)
	testPlaceHook = func(rel string) {
		if rel == "a/exec.sh" {
			os.Remove(filepath.Join(st.root, rel))
		}
	}
	t.Cleanup(func() { testPlaceHook = nil })
	res, err := Snapshot(context.Background(), st.root, filepath.Join(t.TempDir(), "snap"), SnapshotOptions{Save: &SaveOptions{Store: newFakeStore()}})
	if err != nil {
		t.Fatal(err)
	}
	if find(res.Entries, "a/exec.sh") != nil || find(res.Entries, "a/multi.bin") == nil {
		t.Error("the vanished file is listed, or another is missing")
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.HasPrefix(w, "a/exec.sh: vanished") }) {
		t.Errorf("warnings %q", res.Warnings)
	}
}

// Link still links, and saves as it reads; in place reads where the files
// are; both leave Upload nothing to do.
func TestSnapshotSaveLinkAndInPlace(t *testing.T) {
	for _, mode := range []string{"link", "inplace"} {
		t.Run(mode, func(t *testing.T) {
			st := liveFixture(t)
			store := newFakeStore()
			dst := filepath.Join(t.TempDir(), "snap")
			opts := SnapshotOptions{Save: &SaveOptions{Store: store}, Link: mode == "link", InPlace: mode == "inplace"}
			if opts.InPlace {
				dst = ""
			}
			res, err := Snapshot(context.Background(), st.root, dst, opts)
			if err != nil {
				t.Fatal(err)
			}
			if mode == "link" && len(regularFilesIn(t, dst)) != len(st.contents) {
				t.Errorf("linked %d files of %d", len(regularFilesIn(t, dst)), len(st.contents))
			}
			up, err := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{})
			if err != nil || up.Uploaded != 0 || res.Saved.Uploaded == 0 {
				t.Errorf("snapshot saved %d, upload %d (%v)", res.Saved.Uploaded, up.Uploaded, err)
			}
		})
	}
}

// A store that fails fails the snapshot, which leaves nothing behind.
func TestSnapshotSaveStoreFails(t *testing.T) {
	st := liveFixture(t)
	store := newFakeStore()
	store.saveErr = errors.New("bucket on fire")
	dst := filepath.Join(t.TempDir(), "snap")
	_, err := Snapshot(context.Background(), st.root, dst, SnapshotOptions{Save: &SaveOptions{Store: store}})
	if err == nil || !strings.Contains(err.Error(), "bucket on fire") {
		t.Fatalf("snapshot: %v", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("snapshot dir left behind: %v", err)
	}
}

// Read live, nothing of ours touches the files' inodes: a second snapshot
// with the cache reads nothing, comparing the full identity (ctime too).
func TestSnapshotSaveCacheKeepsCTime(t *testing.T) {
	st := liveFixture(t)
	cache := openCache(t)
	opts := SnapshotOptions{Save: &SaveOptions{Store: newFakeStore()}, Cache: cache}
	if _, err := Snapshot(context.Background(), st.root, filepath.Join(t.TempDir(), "s1"), opts); err != nil {
		t.Fatal(err)
	}
	res, err := Snapshot(context.Background(), st.root, filepath.Join(t.TempDir(), "s2"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Hash.FilesRead != 0 || res.Hash.CacheHits != int64(len(st.contents)) {
		t.Errorf("unchanged tree: %+v", res.Hash)
	}
	// A chmod changes only the ctime: the file is read again.
	if err := os.Chmod(filepath.Join(st.root, "a/multi.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = Snapshot(context.Background(), st.root, filepath.Join(t.TempDir(), "s3"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Hash.FilesRead != 1 {
		t.Errorf("after a chmod: %+v", res.Hash)
	}
}

// The bandwidth limit applies to the chunks a snapshot saves.
func TestSnapshotSaveRateLimit(t *testing.T) {
	root := filepath.Join(t.TempDir(), "live")
	mustWrite(t, filepath.Join(root, "f"), patterned(100<<10, 3), 0o644)
	var waits int
	var waited time.Duration
	lim := rate.NewLimiter(rate.Limit(200<<10), 4<<10)
	opts := SnapshotOptions{Workers: 1, Save: &SaveOptions{Store: newFakeStore(), Limiter: lim,
		Throttled: func(d time.Duration) { waits++; waited += d }}}
	if _, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "snap"), opts); err != nil {
		t.Fatal(err)
	}
	if waits < 10 || waited < 300*time.Millisecond {
		t.Errorf("the limiter's waits reported: %d, %v in all", waits, waited)
	}
}

// With MaxFileSize (a backup of several nodes), larger files are linked
// and left to Upload, smaller ones read live and saved; the cache knows
// both the next time.
func TestSnapshotSaveMaxFileSize(t *testing.T) {
	st := liveFixture(t)
	store := newFakeStore()
	cache := openCache(t)
	dst := filepath.Join(t.TempDir(), "snap")
	opts := SnapshotOptions{Cache: cache, Save: &SaveOptions{Store: store, MaxFileSize: 1 << 20}}
	res, err := Snapshot(context.Background(), st.root, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	var big []string
	for p, c := range st.contents {
		if len(c) > 1<<20 {
			big = append(big, filepath.Join(dst, p))
		}
	}
	slices.Sort(big)
	if got := regularFilesIn(t, dst); !slices.Equal(got, big) {
		t.Errorf("linked %q, want the large files %q", got, big)
	}
	for _, id := range chunksOf(st.contents["a/multi.bin"]) {
		if store.HasBlob(id) {
			t.Error("a chunk of a large file was saved by the snapshot")
		}
	}
	if !store.HasBlob(sha(st.contents["a/exec.sh"])) {
		t.Error("a small file was not saved")
	}
	up, err := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(chunksOf(st.contents["a/multi.bin"])) + len(chunksOf(bigContent))); up.Uploaded != want {
		t.Errorf("upload saved %d chunks, want the large files' %d", up.Uploaded, want)
	}
	res, err = Snapshot(context.Background(), st.root, filepath.Join(t.TempDir(), "snap2"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Hash.FilesRead != 0 {
		t.Errorf("second snapshot read %d files: %+v", res.Hash.FilesRead, res.Hash)
	}
}

// A small file that grows while it is read outgrows the small buffer its
// size chose: it is read again, whole, and recorded as it is after.
func TestSnapshotSaveSmallFileGrows(t *testing.T) {
	root := filepath.Join(t.TempDir(), "live")
	p := filepath.Join(root, "log")
	mustWrite(t, p, patterned(1000, 1), 0o644)
	os.Chtimes(p, ts(1), ts(1))
	grown := patterned(200<<10, 2)
	testMidReadHook = func(rel string, attempt int) {
		if attempt == 1 {
			mustWrite(t, p, grown, 0o644)
		}
	}
	t.Cleanup(func() { testMidReadHook = nil })
	store := newFakeStore()
	res, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "snap"), SnapshotOptions{Save: &SaveOptions{Store: store}})
	if err != nil {
		t.Fatal(err)
	}
	e := find(res.Entries, "log")
	if e == nil || e.Content != sha(grown) || e.Size != int64(len(grown)) || !store.HasBlob(sha(grown)) {
		t.Fatalf("recorded %+v, want the grown file, saved", e)
	}
	if res.Hash.Rereads < 1 {
		t.Errorf("%+v: the file was not read again", res.Hash)
	}
}
