package fsutil

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dirNames lists dir's entries by name.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// wantOnly fails unless dir holds exactly the named entries (no temp
// files left behind).
func wantOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	got := dirNames(t, dir)
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

func wantContent(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s holds %q, want %q", path, b, want)
	}
}

// A failing write callback returns its error, leaves no temp file and no
// new file, and leaves an existing file's content untouched, even when the
// callback had written part of the new content before failing.
func TestWriteAtomicCallbackFails(t *testing.T) {
	boom := errors.New("boom")
	t.Run("new file", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "f")
		err := WriteAtomic(p, 0o600, func(w io.Writer) error {
			if _, err := io.WriteString(w, "partial"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
		wantOnly(t, dir)
	})
	t.Run("existing file", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "f")
		if err := WriteFileAtomic(p, []byte("old content")); err != nil {
			t.Fatal(err)
		}
		// More than the 256 KiB buffer, so part of it reaches the temp
		// file before the failure.
		big := strings.Repeat("x", 600<<10)
		err := WriteAtomic(p, 0o600, func(w io.Writer) error {
			if _, err := io.WriteString(w, big); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
		wantContent(t, p, "old content")
		wantOnly(t, dir, "f")
	})
}

// While the new content is being written, the target still holds the old
// content in full: a reader never sees a partial file. The new content
// goes to a hidden temp file in the same directory (so the rename stays
// within one file system).
func TestWriteAtomicReaderSeesOldUntilRename(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	if err := WriteFileAtomic(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	var during []string
	err := WriteAtomic(p, 0o600, func(w io.Writer) error {
		for i := 0; i < 3; i++ {
			if _, err := io.WriteString(w, strings.Repeat("n", 200<<10)); err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			during = append(during, string(b))
		}
		temps, _ := filepath.Glob(filepath.Join(dir, ".f.json.tmp-*"))
		if len(temps) != 1 {
			t.Errorf("temp files during the write: %q, want one .f.json.tmp-*", temps)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range during {
		if s != "old" {
			t.Errorf("read %d during the write saw %d bytes, want the old content", i, len(s))
		}
	}
	wantContent(t, p, strings.Repeat("n", 600<<10))
	wantOnly(t, dir, "f.json")
}

func TestWriteAtomicMissingDir(t *testing.T) {
	parent := t.TempDir()
	p := filepath.Join(parent, "missing", "f")
	called := false
	err := WriteAtomic(p, 0o600, func(w io.Writer) error { called = true; return nil })
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want one wrapping fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(parent, "missing")) {
		t.Errorf("error %q does not name the directory", err)
	}
	if called {
		t.Error("write was called though no temp file could be created")
	}
	wantOnly(t, parent)
}

// A failed rename (the target is a directory) returns the error, removes
// the temp file and leaves the directory as it was.
func TestWriteAtomicRenameFails(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(p, "inner"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := WriteFileAtomic(p, []byte("content"))
	if err == nil {
		t.Fatal("writing over a non-empty directory succeeded")
	}
	var le *os.LinkError
	if !errors.As(err, &le) || le.Op != "rename" {
		t.Errorf("err = %v (%T), want the rename's *os.LinkError", err, err)
	}
	wantOnly(t, dir, "d")
	wantOnly(t, p, "inner")
}

// The result has exactly the mode asked for, whatever the umask and the
// mode of the file it replaces: WriteFileAtomic makes it private even
// when the old file was world-readable.
func TestWriteAtomicMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, tc := range []struct {
		write func() error
		want  fs.FileMode
	}{
		{func() error { return WriteFileAtomicMode(p, []byte("a"), 0o644) }, 0o644},
		{func() error { return WriteFileAtomic(p, []byte("b")) }, 0o600},
		{func() error { return WriteFileAtomicMode(p, []byte("c"), 0o640) }, 0o640},
		{func() error {
			return WriteAtomic(p, 0o604, func(w io.Writer) error { _, err := io.WriteString(w, "d"); return err })
		}, 0o604},
	} {
		if err := tc.write(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != tc.want {
			t.Errorf("mode %v, want %v", got, fs.FileMode(tc.want))
		}
	}
	wantContent(t, p, "d")
	wantOnly(t, dir, "f")
}

// An empty write produces an empty file (not no file).
func TestWriteAtomicEmpty(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFileAtomic(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(p, 0o600, func(io.Writer) error { return nil }); err != nil {
		t.Fatal(err)
	}
	wantContent(t, p, "")
	wantOnly(t, dir, "f")
}
