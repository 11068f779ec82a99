package worker

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

func TestCheckFreeSpace(t *testing.T) {
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "present"), make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []storage.FileEntry{
		{Path: "present", Type: storage.TypeFile, Size: 100}, // right size already: costs nothing
		{Path: "new", Type: storage.TypeFile, Size: 1000},    // must be written
		{Path: "dir", Type: storage.TypeDir},                 // free
		{Path: "dir/empty", Type: storage.TypeFile, Size: 0}, // free
	}
	free := func(n uint64) func(string) (uint64, error) {
		return func(string) (uint64, error) { return n, nil }
	}
	if err := checkFreeSpace(target, files, free(1000)); err != nil {
		t.Fatalf("1000 free for 1000 needed: %v", err)
	}
	err := checkFreeSpace(target, files, free(999))
	if !errors.Is(err, wire.ErrNoSpace) {
		t.Fatalf("999 free for 1000 needed: %v", err)
	}
	// The real statfs answers for a path that does not exist yet.
	if n, err := freeBytes(filepath.Join(target, "not", "yet")); err != nil || n == 0 {
		t.Fatalf("freeBytes: %d %v", n, err)
	}
}
