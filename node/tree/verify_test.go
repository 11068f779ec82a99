package tree

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/crayfish-backup/crayfish/storage"
)

func TestVerify(t *testing.T) {
	root := t.TempDir()
	var entries []storage.FileEntry
	for _, f := range [][2]string{{"a.txt", "alpha"}, {"d/b.bin", "beta beta"}, {"empty", ""}} {
		name, data := f[0], f[1]
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		e := storage.FileEntry{Path: name, Type: storage.TypeFile, Size: int64(len(data))}
		if data != "" {
			e.Content = sha256.Sum256([]byte(data))
		}
		entries = append(entries, e)
	}
	entries = append(entries, storage.FileEntry{Path: "d", Type: storage.TypeDir})
	files, bytes, err := Verify(context.Background(), root, entries, 2)
	if err != nil || files != 3 || bytes != 14 {
		t.Fatalf("intact tree: %d files, %d bytes, %v", files, bytes, err)
	}
	// Same size, one byte changed: found.
	if err := os.WriteFile(filepath.Join(root, "d", "b.bin"), []byte("beta betA"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Verify(context.Background(), root, entries, 2); !errors.Is(err, ErrMismatch) {
		t.Fatalf("changed byte: %v", err)
	}
	// A missing file: found.
	if err := os.Remove(filepath.Join(root, "a.txt")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Verify(context.Background(), root, entries[:1], 2); !errors.Is(err, ErrMismatch) {
		t.Fatalf("missing file: %v", err)
	}
}
