package tree

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage"
)

func countFiles(entries []storage.FileEntry) (files, nonEmpty int64) {
	for _, e := range entries {
		if e.Type == storage.TypeFile {
			files++
			if e.Size > 0 {
				nonEmpty++
			}
		}
	}
	return files, nonEmpty
}

func TestRestoreIntoEmptyDir(t *testing.T) {
	st := makeSourceTree(t)
	entries, store := backup(t, st.root)
	target := filepath.Join(t.TempDir(), "new", "target") // missing: created

	var last Progress
	stats, err := Restore(context.Background(), target, entries, store, RestoreOptions{
		Progress: func(p Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, entries)

	files, nonEmpty := countFiles(entries)
	want := RestoreStats{Files: files, Dirs: 6, Symlinks: 3, Downloaded: nonEmpty}
	for _, e := range entries {
		want.DownloadedBytes += e.Size
	}
	if !reflect.DeepEqual(stats, want) {
		t.Errorf("stats %+v, want %+v", stats, want)
	}
	if last.FilesDone != files || last.FilesTotal != files || last.BytesDone != want.DownloadedBytes {
		t.Errorf("final progress %+v", last)
	}
	// Symlinks are data: restored as written, pointing outside included.
	if got, _ := os.Readlink(filepath.Join(target, "link-out-file")); got != filepath.Join(st.outside, "secret") {
		t.Errorf("link-out-file -> %q", got)
	}
	assertNoTempFiles(t, target)
}

func TestRestoreOverModifiedTree(t *testing.T) {
	st := makeSourceTree(t)
	entries, store := backup(t, st.root)
	target := t.TempDir()
	if _, err := Restore(context.Background(), target, entries, store, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	in := func(p string) string { return filepath.Join(target, p) }

	// Changed content, same size: only the hash tells.
	mustWrite(t, in("a/b/deep.txt"), []byte("DEEP CONTENT\n"), 0o600)
	// Same content, other metadata: kept, metadata fixed.
	if err := os.Chmod(in("a/exec.sh"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(in("a/exec.sh"), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	// Extras, including a temp file of an interrupted restore.
	mustWrite(t, in("extra.txt"), []byte("extra"), 0o644)
	mustWrite(t, in("extradir/x/y.txt"), []byte("extra"), 0o644)
	mustWrite(t, in("a/.deep.txt.crayfish-tmp-123"), []byte("partial"), 0o600)
	// A file where a dir should be.
	if err := os.RemoveAll(in("empty")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, in("empty"), []byte("not a dir"), 0o644)
	// A dir (with content) where a file should be.
	if err := os.Remove(in("empty.txt")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, in("empty.txt/sub/f"), []byte("in the way"), 0o644)
	// A regular file where a symlink should be, and a symlink where a file should be.
	if err := os.Remove(in("a/link-rel")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, in("a/link-rel"), []byte("not a link"), 0o644)
	if err := os.Remove(in("dup1.txt")); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "big.bin", in("dup1.txt"))

	stats, err := Restore(context.Background(), target, entries, store, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, entries)

	files, _ := countFiles(entries)
	// deep.txt (changed), empty.txt (was a dir) and dup1.txt (was a symlink) are rewritten.
	if stats.Kept != files-3 || stats.Files != files {
		t.Errorf("kept %d of %d files, want %d", stats.Kept, stats.Files, files-3)
	}
	// extra.txt, extradir, extradir/x, extradir/x/y.txt, the temp file,
	// empty.txt/sub and empty.txt/sub/f.
	if stats.Removed != 7 {
		t.Errorf("removed %d, want 7", stats.Removed)
	}
	if stats.Downloaded != 2 { // deep.txt and dup1.txt; empty.txt needs no download
		t.Errorf("downloaded %d, want 2", stats.Downloaded)
	}
	assertNoTempFiles(t, target)

	// A third restore keeps everything and downloads nothing.
	loads := store.loadCount()
	stats, err = Restore(context.Background(), target, entries, store, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Kept != files || stats.Downloaded != 0 || stats.Removed != 0 || store.loadCount() != loads {
		t.Errorf("idempotent restore: %+v, loads %d → %d", stats, loads, store.loadCount())
	}
	assertTree(t, target, entries)
}

func TestRestoreKeepExtra(t *testing.T) {
	st := makeSourceTree(t)
	entries, store := backup(t, st.root)
	target := t.TempDir()
	mustWrite(t, filepath.Join(target, "extra.txt"), []byte("extra"), 0o644)
	mustWrite(t, filepath.Join(target, "a/extra/y.txt"), []byte("extra"), 0o644)
	stats, err := Restore(context.Background(), target, entries, store, RestoreOptions{KeepExtra: true})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Removed != 0 {
		t.Errorf("removed %d", stats.Removed)
	}
	// "a" gets its recorded mtime after the extras were kept inside it.
	assertTree(t, target, entries, "extra.txt", "a/extra", "a/extra/y.txt")
}

// TestRestoreLeavesUnselectedAlone: with the backup's Include/Exclude
// patterns, what they do not select is not an extra: an excluded file, an
// excluded directory's content and a file inside an extra directory all
// stay, while a selected extra is removed.
func TestRestoreLeavesUnselectedAlone(t *testing.T) {
	st := makeSourceTree(t)
	entries, store := backup(t, st.root)
	target := t.TempDir()
	mustWrite(t, filepath.Join(target, "app.log"), []byte("log"), 0o644)
	mustWrite(t, filepath.Join(target, "cache/blob"), []byte("cache"), 0o644)
	mustWrite(t, filepath.Join(target, "gone/kept.log"), []byte("log"), 0o644)
	mustWrite(t, filepath.Join(target, "gone/removed.txt"), []byte("x"), 0o644)
	mustWrite(t, filepath.Join(target, "extra.txt"), []byte("x"), 0o644)
	stats, err := Restore(context.Background(), target, entries, store, RestoreOptions{
		Exclude: []string{"**/*.log", "cache"}})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Removed != 2 {
		t.Errorf("removed %d, want 2 (gone/removed.txt, extra.txt)", stats.Removed)
	}
	for _, gone := range []string{"extra.txt", "gone/removed.txt"} {
		if _, err := os.Lstat(filepath.Join(target, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want removed", gone, err)
		}
	}
	assertTree(t, target, entries, "app.log", "cache", "cache/blob", "gone", "gone/kept.log")
	if _, err := Restore(context.Background(), target, entries, store, RestoreOptions{Exclude: []string{"../x"}}); !errors.Is(err, ErrBadPattern) {
		t.Errorf("bad pattern: %v", err)
	}
}

func TestRestoreRejectsHostileEntries(t *testing.T) {
	okFile := storage.FileEntry{Path: "ok.txt", Type: storage.TypeFile, Mode: 0o644}
	file := func(p string) storage.FileEntry {
		return storage.FileEntry{Path: p, Type: storage.TypeFile, Mode: 0o644}
	}
	for _, tc := range []struct {
		name    string
		entries []storage.FileEntry
		want    error
	}{
		{"dotdot", []storage.FileEntry{okFile, file("../escape")}, ErrUnsafePath},
		{"absolute", []storage.FileEntry{okFile, file("/abs")}, ErrUnsafePath},
		{"dotdot inside", []storage.FileEntry{okFile, file("a/../../b")}, ErrUnsafePath},
		{"unclean", []storage.FileEntry{okFile, file("a//b")}, ErrUnsafePath},
		{"dot prefix", []storage.FileEntry{okFile, file("./a")}, ErrUnsafePath},
		{"trailing slash", []storage.FileEntry{okFile, file("a/")}, ErrUnsafePath},
		{"empty", []storage.FileEntry{okFile, file("")}, ErrUnsafePath},
		{"dot", []storage.FileEntry{okFile, {Path: ".", Type: storage.TypeDir}}, ErrUnsafePath},
		{"nul", []storage.FileEntry{okFile, file("a\x00b")}, ErrUnsafePath},
		{"below file", []storage.FileEntry{okFile, file("x"), file("x/y")}, ErrUnsafePath},
		{"below file listed first", []storage.FileEntry{file("x/y/z"), okFile, file("x")}, ErrUnsafePath},
		{"below symlink", []storage.FileEntry{okFile,
			{Path: "x", Type: storage.TypeSymlink, LinkTarget: "/etc"}, {Path: "x/y", Type: storage.TypeDir}}, ErrUnsafePath},
		{"duplicate", []storage.FileEntry{okFile, {Path: "d", Type: storage.TypeDir}, file("d")}, ErrInvalidEntry},
		{"negative size", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile, Size: -1}}, ErrInvalidEntry},
		{"huge size", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile, Size: 1<<50 + 1, Content: sha([]byte("x"))}}, ErrInvalidEntry},
		{"no content id", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile, Size: 5}}, ErrInvalidEntry},
		{"no chunks", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile, Size: 5, Content: sha([]byte("hello"))}}, ErrInvalidEntry},
		{"chunk is not content", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile, Size: 5,
			Content: sha([]byte("hello")), Chunks: []storage.ObjectID{sha([]byte("world"))}}}, ErrInvalidEntry},
		{"too few chunks", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile, Size: storage.ChunkSize + 1,
			Content: sha([]byte("x")), Chunks: []storage.ObjectID{sha([]byte("x"))}}}, ErrInvalidEntry},
		{"too many chunks", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile, Size: 5,
			Content: sha([]byte("hello")), Chunks: []storage.ObjectID{sha([]byte("hello")), sha([]byte("x"))}}}, ErrInvalidEntry},
		{"zero chunk id", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile, Size: storage.ChunkSize + 1,
			Content: sha([]byte("x")), Chunks: []storage.ObjectID{sha([]byte("x")), {}}}}, ErrInvalidEntry},
		{"empty file with chunk", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile,
			Chunks: []storage.ObjectID{sha([]byte("x"))}}}, ErrInvalidEntry},
		{"dir with chunks", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeDir,
			Chunks: []storage.ObjectID{sha([]byte("x"))}}}, ErrInvalidEntry},
		{"mode bits", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeFile, Mode: 0o170644}}, ErrInvalidEntry},
		{"unknown type", []storage.FileEntry{okFile, {Path: "n", Type: "fifo"}}, ErrInvalidEntry},
		{"empty link", []storage.FileEntry{okFile, {Path: "n", Type: storage.TypeSymlink}}, ErrInvalidEntry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			target := filepath.Join(base, "target")
			mustWrite(t, filepath.Join(target, "sentinel"), []byte("untouched"), 0o644)
			before := scanTree(t, base)
			src := sourceFunc(func(context.Context, storage.ObjectID) ([]byte, error) {
				t.Error("source used")
				return nil, errors.New("no")
			})
			_, err := Restore(context.Background(), target, tc.entries, src, RestoreOptions{})
			assertIs(t, err, tc.want)
			after := scanTree(t, base)
			if len(after) != len(before) {
				t.Errorf("tree changed: %d entries, was %d", len(after), len(before))
			}
			for p, e := range before {
				if err := sameEntry(e, after[p]); err != nil {
					t.Error(err)
				}
			}
			// A missing target is not even created.
			missing := filepath.Join(base, "missing")
			_, err = Restore(context.Background(), missing, tc.entries, src, RestoreOptions{})
			assertIs(t, err, tc.want)
			if _, err := os.Lstat(missing); !errors.Is(err, fs.ErrNotExist) {
				t.Error("target created for an invalid manifest")
			}
		})
	}
}

