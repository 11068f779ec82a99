package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.json")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFileAtomic(p, []byte(content)); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
	}
	if names, _ := os.ReadDir(filepath.Dir(p)); len(names) != 1 {
		t.Errorf("temporary files left: %v", names)
	}
	if err := WriteFileAtomic(filepath.Join(p, "under-a-file"), nil); err == nil {
		t.Error("a write below a regular file succeeded")
	}
}
