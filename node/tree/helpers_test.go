package tree

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage"
)

// fakeStore is an in-memory ObjectStore and ObjectSource that verifies
// content on Put like the real repository does.
type fakeStore struct {
	mu      sync.Mutex
	objects map[storage.ObjectID][]byte
	puts    map[storage.ObjectID]int
	gets    int
	putErr  error // if set, every Put fails with it
}

func newFakeStore() *fakeStore {
	return &fakeStore{objects: map[storage.ObjectID][]byte{}, puts: map[storage.ObjectID]int{}}
}

func (s *fakeStore) Has(ctx context.Context, id storage.ObjectID) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.objects[id]
	return ok, nil
}

func (s *fakeStore) Put(ctx context.Context, id storage.ObjectID, size int64, r io.Reader) (int64, error) {
	if s.putErr != nil {
		return 0, s.putErr
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	if int64(len(data)) != size || sha256.Sum256(data) != id {
		return 0, fmt.Errorf("put %s: %w", id, storage.ErrCorrupt)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[id] = data
	s.puts[id]++
	return int64(len(data)/2 + 1), nil // pretend compression
}

func (s *fakeStore) Get(ctx context.Context, id storage.ObjectID, w io.Writer) (int64, error) {
	s.mu.Lock()
	data, ok := s.objects[id]
	s.gets++
	s.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("get %s: %w", id, storage.ErrNotFound)
	}
	// Write in small chunks to exercise streaming.
	var n int64
	for len(data) > 0 {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		chunk := data[:min(len(data), 1000)]
		m, err := w.Write(chunk)
		n += int64(m)
		if err != nil {
			return n, err
		}
		data = data[m:]
	}
	return n, nil
}

func (s *fakeStore) totalPuts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.puts {
		n += c
	}
	return n
}

// sourceFunc adapts a function to ObjectSource.
type sourceFunc func(ctx context.Context, id storage.ObjectID, w io.Writer) (int64, error)

func (f sourceFunc) Get(ctx context.Context, id storage.ObjectID, w io.Writer) (int64, error) {
	return f(ctx, id, w)
}

// Fixed timestamps with nanoseconds, to check they survive exactly.
func ts(i int) time.Time { return time.Unix(1_700_000_000+int64(i)*1000, int64(123_456_789+i)).UTC() }