// A symlink planted in the target where the backup has a directory must be
// replaced, never written through.
func TestRestoreDoesNotFollowSymlinksInTarget(t *testing.T) {
	content := []byte("restored")
	store := newFakeStore()
	store.put(content)
	f := func(p string) storage.FileEntry { return fileEntry(p, content) }
	for _, tc := range []struct {
		name    string
		link    string // symlink planted in target, pointing to outside
		entries []storage.FileEntry
		check   string // path under target that must be a real file afterwards
	}{
		{"listed dir", "evil", []storage.FileEntry{{Path: "evil", Type: storage.TypeDir, Mode: 0o755, MTime: ts(2)}, f("evil/f")}, "evil/f"},
		{"implicit ancestor", "a", []storage.FileEntry{f("a/b/f")}, "a/b/f"},
		{"file over link", "victim", []storage.FileEntry{f("victim")}, "victim"},
	} {
		for _, keep := range []bool{false, true} {
			name := tc.name
			if keep {
				name += "/keep-extra"
			}
			t.Run(name, func(t *testing.T) {
				outside := t.TempDir()
				mustWrite(t, filepath.Join(outside, "victim"), []byte("do not touch"), 0o644)
				target := t.TempDir()
				linkTo := outside
				if tc.link == "victim" {
					linkTo = filepath.Join(outside, "victim")
				}
				mustSymlink(t, linkTo, filepath.Join(target, tc.link))

				if _, err := Restore(context.Background(), target, tc.entries, store, RestoreOptions{KeepExtra: keep}); err != nil {
					t.Fatal(err)
				}
				outsideTree := scanTree(t, outside)
				if len(outsideTree) != 1 || string(readFile(t, filepath.Join(outside, "victim"))) != "do not touch" {
					t.Errorf("wrote outside the target: %v", outsideTree)
				}
				fi, err := os.Lstat(filepath.Join(target, tc.link))
				if err != nil || fi.Mode()&fs.ModeSymlink != 0 {
					t.Errorf("%s is still a symlink (%v)", tc.link, err)
				}
				if !bytes.Equal(readFile(t, filepath.Join(target, tc.check)), content) {
					t.Errorf("%s not restored", tc.check)
				}
			})
		}
	}
}

