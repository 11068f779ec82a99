package tree

import (
	"context"
	"errors"
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
	// One object is already in the store.
	exec := st.contents["a/exec.sh"]
	store.objects[sha(exec)] = exec

	// Distinct non-empty contents: dup1/dup2 share one, empty.txt has none.
	distinct := map[storage.ObjectID]int64{}
	for _, c := range st.contents {
		if len(c) > 0 {
			distinct[sha(c)] = int64(len(c))
		}
	}
	var distinctBytes int64
	for _, n := range distinct {
		distinctBytes += n
	}

	var last Progress
	stats, err := Upload(context.Background(), dst, res.Entries, store, UploadOptions{
		Concurrency: 3, Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	want := UploadStats{
		Uploaded: int64(len(distinct) - 1), UploadedBytes: distinctBytes - int64(len(exec)),
		AlreadyPresent: 1, AlreadyPresentBytes: int64(len(exec)),
	}
	want.StoredBytes = stats.StoredBytes
	if stats != want {
		t.Errorf("stats %+v, want %+v", stats, want)
	}
	if stats.StoredBytes <= 0 {
		t.Errorf("stored bytes %d", stats.StoredBytes)
	}
	if n := store.puts[sha([]byte("same bytes"))]; n != 1 {
		t.Errorf("duplicate content put %d times", n)
	}
	if n := store.puts[sha(exec)]; n != 0 {
		t.Errorf("present object put %d times", n)
	}
	for id, n := range distinct {
		if int64(len(store.objects[id])) != n {
			t.Errorf("object %s missing", id)
		}
	}
	if last.FilesDone != int64(len(distinct)) || last.FilesTotal != last.FilesDone || last.BytesDone != distinctBytes {
		t.Errorf("final progress %+v", last)
	}

	// A second upload finds everything.
	puts := store.totalPuts()
	stats, err = Upload(context.Background(), dst, res.Entries, store, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Uploaded != 0 || stats.AlreadyPresent != int64(len(distinct)) || store.totalPuts() != puts {
		t.Errorf("second upload: %+v, puts %d → %d", stats, puts, store.totalPuts())
	}
}

// A snapshot copy altered after it was hashed must not be stored under
// the old id: the store's verification fails and Upload names the file.
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
			if !strings.Contains(err.Error(), "a/b/deep.txt") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestUploadStopsAtFirstError(t *testing.T) {
	_, dst, res := snapshotFixture(t)
	boom := errors.New("boom")
	store := newFakeStore()
	store.putErr = boom
	_, err := Upload(context.Background(), dst, res.Entries, store, UploadOptions{Concurrency: 2})
	assertIs(t, err, boom)
	if !strings.Contains(err.Error(), "upload ") {
		t.Errorf("error %q has no context", err)
	}
}

func TestUploadRejectsUnsafeEntries(t *testing.T) {
	dir := t.TempDir()
	entries := []storage.FileEntry{{Path: "../etc/passwd", Type: storage.TypeFile, Size: 3, Content: sha([]byte("abc"))}}
	_, err := Upload(context.Background(), dir, entries, newFakeStore(), UploadOptions{})
	assertIs(t, err, ErrUnsafePath)
}

func TestUploadRateLimit(t *testing.T) {
	dir := t.TempDir()
	content := make([]byte, 100<<10)
	for i := range content {
		content[i] = byte(i)
	}
	mustWrite(t, filepath.Join(dir, "f"), content, 0o644)
	entries := []storage.FileEntry{{Path: "f", Type: storage.TypeFile, Size: int64(len(content)), Content: sha(content)}}

	// 200 KiB/s with a 4 KiB burst: 100 KiB needs about 0.48 s.
	lim := rate.NewLimiter(rate.Limit(200<<10), 4<<10)
	start := time.Now()
	if _, err := Upload(context.Background(), dir, entries, newFakeStore(), UploadOptions{Limiter: lim}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Errorf("upload took %v, limiter not applied", d)
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