func mustWrite(t testing.TB, p string, content []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t testing.TB, p string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t testing.TB, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func sha(b []byte) storage.ObjectID {
	if len(b) == 0 {
		return storage.ObjectID{}
	}
	return sha256.Sum256(b)
}

// sourceTree describes the fixture used by most tests.
type sourceTree struct {
	root     string
	outside  string            // a directory outside root that symlinks point to
	contents map[string][]byte // regular files by path
}

var (
	bigContent = func() []byte {
		b := make([]byte, 1<<20+17)
		for i := range b {
			b[i] = byte(i*7 + i/251)
		}
		return b
	}()
	unicodeName = "ünï cödé file.txt"
)

// makeSourceTree builds a tree with nested dirs, an empty dir, an empty
// file, a UTF-8 name with spaces, duplicate content, special mode bits,
// symlinks (inside and outside) and a FIFO. Every file and dir gets a fixed
// mtime.
func makeSourceTree(t testing.TB) *sourceTree {
	t.Helper()
	base := t.TempDir()
	st := &sourceTree{root: filepath.Join(base, "live"), outside: filepath.Join(base, "outside"),
		contents: map[string][]byte{
			"a/b/deep.txt":  []byte("deep content\n"),
			"a/exec.sh":     []byte("#!/bin/sh\necho hi\n"),
			"empty.txt":     {},
			unicodeName:     []byte("unicode ✓\n"),
			"dup1.txt":      []byte("same bytes"),
			"dir2/dup2.txt": []byte("same bytes"),
			"big.bin":       bigContent,
			"suid":          []byte("setuid program"),
		}}
	modes := map[string]fs.FileMode{"a/b/deep.txt": 0o600, "a/exec.sh": 0o755, "suid": 0o755 | fs.ModeSetuid}
	for p, c := range st.contents {
		m, ok := modes[p]
		if !ok {
			m = 0o644
		}
		mustWrite(t, filepath.Join(st.root, p), c, m)
	}
	mustMkdir(t, filepath.Join(st.root, "empty"), 0o700)
	mustMkdir(t, filepath.Join(st.root, "sgid"), 0o755|fs.ModeSetgid)
	mustMkdir(t, filepath.Join(st.root, "sticky"), 0o777|fs.ModeSticky)
	mustMkdir(t, filepath.Join(st.root, "a/b"), 0o750)
	mustWrite(t, filepath.Join(st.outside, "secret"), []byte("outside"), 0o644)
	mustSymlink(t, "b/deep.txt", filepath.Join(st.root, "a/link-rel"))
	mustSymlink(t, st.outside, filepath.Join(st.root, "link-out-dir"))
	mustSymlink(t, filepath.Join(st.outside, "secret"), filepath.Join(st.root, "link-out-file"))
	if err := syscall.Mkfifo(filepath.Join(st.root, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Times last, deepest first, since creating children changes a dir's mtime.
	var paths []string
	filepath.WalkDir(st.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != st.root && d.Type()&fs.ModeSymlink == 0 {
			paths = append(paths, p)
		}
		return err
	})
	for i, p := range slices.Backward(paths) {
		if err := os.Chtimes(p, ts(i), ts(i)); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// scanTree lists dir the way a manifest would describe it, computing hashes
// itself so tests do not depend on the code under test.
func scanTree(t testing.TB, dir string) map[string]storage.FileEntry {
	t.Helper()
	out := map[string]storage.FileEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := storage.FileEntry{Path: filepath.ToSlash(rel), Mode: unixMode(fi.Mode()), MTime: fi.ModTime()}
		switch {
		case fi.IsDir():
			e.Type = storage.TypeDir
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Type, e.Size, e.Content = storage.TypeFile, int64(len(data)), sha(data)
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = storage.TypeSymlink
			e.LinkTarget, _ = os.Readlink(p)
		default:
			e.Type = "special"
		}
		out[e.Path] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameEntry compares what a restore must reproduce. Symlink times are not
// restored, so they are not compared.
func sameEntry(want, got storage.FileEntry) error {
	if want.Type != got.Type || want.Size != got.Size || want.Content != got.Content ||
		want.LinkTarget != got.LinkTarget {
		return fmt.Errorf("%s: got %+v, want %+v", want.Path, got, want)
	}
	if want.Type != storage.TypeSymlink && (want.Mode != got.Mode || !want.MTime.Equal(got.MTime)) {
		return fmt.Errorf("%s: got mode %#o mtime %v, want mode %#o mtime %v",
			want.Path, got.Mode, got.MTime, want.Mode, want.MTime)
	}
	return nil
}

// assertTree checks that dir holds every entry, and nothing else unless
// extras lists it.
func assertTree(t testing.TB, dir string, entries []storage.FileEntry, extras ...string) {
	t.Helper()
	got := scanTree(t, dir)
	for _, want := range entries {
		g, ok := got[want.Path]
		if !ok {
			t.Errorf("%s: missing", want.Path)
			continue
		}
		if err := sameEntry(want, g); err != nil {
			t.Error(err)
		}
		delete(got, want.Path)
	}
	for _, x := range extras {
		if _, ok := got[x]; !ok {
			t.Errorf("extra %s was removed", x)
		}
		delete(got, x)
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		t.Errorf("unexpected %s (%s)", p, got[p].Type)
	}
}

// backup snapshots and uploads st into a new fake store.
func backup(t testing.TB, root string) ([]storage.FileEntry, *fakeStore) {
	t.Helper()
	snap := filepath.Join(t.TempDir(), "snap")
	res, err := Snapshot(context.Background(), root, snap, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	store := newFakeStore()
	if _, err := Upload(context.Background(), snap, res.Entries, store, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	return res.Entries, store
}

func find(entries []storage.FileEntry, p string) *storage.FileEntry {
	for i := range entries {
		if entries[i].Path == p {
			return &entries[i]
		}
	}
	return nil
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v: want errors.Is %v", err, target)
	}
}