func TestRestoreVerifiesContent(t *testing.T) {
	good := []byte("the right content")
	entries := []storage.FileEntry{{Path: "d", Type: storage.TypeDir, Mode: 0o755}, fileEntry("d/f", good)}
	for _, tc := range []struct {
		name string
		sent []byte
	}{
		{"wrong bytes", []byte("the wrong content")},
		{"too short", []byte("the right")},
		{"too long", []byte("the right content and more")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := t.TempDir()
			mustWrite(t, filepath.Join(target, "d/f"), []byte("old"), 0o644)
			src := sourceFunc(func(context.Context, storage.ObjectID) ([]byte, error) {
				return tc.sent, nil
			})
			_, err := Restore(context.Background(), target, entries, src, RestoreOptions{})
			assertIs(t, err, ErrVerify)
			if !strings.Contains(err.Error(), "d/f") {
				t.Errorf("error %q does not name the file", err)
			}
			if got := readFile(t, filepath.Join(target, "d/f")); string(got) != "old" {
				t.Errorf("old file replaced by %q", got)
			}
			assertNoTempFiles(t, target)
		})
	}
}

func TestRestoreMissingObject(t *testing.T) {
	c := []byte("content")
	entries := []storage.FileEntry{fileEntry("f", c)}
	st, err := Restore(context.Background(), t.TempDir(), entries, newFakeStore(), RestoreOptions{})
	assertIs(t, err, ErrDamaged)
	if len(st.Damaged) != 1 || st.Damaged[0].Path != "f" || st.Damaged[0].Chunks[0].ID != entries[0].Chunks[0] || !st.Damaged[0].Chunks[0].Missing {
		t.Errorf("damaged %+v, want f's chunk 0 missing", st.Damaged)
	}
}

