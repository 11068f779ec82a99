package tree

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/crayfish-backup/crayfish/storage"
)

func TestSnapshotRecordsTree(t *testing.T) {
	st := makeSourceTree(t)
	dst := filepath.Join(t.TempDir(), "snap")
	var (
		mu   sync.Mutex
		last Progress
	)
	res, err := Snapshot(context.Background(), st.root, dst, SnapshotOptions{Workers: 3, Progress: func(p Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}

	// Independent view of the live tree, minus what must be skipped.
	want := scanTree(t, st.root)
	if want["pipe"].Type != "special" {
		t.Fatalf("fixture: pipe is %q", want["pipe"].Type)
	}
	delete(want, "pipe")
	var paths []string
	for _, e := range res.Entries {
		paths = append(paths, e.Path)
		w, ok := want[e.Path]
		if !ok {
			t.Errorf("unexpected entry %s", e.Path)
			continue
		}
		if e.Type == storage.TypeSymlink {
			// Symlink mtimes are recorded but not compared by sameEntry.
			w.MTime = e.MTime
		}
		if err := sameEntry(w, e); err != nil {
			t.Error(err)
		}
		delete(want, e.Path)
	}
	for p := range want {
		t.Errorf("missing entry %s", p)
	}
	if !slices.IsSorted(paths) {
		t.Errorf("entries not sorted: %q", paths)
	}

	// Hashes against content the test wrote itself.
	for p, c := range st.contents {
		e := find(res.Entries, p)
		if e == nil || e.Content != sha(c) || e.Size != int64(len(c)) || !slices.Equal(e.Chunks, chunksOf(c)) {
			t.Errorf("%s: got %+v, want size %d hash %s", p, e, len(c), sha(c))
		}
		// A file of at most ChunkSize bytes is its only chunk.
		if len(c) > 0 && (len(e.Chunks) != 1 || e.Chunks[0] != e.Content) {
			t.Errorf("%s: chunks %v, want [content]", p, e.Chunks)
		}
	}
	if e := find(res.Entries, "empty.txt"); !e.Content.IsZero() || e.Chunks != nil {
		t.Errorf("empty file has content id %s, chunks %v", e.Content, e.Chunks)
	}
	if e := find(res.Entries, "suid"); e.Mode != 0o4755 {
		t.Errorf("suid mode %#o", e.Mode)
	}
	if e := find(res.Entries, "sgid"); e.Mode != 0o2755 {
		t.Errorf("sgid mode %#o", e.Mode)
	}
	if e := find(res.Entries, "sticky"); e.Mode != 0o1777 {
		t.Errorf("sticky mode %#o", e.Mode)
	}
	if e := find(res.Entries, "a/link-rel"); e.LinkTarget != "b/deep.txt" {
		t.Errorf("link-rel: %+v", e)
	}
	if e := find(res.Entries, "link-out-dir"); e == nil || e.Type != storage.TypeSymlink || e.LinkTarget != st.outside {
		t.Errorf("link-out-dir: %+v", e)
	}
	for _, e := range res.Entries {
		if strings.HasPrefix(e.Path, "link-out-dir/") {
			t.Errorf("followed a symlink out of root: %s", e.Path)
		}
	}

	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "pipe") {
		t.Errorf("warnings: %q", res.Warnings)
	}
	wantStats := storage.NodeStats{Files: int64(len(st.contents)), Dirs: 6, Symlinks: 3}
	for _, c := range st.contents {
		wantStats.Bytes += int64(len(c))
	}
	if res.Stats != wantStats {
		t.Errorf("stats %+v, want %+v", res.Stats, wantStats)
	}
	if last.FilesDone != last.FilesTotal || last.FilesTotal != wantStats.Files || last.BytesDone != wantStats.Bytes {
		t.Errorf("final progress %+v", last)
	}

	// Regular files are hard links of the live files (same filesystem).
	liveInfo, _ := os.Stat(filepath.Join(st.root, "big.bin"))
	snapInfo, _ := os.Stat(filepath.Join(dst, "big.bin"))
	if !os.SameFile(liveInfo, snapInfo) {
		t.Error("big.bin was not hard-linked")
	}
	if _, err := os.Lstat(filepath.Join(dst, "pipe")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("fifo copied into snapshot: %v", err)
	}
}

// Databases replace files (write new + rename) and delete old ones; a
// snapshot taken before must keep serving the old content to Upload.
func TestSnapshotSurvivesLiveReplaceAndDelete(t *testing.T) {
	st := makeSourceTree(t)
	dst := filepath.Join(t.TempDir(), "snap")
	res, err := Snapshot(context.Background(), st.root, dst, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(st.root, "a/b/deep.txt")
	tmp := deep + ".new"
	mustWrite(t, tmp, []byte("NEW content, other size"), 0o600)
	if err := os.Rename(tmp, deep); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(st.root, "big.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(st.root, "a")); err != nil {
		t.Fatal(err)
	}

	store := newFakeStore()
	if _, err := Upload(context.Background(), dst, res.Entries, store, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a/b/deep.txt", "big.bin"} {
		c := st.contents[p]
		if got := store.blobs[sha(c)]; !bytes.Equal(got, c) {
			t.Errorf("%s: store holds %d bytes, want the original %d", p, len(got), len(c))
		}
	}
}

func TestSnapshotRootErrors(t *testing.T) {
	base := t.TempDir()
	missing := filepath.Join(base, "no-such-root")
	_, err := Snapshot(context.Background(), missing, filepath.Join(base, "snap"), SnapshotOptions{})
	assertIs(t, err, ErrRootMissing)
	assertIs(t, err, fs.ErrNotExist)
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q does not name %s", err, missing)
	}
	if _, err := os.Lstat(filepath.Join(base, "snap")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("dst created for a missing root")
	}

	file := filepath.Join(base, "file")
	mustWrite(t, file, []byte("x"), 0o644)
	if _, err := Snapshot(context.Background(), file, filepath.Join(base, "snap"), SnapshotOptions{}); err == nil {
		t.Error("snapshot of a regular file succeeded")
	}
}

func TestSnapshotDestination(t *testing.T) {
	st := makeSourceTree(t)

	// Non-empty dst: refused and left alone.
	busy := t.TempDir()
	mustWrite(t, filepath.Join(busy, "keep"), []byte("mine"), 0o644)
	if _, err := Snapshot(context.Background(), st.root, busy, SnapshotOptions{}); err == nil {
		t.Error("non-empty dst accepted")
	}
	if string(readFile(t, filepath.Join(busy, "keep"))) != "mine" {
		t.Error("non-empty dst was modified")
	}

	// dst inside the root would snapshot itself.
	if _, err := Snapshot(context.Background(), st.root, filepath.Join(st.root, "a", "snap"), SnapshotOptions{}); err == nil {
		t.Error("dst inside root accepted")
	}

	// Existing empty dst is fine.
	empty := t.TempDir()
	if _, err := Snapshot(context.Background(), st.root, empty, SnapshotOptions{}); err != nil {
		t.Error(err)
	}
}

func TestSnapshotRootSymlinkIsResolved(t *testing.T) {
	st := makeSourceTree(t)
	link := filepath.Join(t.TempDir(), "root-link")
	mustSymlink(t, st.root, link)
	res, err := Snapshot(context.Background(), link, filepath.Join(t.TempDir(), "snap"), SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stats.Files != int64(len(st.contents)) {
		t.Errorf("files %d", res.Stats.Files)
	}
}

func TestSnapshotCancelRemovesDst(t *testing.T) {
	st := makeSourceTree(t)
	dst := filepath.Join(t.TempDir(), "snap")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Snapshot(ctx, st.root, dst, SnapshotOptions{})
	assertIs(t, err, context.Canceled)
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dst left behind: %v", err)
	}
}

// Across filesystems os.Link fails with EXDEV and Snapshot copies instead.
func TestSnapshotCopiesAcrossFilesystems(t *testing.T) {
	st := makeSourceTree(t)
	other, err := os.MkdirTemp("/dev/shm", "crayfish-tree-test-")
	if err != nil {
		t.Fatalf("no /dev/shm (needed for a second filesystem): %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var a, b syscall.Stat_t
	if syscall.Stat(st.root, &a) != nil || syscall.Stat(other, &b) != nil || a.Dev == b.Dev {
		t.Fatal("/dev/shm is on the same filesystem as the temp dir: the copy fallback cannot be exercised")
	}
	dst := filepath.Join(other, "snap")
	res, err := Snapshot(context.Background(), st.root, dst, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range st.contents {
		e := find(res.Entries, p)
		if e == nil || e.Content != sha(c) || !slices.Equal(e.Chunks, chunksOf(c)) {
			t.Errorf("%s: %+v", p, e)
		}
		if !bytes.Equal(readFile(t, filepath.Join(dst, p)), c) {
			t.Errorf("%s: copy differs", p)
		}
	}
	// The copy is independent: mtime/mode come from the live file.
	if e := find(res.Entries, "a/exec.sh"); e.Mode != 0o755 || !e.MTime.Equal(scanTree(t, st.root)["a/exec.sh"].MTime) {
		t.Errorf("exec.sh metadata %+v", e)
	}
}

// The manifest is JSON, which would silently mangle a name that is not
// UTF-8; such entries are skipped with a warning instead.
func TestSnapshotSkipsNonUTF8Names(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "ok"), []byte("x"), 0o644)
	mustWrite(t, filepath.Join(root, "bad\xff/inside"), []byte("y"), 0o644)
	res, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "snap"), SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 1 || res.Entries[0].Path != "ok" {
		t.Errorf("entries %+v", res.Entries)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "UTF-8") {
		t.Errorf("warnings %q", res.Warnings)
	}
}
