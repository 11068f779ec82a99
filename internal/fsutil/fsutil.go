// Package fsutil holds the file-system helpers several crayfish packages
// share. It is a leaf: standard library only.
package fsutil

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WriteFileAtomic replaces path with b so that a crash leaves either the
// old or the new content: temp file, fsync, rename, fsync dir. The file
// is private to its owner (0600).
func WriteFileAtomic(path string, b []byte) error { return WriteFileAtomicMode(path, b, 0o600) }

// WriteFileAtomicMode is WriteFileAtomic with the file's mode: one that
// another user's program reads (Cassandra, say) needs 0644.
func WriteFileAtomicMode(path string, b []byte, perm os.FileMode) error {
	return WriteAtomic(path, perm, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// WriteAtomic is WriteFileAtomicMode for content that write streams
// (through a buffer), so that a large file need not be held in memory.
func WriteAtomic(path string, perm os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 256<<10)
	if err := write(bw); err != nil {
		tmp.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Within reports whether path is dir or lies below it (both clean and
// absolute, or both relative to the same directory).
func Within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
