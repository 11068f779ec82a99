//go:build linux

package fsutil

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// tempFD finds the descriptor of WriteAtomic's temp file for path, from
// within its write callback.
func tempFD(t *testing.T, path string) int {
	t.Helper()
	temps, err := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*"))
	if err != nil || len(temps) != 1 {
		t.Fatalf("temp files %q, %v; want one", temps, err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("no /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == temps[0] {
			fd, _ := strconv.Atoi(e.Name())
			return fd
		}
	}
	t.Fatalf("no descriptor open on %s", temps[0])
	return -1
}

// replaceFD makes fd refer to what open returns: the temp file's
// descriptor now fails the way a faulty disk would. dup3 replaces it
// atomically, so no other goroutine can get the number meanwhile.
func replaceFD(t *testing.T, fd int, open func() (int, error)) {
	t.Helper()
	nfd, err := open()
	if err != nil {
		t.Fatalf("cannot open the replacement: %v", err)
	}
	defer syscall.Close(nfd)
	if err := syscall.Dup3(nfd, fd, syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
}

// Each step after the write (flushing the buffer, setting the mode,
// fsync) can fail; WriteAtomic returns that error, leaves the old content
// and removes the temp file.
func TestWriteAtomicIOErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string // buffered before the failure
		open    func() (int, error)
		want    error
	}{
		// A full disk: the buffered content reaches the file only at
		// Flush, which fails with ENOSPC.
		{"flush", "new content", func() (int, error) {
			return syscall.Open("/dev/full", syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
		}, syscall.ENOSPC},
		// Nothing buffered, so Flush succeeds; fchmod on an O_PATH
		// descriptor fails with EBADF.
		{"chmod", "", func() (int, error) {
			return syscall.Open(os.TempDir(), unix.O_PATH|syscall.O_CLOEXEC, 0)
		}, syscall.EBADF},
		// fchmod works on a pipe; fsync does not (EINVAL).
		{"sync", "", func() (int, error) {
			var p [2]int
			if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
				return -1, err
			}
			syscall.Close(p[0])
			return p[1], nil
		}, syscall.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if err := WriteFileAtomic(p, []byte("old")); err != nil {
				t.Fatal(err)
			}
			err := WriteAtomic(p, 0o600, func(w io.Writer) error {
				if _, err := io.WriteString(w, tc.content); err != nil {
					return err
				}
				replaceFD(t, tempFD(t, p), tc.open)
				return nil
			})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			wantContent(t, p, "old")
			if names := dirNames(t, dir); strings.Join(names, ",") != "f" {
				t.Errorf("%s holds %q after a failed %s, want only f", dir, names, tc.name)
			}
		})
	}
}
