package tree

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/crayfish-backup/crayfish/node/hashcache"
	"github.com/crayfish-backup/crayfish/storage"
)

// Directories after the files: their metadata, and the syncs that make
// a restore durable.

func fsyncPath(p string) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// devOf returns the device of the directory dir, remembered per directory.
func (r *restorer) devOf(dir string) (uint64, error) {
	r.mu.Lock()
	dev, ok := r.devs[dir]
	r.mu.Unlock()
	if ok {
		return dev, nil
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return 0, err
	}
	id, _ := hashcache.FileIDOf(fi)
	r.mu.Lock()
	r.devs[dir] = id.Dev
	r.mu.Unlock()
	return id.Dev, nil
}

// setDirMetadata applies the recorded mode and mtime of every directory,
// deepest first: a child sorts after its parent, so reverse order is
// children first, and the parent's times are set after the last change
// inside it.
func (r *restorer) setDirMetadata() error {
	for _, e := range slices.Backward(r.entries) {
		if e.Type != storage.TypeDir {
			continue
		}
		if err := r.ctx.Err(); err != nil {
			return err
		}
		p := r.abs(e.Path) // made a real directory by makeDirs
		if err := r.lchown(p, &e); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if err := os.Chmod(p, fileMode(e.Mode)); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if err := os.Chtimes(p, time.Time{}, e.MTime); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	return nil
}

// syncDirs makes the renames and the directories' metadata durable: with
// one syncfs(2) per filesystem written to, or else by syncing each
// directory that received a rename (best effort: the data itself is
// already synced and a failure only weakens crash safety).
func (r *restorer) syncDirs() error {
	if batchedSync && !r.noSyncfs {
		dirs := map[uint64]string{}
		r.toSync[r.root] = true // directory metadata below it changed too
		for dir := range r.toSync {
			if dev, err := r.devOf(dir); err == nil {
				dirs[dev] = dir
			}
		}
		for _, dir := range dirs {
			if err := syncFSFunc(dir); err != nil && !errors.Is(err, syscall.ENOSYS) && !errors.Is(err, syscall.EPERM) {
				return fmt.Errorf("sync restored tree: %w", err)
			}
		}
		return nil
	}
	for dir := range r.toSync {
		if f, err := os.Open(dir); err == nil {
			f.Sync()
			f.Close()
		}
	}
	return nil
}
