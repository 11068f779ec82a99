package tree

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
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

// fakeStore is an in-memory BlobStore and BlobSource keyed by chunk id. Like
// the real repository it verifies the SHA-256 of every blob it saves and
// keeps a copy, never the caller's buffer.
type fakeStore struct {
	mu    sync.Mutex
	blobs map[storage.ObjectID][]byte
	saves map[storage.ObjectID]int
	loads int

	saveErr   error         // if set, every SaveBlob fails with it
	saveDelay time.Duration // if set, every SaveBlob takes at least this long
	loadDelay time.Duration // if set, every LoadBlob takes at least this long

	saving, maxSaving   int // concurrent SaveBlob calls: now, at most
	loading, maxLoading int // concurrent LoadBlob calls: now, at most
	// bytes of the blobs concurrent LoadBlob calls return: now, at most
	loadingBytes, maxLoadingBytes int
}

func newFakeStore() *fakeStore {
	return &fakeStore{blobs: map[storage.ObjectID][]byte{}, saves: map[storage.ObjectID]int{}}
}

// put stores content as one blob, bypassing SaveBlob.
func (s *fakeStore) put(content []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[sha256.Sum256(content)] = slices.Clone(content)
}

func (s *fakeStore) HasBlob(id storage.ObjectID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blobs[id]
	return ok
}

func (s *fakeStore) SaveBlob(ctx context.Context, typ storage.BlobType, id storage.ObjectID, data []byte) (int64, error) {
	s.mu.Lock()
	s.saving++
	s.maxSaving = max(s.maxSaving, s.saving)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.saving--
		s.mu.Unlock()
	}()
	if err := sleepCtx(ctx, s.saveDelay); err != nil {
		return 0, err
	}
	if s.saveErr != nil {
		return 0, s.saveErr
	}
	if typ != storage.BlobData {
		return 0, fmt.Errorf("save %s: blob type %d, want data", id, typ)
	}
	if len(data) == 0 || len(data) > storage.ChunkSize || sha256.Sum256(data) != id {
		return 0, fmt.Errorf("save %s: %w", id, storage.ErrCorrupt)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[id] = slices.Clone(data) // the caller reuses data after we return
	s.saves[id]++
	return int64(len(data)/2 + 1), nil // pretend compression
}

func (s *fakeStore) LoadBlob(ctx context.Context, id storage.ObjectID) ([]byte, error) {
	s.mu.Lock()
	s.loads++
	s.loading++
	s.maxLoading = max(s.maxLoading, s.loading)
	data, ok := s.blobs[id]
	s.loadingBytes += len(data)
	s.maxLoadingBytes = max(s.maxLoadingBytes, s.loadingBytes)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.loading--
		s.loadingBytes -= len(data)
		s.mu.Unlock()
	}()
	if err := sleepCtx(ctx, s.loadDelay); err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("load %s: %w", id, storage.ErrNotFound)
	}
	return slices.Clone(data), nil
}

func (s *fakeStore) totalSaves() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.saves {
		n += c
	}
	return n
}

func (s *fakeStore) loadCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// sourceFunc adapts a function to BlobSource.
type sourceFunc func(ctx context.Context, id storage.ObjectID) ([]byte, error)

func (f sourceFunc) LoadBlob(ctx context.Context, id storage.ObjectID) ([]byte, error) {
	return f(ctx, id)
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

// chunksOf splits b into ChunkSize pieces and returns their SHA-256, the
// way the manifest records them, computed independently of the package.
func chunksOf(b []byte) []storage.ObjectID {
	var out []storage.ObjectID
	for off := 0; off < len(b); off += storage.ChunkSize {
		out = append(out, sha256.Sum256(b[off:min(off+storage.ChunkSize, len(b))]))
	}
	return out
}

// fileEntry is a valid manifest entry for a regular file holding content.
func fileEntry(p string, content []byte) storage.FileEntry {
	return storage.FileEntry{Path: p, Type: storage.TypeFile, Mode: 0o644, MTime: ts(1),
		Size: int64(len(content)), Content: sha(content), Chunks: chunksOf(content)}
}

// patterned returns n bytes that differ from chunk to chunk (seed varies
// the whole), so no two chunks of a test file deduplicate by accident.
func patterned(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/251+i/storage.ChunkSize*13) ^ seed
	}
	return b
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
			e.Type, e.Size, e.Content, e.Chunks = storage.TypeFile, int64(len(data)), sha(data), chunksOf(data)
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
		!slices.Equal(want.Chunks, got.Chunks) || want.LinkTarget != got.LinkTarget {
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
