package tree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/crayfish-backup/crayfish/storage"
)

// smallFiles returns n small file entries in a few directories, and a
// store holding their content.
func smallFiles(n int) ([]storage.FileEntry, *fakeStore) {
	store := newFakeStore()
	var entries []storage.FileEntry
	for d := range 3 {
		entries = append(entries, storage.FileEntry{Path: fmt.Sprintf("d%d", d), Type: storage.TypeDir, Mode: 0o755, MTime: ts(d)})
	}
	for i := range n {
		c := fmt.Appendf(nil, "small file %d", i)
		store.put(c)
		e := fileEntry(fmt.Sprintf("d%d/f%05d", i%3, i), c)
		entries = append(entries, e)
	}
	return entries, store
}

// setSyncFS replaces syncfs for the test.
func setSyncFS(t *testing.T, f func(string) error) {
	old := syncFSFunc
	syncFSFunc = f
	t.Cleanup(func() { syncFSFunc = old })
}

// Small files are made durable a batch at a time: one syncfs per batch
// (and one at the end), and no file of a batch is under its real name
// before that batch was synced, while all of it is in its temporary file.
func TestRestoreSyncsInBatches(t *testing.T) {
	if !batchedSync {
		t.Fatal("this system has no syncfs")
	}
	const n = 2*batchFiles + 500
	entries, store := smallFiles(n)
	var syncs atomic.Int64
	setSyncFS(t, func(dir string) error { syncs.Add(1); return syncFS(dir) })
	var mu sync.Mutex
	var batches []int
	testBeforeRenames = func(files []pendingFile) {
		mu.Lock()
		batches = append(batches, len(files))
		mu.Unlock()
		for _, f := range files {
			if _, err := os.Lstat(f.p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s is under its real name before its batch was renamed (%v)", f.e.Path, err)
			}
			if b, err := os.ReadFile(f.tmp); err != nil || int64(len(b)) != f.e.Size || sha(b) != f.e.Content {
				t.Errorf("%s: synced temporary file incomplete (%d bytes, %v)", f.e.Path, len(b), err)
			}
		}
	}
	t.Cleanup(func() { testBeforeRenames = nil })

	target := filepath.Join(t.TempDir(), "target")
	st, err := Restore(context.Background(), target, entries, store, RestoreOptions{Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != n || st.Downloaded != n {
		t.Errorf("stats %+v", st)
	}
	assertTree(t, target, entries)
	if len(batches) != 3 || batches[0] != batchFiles || batches[1] != batchFiles || batches[2] != 500 {
		t.Errorf("batches of %v files, want %d, %d, 500", batches, batchFiles, batchFiles)
	}
	if got := syncs.Load(); got != 4 { // one filesystem: 3 batches and the end
		t.Errorf("%d syncfs calls, want 4", got)
	}
}

// A restore that fails part way (a missing blob, or a cancellation) leaves
// no file under its real name that is not complete, and no temporary file;
// the next restore finishes the job and keeps what is there.
func TestRestoreInterruptedLeavesNoTornFile(t *testing.T) {
	for _, how := range []string{"error", "cancel", "sync error"} {
		t.Run(how, func(t *testing.T) {
			entries, store := smallFiles(batchFiles + 300)
			target := filepath.Join(t.TempDir(), "target")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var loads atomic.Int64
			src := sourceFunc(func(ctx context.Context, id storage.ObjectID) ([]byte, error) {
				if loads.Add(1) == batchFiles+150 {
					switch how {
					case "error":
						return nil, fmt.Errorf("load %s: %w", id, storage.ErrNotFound)
					case "cancel":
						cancel()
					}
				}
				return store.LoadBlob(ctx, id)
			})
			if how == "sync error" {
				var syncs atomic.Int64
				setSyncFS(t, func(dir string) error {
					if syncs.Add(1) == 2 {
						return syscall.EIO
					}
					return syncFS(dir)
				})
			}
			if _, err := Restore(ctx, target, entries, src, RestoreOptions{Concurrency: 3}); err == nil {
				t.Fatal("restore succeeded")
			}
			byPath := map[string]storage.FileEntry{}
			for _, e := range entries {
				byPath[e.Path] = e
			}
			placed := 0
			err := filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(target, p)
				e, ok := byPath[filepath.ToSlash(rel)]
				if !ok {
					t.Errorf("%s left behind", rel)
					return nil
				}
				placed++
				if b := readFile(t, p); sha(b) != e.Content {
					t.Errorf("%s: torn (%d bytes)", rel, len(b))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if how == "sync error" && placed != batchFiles {
				t.Errorf("%d files placed, want the first batch only", placed)
			}
			setSyncFS(t, syncFS)
			st, err := Restore(context.Background(), target, entries, store, RestoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			assertTree(t, target, entries)
			if st.Kept != int64(placed) {
				t.Errorf("resumed restore kept %d files, %d were in place", st.Kept, placed)
			}
		})
	}
}

// Where syncfs(2) is refused (a seccomp filter), every file is fsynced
// instead, and syncfs is not tried again.
func TestRestoreWithoutSyncfs(t *testing.T) {
	entries, store := smallFiles(batchFiles + 10)
	var syncs atomic.Int64
	setSyncFS(t, func(string) error { syncs.Add(1); return syscall.EPERM })
	target := filepath.Join(t.TempDir(), "target")
	if _, err := Restore(context.Background(), target, entries, store, RestoreOptions{Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, entries)
	if syncs.Load() != 1 {
		t.Errorf("syncfs tried %d times", syncs.Load())
	}
}

// A temporary file of a restore that crashed before its batch was synced
// may be torn: it is an extra and goes, and the real name is written.
func TestRestoreRemovesTornTemporaryFiles(t *testing.T) {
	entries, store := smallFiles(10)
	target := filepath.Join(t.TempDir(), "target")
	e := entries[5]
	torn := filepath.Join(target, filepath.FromSlash(e.Path))
	mustWrite(t, filepath.Join(filepath.Dir(torn), strings.TrimSuffix(tempPattern(filepath.Base(torn)), "*")+"123"), []byte("sma"), 0o600)
	if _, err := Restore(context.Background(), target, entries, store, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, entries)
}

func TestInterleave(t *testing.T) {
	items := make([]int, 10)
	for i := range items {
		items[i] = i
	}
	got := interleave(items, 3) // segments 0-3, 4-7, 8-9
	want := []int{0, 4, 8, 1, 5, 9, 2, 6, 3, 7}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("interleave = %v, want %v", got, want)
	}
	for _, n := range []int{0, 1, 7, 8, 9, 100, 1001} {
		in := make([]int, n)
		for i := range in {
			in[i] = i
		}
		seen := map[int]bool{}
		for _, v := range interleave(in, 8) {
			seen[v] = true
		}
		if len(seen) != n {
			t.Errorf("n=%d: %d distinct items out", n, len(seen))
		}
	}
}

// A scratch restore (a drill's) syncs nothing, and still writes the tree.
func TestScratchRestoreSyncsNothing(t *testing.T) {
	entries, store := smallFiles(batchFiles + 10)
	var syncs atomic.Int64
	setSyncFS(t, func(dir string) error { syncs.Add(1); return syncFS(dir) })
	target := filepath.Join(t.TempDir(), "target")
	if _, err := Restore(context.Background(), target, entries, store, RestoreOptions{Concurrency: 4, Scratch: true}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, entries)
	if n := syncs.Load(); n != 0 {
		t.Errorf("%d syncfs calls in a scratch restore", n)
	}
}