func TestRestoreEmptyFilesNeedNoSource(t *testing.T) {
	entries := []storage.FileEntry{
		{Path: "d", Type: storage.TypeDir, Mode: 0o711, MTime: ts(1)},
		{Path: "d/empty", Type: storage.TypeFile, Mode: 0o640, MTime: ts(2)},
	}
	src := sourceFunc(func(context.Context, storage.ObjectID) ([]byte, error) {
		t.Error("source used for an empty file")
		return nil, errors.New("no")
	})
	target := t.TempDir()
	stats, err := Restore(context.Background(), target, entries, src, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Files != 1 || stats.Downloaded != 0 {
		t.Errorf("stats %+v", stats)
	}
	assertTree(t, target, entries)
}

func TestRestoreCancel(t *testing.T) {
	st := makeSourceTree(t)
	entries, store := backup(t, st.root)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Restore(ctx, t.TempDir(), entries, store, RestoreOptions{})
	assertIs(t, err, context.Canceled)

	// Cancelled while a download hangs: returns promptly.
	ctx, cancel = context.WithCancel(context.Background())
	started := make(chan struct{}, 100)
	src := sourceFunc(func(ctx context.Context, id storage.ObjectID) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, errors.New("source gave up") // hides the cause on purpose
	})
	done := make(chan error)
	target := t.TempDir()
	go func() {
		_, err := Restore(ctx, target, entries, src, RestoreOptions{})
		done <- err
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		assertIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("restore did not stop after cancel")
	}
	assertNoTempFiles(t, target)
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	for p := range scanTree(t, dir) {
		if strings.Contains(p, tempSuffix) {
			t.Errorf("temp file left: %s", p)
		}
	}
}
