package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// freeBytes reports the bytes available to this process on the filesystem
// holding path (or its nearest existing ancestor).
func freeBytes(path string) (uint64, error) {
	for p := path; ; p = filepath.Dir(p) {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			return st.Bavail * uint64(st.Bsize), nil
		}
		if !errors.Is(err, os.ErrNotExist) || p == filepath.Dir(p) {
			return 0, fmt.Errorf("free space of %s: %w", path, err)
		}
	}
}

// checkFreeSpace refuses a restore whose files would not fit: it counts the
// size of every file not already present at its path with the right size
// (a cheap stand-in for "needs downloading"; files kept by content cost
// nothing) and compares with the free space of target's filesystem.
func checkFreeSpace(target string, files []storage.FileEntry, free func(string) (uint64, error)) error {
	var need uint64
	for _, e := range files {
		if e.Type != storage.TypeFile || e.Size == 0 {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(target, filepath.FromSlash(e.Path))); err == nil && fi.Mode().IsRegular() && fi.Size() == e.Size {
			continue
		}
		need += uint64(e.Size)
	}
	if need == 0 {
		return nil
	}
	avail, err := free(target)
	if err != nil {
		return err
	}
	if need > avail {
		return fmt.Errorf("%w in %s: the restore writes %d bytes, %d are free", wire.ErrNoSpace, target, need, avail)
	}
	return nil
}
