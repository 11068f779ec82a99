package tree

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/crayfish-backup/crayfish/storage"
)

func snapshotFixture(t *testing.T) (*sourceTree, string, *SnapshotResult) {
	t.Helper()
	st := makeSourceTree(t)
	dst := filepath.Join(t.TempDir(), "snap")
	res, err := Snapshot(context.Background(), st.root, dst, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st, dst, res
}

func TestUploadOnlyMissingAndDeduplicated(t *testing.T) {
	st, dst, res := snapshotFixture(t)
	store := newFakeStore()
	// One blob is already in the store.
	exec := st.contents["a/exec.sh"]
	store.put(exec)

	// Every fixture file fits in one chunk, so chunk ids are content ids.
	// Each chunk is counted once: uploaded, or skipped because the store
	// has it or an earlier file (dir2/dup2.txt before dup1.txt) had it.
	var chunks, totalBytes int64
	var files int64
	distinct := map[storage.ObjectID]int64{}
	for _, c := range st.contents {
		files++
		totalBytes += int64(len(c))
		if len(c) > 0 {
			chunks++
			distinct[sha(c)] = int64(len(c))
		}
	}
	var distinctBytes int64
	for _, n := range distinct {
		distinctBytes += n
	}
	same := int64(len("same bytes"))

	var last Progress
	stats, err := Upload(context.Background(), dst, res.Entries, store, UploadOptions{
		Concurrency: 3, Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	want := UploadStats{
		Uploaded: int64(len(distinct) - 1), UploadedBytes: distinctBytes - int64(len(exec)),
		AlreadyPresent: 2, AlreadyPresentBytes: int64(len(exec)) + same,
	}
	want.StoredBytes = stats.StoredBytes
	if stats != want {
		t.Errorf("stats %+v, want %+v", stats, want)
	}
	if stats.Uploaded+stats.AlreadyPresent != chunks || stats.UploadedBytes+stats.AlreadyPresentBytes != totalBytes {
		t.Errorf("stats %+v do not cover %d chunks of %d bytes", stats, chunks, totalBytes)
	}
	if stats.StoredBytes <= 0 {
		t.Errorf("stored bytes %d", stats.StoredBytes)
	}
	if n := store.saves[sha([]byte("same bytes"))]; n != 1 {
		t.Errorf("duplicate content saved %d times", n)
	}
	if n := store.saves[sha(exec)]; n != 0 {
		t.Errorf("present blob saved %d times", n)
	}
	for id, n := range distinct {
		if int64(len(store.blobs[id])) != n {
			t.Errorf("blob %s missing", id)
		}
	}
	// Progress covers all regular files (the empty one too) and all bytes.
	if last != (Progress{FilesDone: files, FilesTotal: files, BytesDone: totalBytes, BytesTotal: totalBytes}) {
		t.Errorf("final progress %+v, want %d files and %d bytes", last, files, totalBytes)
	}

	// A second upload finds everything.
	saves := store.totalSaves()
	stats, err = Upload(context.Background(), dst, res.Entries, store, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Uploaded != 0 || stats.AlreadyPresent != chunks || stats.AlreadyPresentBytes != totalBytes || store.totalSaves() != saves {
		t.Errorf("second upload: %+v, saves %d → %d", stats, saves, store.totalSaves())
	}
}

// A snapshot copy altered after it was hashed must not be stored under
// the old id: Upload checks what it reads and names the file and chunk.
func TestUploadDetectsChangedSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
	}{
		{"same size", "DEEP CONTENT\n"},
		{"other size", "deep content, now longer\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dst, res := snapshotFixture(t)
			// In place, as a mutable file would be (this also changes the
			// live file: they share the inode).
			if err := os.WriteFile(filepath.Join(dst, "a/b/deep.txt"), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			store := newFakeStore()
			_, err := Upload(context.Background(), dst, res.Entries, store, UploadOptions{})
			assertIs(t, err, storage.ErrCorrupt)
			if !strings.Contains(err.Error(), "a/b/deep.txt: chunk 0") {
				t.Errorf("error %q does not name the file and chunk", err)
			}
			if store.HasBlob(sha([]byte(tc.content))) {
				t.Error("changed content was stored")
			}
		})
	}
}

// One altered chunk in the middle of a large file is caught by the
// per-chunk check, not only by the store.
func TestUploadDetectsChangedChunk(t *testing.T) {
	root := t.TempDir()
	content := patterned(3*storage.ChunkSize+100, 1)
	mustWrite(t, filepath.Join(root, "db/big"), content, 0o644)
	dst := filepath.Join(t.TempDir(), "snap")
	res, err := Snapshot(context.Background(), root, dst, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dst, "db/big"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("flipped"), storage.ChunkSize+12345); err != nil {
		t.Fatal(err)
	}
	f.Close()
	store := newFakeStore()
	_, err = Upload(context.Background(), dst, res.Entries, store, UploadOptions{Concurrency: 1})
	assertIs(t, err, storage.ErrCorrupt)
	if !strings.Contains(err.Error(), "db/big: chunk 1:") {
		t.Errorf("error %q does not name the file and chunk 1", err)
	}
	e := find(res.Entries, "db/big")
	if store.HasBlob(e.Chunks[1]) {
		t.Error("altered chunk stored")
	}
	if !store.HasBlob(e.Chunks[0]) {
		t.Error("chunk 0, before the altered one, was not stored")
	}
}

func TestUploadStopsAtFirstError(t *testing.T) {
	_, dst, res := snapshotFixture(t)
	boom := errors.New("boom")
	store := newFakeStore()
	store.saveErr = boom
	_, err := Upload(context.Background(), dst, res.Entries, store, UploadOptions{Concurrency: 2})
	assertIs(t, err, boom)
	if !strings.Contains(err.Error(), "upload ") {
		t.Errorf("error %q has no context", err)
	}
}

func TestUploadRejectsUnsafeEntries(t *testing.T) {
	dir := t.TempDir()
	entries := []storage.FileEntry{fileEntry("../etc/passwd", []byte("abc"))}
	_, err := Upload(context.Background(), dir, entries, newFakeStore(), UploadOptions{})
	assertIs(t, err, ErrUnsafePath)

	// Chunk ids that do not match the size would make reads go astray.
	mustWrite(t, filepath.Join(dir, "f"), []byte("abc"), 0o644)
	bad := fileEntry("f", []byte("abc"))
	bad.Chunks = nil
	_, err = Upload(context.Background(), dir, []storage.FileEntry{bad}, newFakeStore(), UploadOptions{})
	assertIs(t, err, ErrInvalidEntry)
}

func TestUploadRateLimit(t *testing.T) {
	dir := t.TempDir()
	content := make([]byte, 100<<10)
	for i := range content {
		content[i] = byte(i)
	}
	mustWrite(t, filepath.Join(dir, "f"), content, 0o644)
	entries := []storage.FileEntry{fileEntry("f", content)}

	// 200 KiB/s with a 4 KiB burst: 100 KiB needs about 0.48 s.
	lim := rate.NewLimiter(rate.Limit(200<<10), 4<<10)
	start := time.Now()
	var waits int
	var waited time.Duration
	throttled := func(d time.Duration) { waits++; waited += d } // one chunk: one reader, no race
	if _, err := Upload(context.Background(), dir, entries, newFakeStore(), UploadOptions{Limiter: lim, Throttled: throttled}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Errorf("upload took %v, limiter not applied", d)
	}
	if waits < 10 || waited < 300*time.Millisecond {
		t.Errorf("the limiter's waits reported: %d, %v in all", waits, waited)
	}

	// A limiter that can never grant a byte is refused up front.
	if _, err := Upload(context.Background(), dir, entries, newFakeStore(), UploadOptions{Limiter: rate.NewLimiter(10, 0)}); err == nil {
		t.Error("zero-burst limiter accepted")
	}
}

func TestUploadCancelled(t *testing.T) {
	_, dst, res := snapshotFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Upload(ctx, dst, res.Entries, newFakeStore(), UploadOptions{})
	assertIs(t, err, context.Canceled)
}

func openFDs(t *testing.T) int {
	t.Helper()
	names, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

// Upload opens each directory of the snapshot once for the chunks below
// it, and closes every directory it opened, whether it succeeds or fails
// (when jobs holding a directory are dropped unrun).
func TestUploadClosesDirectories(t *testing.T) {
	root := filepath.Join(t.TempDir(), "live")
	for d := range 40 {
		for f := range 3 {
			mustWrite(t, filepath.Join(root, fmt.Sprintf("d%02d/f%d", d, f)), fmt.Appendf(nil, "%d/%d", d, f), 0o644)
		}
	}
	res, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s"), SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	failing := newFakeStore()
	failing.saveErr = errors.New("store down")
	if _, err := Upload(context.Background(), res.Dir, res.Entries, failing, UploadOptions{Concurrency: 3}); err == nil {
		t.Fatal("upload into a failing store succeeded")
	}
	store := newFakeStore()
	if _, err := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{Concurrency: 3}); err != nil {
		t.Fatal(err)
	}
	if store.totalSaves() != 120 {
		t.Errorf("%d saves, want 120", store.totalSaves())
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open before the uploads, %d after", before, after)
	}
}
