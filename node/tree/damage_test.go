package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/crayfish-backup/crayfish/storage"
)

// damageFixture is a backup of 300 small files and one four-chunk file,
// all in a fake store.
type damageFixture struct {
	entries  []storage.FileEntry
	contents map[string][]byte
	store    *fakeStore
}

func newDamageFixture() *damageFixture {
	f := &damageFixture{contents: map[string][]byte{}, store: newFakeStore()}
	f.entries = append(f.entries, storage.FileEntry{Path: "d", Type: storage.TypeDir, Mode: 0o755, MTime: ts(2)})
	for i := range 300 {
		p := fmt.Sprintf("d/f%03d", i)
		f.contents[p] = []byte(fmt.Sprintf("content of file %d\n", i))
	}
	f.contents["d/big.bin"] = patterned(3*storage.ChunkSize+5, 9)
	for p, c := range f.contents {
		f.entries = append(f.entries, fileEntry(p, c))
		for off := 0; off < len(c); off += storage.ChunkSize {
			f.store.put(c[off:min(off+storage.ChunkSize, len(c))])
		}
	}
	return f
}

func (f *damageFixture) chunk(p string, i int) storage.ObjectID { return chunksOf(f.contents[p])[i] }

// failing returns a source that fails the given chunks with their errors.
func (f *damageFixture) failing(errs map[storage.ObjectID]error) BlobSource {
	return sourceFunc(func(ctx context.Context, id storage.ObjectID) ([]byte, error) {
		if err, ok := errs[id]; ok {
			return nil, fmt.Errorf("blob %s: %w", id, err)
		}
		return f.store.LoadBlob(ctx, id)
	})
}

func TestRestoreSurvivesDamage(t *testing.T) {
	f := newDamageFixture()
	corruptSmall := f.chunk("d/f007", 0)
	src := f.failing(map[storage.ObjectID]error{
		corruptSmall:            storage.ErrCorrupt,
		f.chunk("d/f123", 0):    storage.ErrNotFound,
		f.chunk("d/big.bin", 1): storage.ErrNotFound,
		f.chunk("d/big.bin", 3): storage.ErrCorrupt,
	})
	target := t.TempDir()
	// An older f007 is there: a damaged restore must leave it as it was.
	mustMkdir(t, filepath.Join(target, "d"), 0o755)
	mustWrite(t, filepath.Join(target, "d/f007"), []byte("older content"), 0o644)

	st, err := Restore(context.Background(), target, f.entries, src, RestoreOptions{Concurrency: 4})
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("err %v, want ErrDamaged", err)
	}
	if got := readFile(t, filepath.Join(target, "d/f007")); string(got) != "older content" {
		t.Errorf("older d/f007 replaced by %q", got)
	}
	for _, p := range []string{"d/f123", "d/big.bin"} {
		if _, err := os.Lstat(filepath.Join(target, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("damaged %s is in the target (%v)", p, err)
		}
	}
	for p, c := range f.contents {
		if p == "d/f007" || p == "d/f123" || p == "d/big.bin" {
			continue
		}
		if got, err := os.ReadFile(filepath.Join(target, p)); err != nil || !bytes.Equal(got, c) {
			t.Errorf("%s not restored byte for byte (err %v)", p, err)
		}
	}
	assertNoTempFiles(t, target)
	if st.Files != int64(len(f.contents)-3) {
		t.Errorf("files restored %d, want %d", st.Files, len(f.contents)-3)
	}

	want := []DamagedFile{
		{Path: "d/big.bin", Chunks: []DamagedChunk{{Index: 1, ID: f.chunk("d/big.bin", 1), Missing: true}, {Index: 3, ID: f.chunk("d/big.bin", 3)}}},
		{Path: "d/f007", Chunks: []DamagedChunk{{Index: 0, ID: corruptSmall}}},
		{Path: "d/f123", Chunks: []DamagedChunk{{Index: 0, ID: f.chunk("d/f123", 0), Missing: true}}},
	}
	if len(st.Damaged) != len(want) {
		t.Fatalf("damaged %+v, want %d files", st.Damaged, len(want))
	}
	for i, w := range want {
		g := st.Damaged[i]
		if g.Path != w.Path || len(g.Chunks) != len(w.Chunks) {
			t.Errorf("damaged[%d] = %+v, want %+v", i, g, w)
			continue
		}
		for k, wc := range w.Chunks {
			gc := g.Chunks[k]
			if gc.Index != wc.Index || gc.ID != wc.ID || gc.Missing != wc.Missing || gc.Detail == "" {
				t.Errorf("%s chunk %d = %+v, want %+v", g.Path, k, gc, wc)
			}
		}
	}

	// The same restore once the damage is repaired completes the tree and
	// downloads only the three files.
	st, err = Restore(context.Background(), target, f.entries, f.store, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Downloaded != 3 || len(st.Damaged) != 0 {
		t.Errorf("second restore downloaded %d, damaged %v; want 3 and none", st.Downloaded, st.Damaged)
	}
	for p, c := range f.contents {
		if got := readFile(t, filepath.Join(target, p)); !bytes.Equal(got, c) {
			t.Errorf("%s wrong after the repaired restore", p)
		}
	}
}

// A source failure that is not damage (a timeout) still ends the restore
// with that error, and names no file damaged.
func TestRestoreTransientErrorIsNotDamage(t *testing.T) {
	f := newDamageFixture()
	timeout := errors.New("i/o timeout")
	src := f.failing(map[storage.ObjectID]error{
		f.chunk("d/f010", 0):    timeout,
		f.chunk("d/big.bin", 2): timeout,
	})
	target := t.TempDir()
	mustMkdir(t, filepath.Join(target, "d"), 0o755)
	mustWrite(t, filepath.Join(target, "d/f010"), []byte("older content"), 0o644)
	st, err := Restore(context.Background(), target, f.entries, src, RestoreOptions{})
	if !errors.Is(err, timeout) || errors.Is(err, ErrDamaged) {
		t.Fatalf("err %v, want the timeout and not ErrDamaged", err)
	}
	if len(st.Damaged) != 0 {
		t.Errorf("damaged %v after a transient error", st.Damaged)
	}
	if got := readFile(t, filepath.Join(target, "d/f010")); string(got) != "older content" {
		t.Errorf("older d/f010 replaced by %q", got)
	}
	assertNoTempFiles(t, target)
}
