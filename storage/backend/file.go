package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// file:// specifics. Reads, sizes and deletes go through fileblob (reads
// take the object's size from the open file, see openRange); writes and
// listings are done here:
//
//   - Put writes "<target>.<hex nanos>.tmp" next to the target (fileblob's
//     own temporary-file naming), fsyncs it, then renames it into place, or
//     with ifNotExist hard-links it (link fails atomically if the target
//     exists, also against other processes, which fileblob's
//     stat-then-rename is not), and fsyncs the directory chain.
//   - List walks the tree itself, in key order (fileblob's walk orders "a/b"
//     before "a-b"), skipping temporary files and .attrs sidecars.

type fileState struct {
	// durableDirs holds directories whose own entry in their parent has been
	// fsynced by this process.
	durableDirs sync.Map
	// mu serializes the stat-then-rename fallback for ifNotExist on file
	// systems without hard links.
	mu sync.Mutex
}

func (b *bucketBackend) keyPath(key string) string {
	return filepath.Join(b.dir, filepath.FromSlash(key))
}

func (b *bucketBackend) putFile(ctx context.Context, key string, data []byte, ifNotExist bool) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	target := b.keyPath(key)
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return wrap("put", key, err)
	}
	f, err := createTemp(target)
	if err != nil {
		return wrap("put", key, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		os.Remove(tmp) // after a rename or link this is a no-op or drops the extra name
	}()
	if _, err := f.Write(data); err != nil {
		return wrap("put", key, err)
	}
	if err := f.Sync(); err != nil {
		return wrap("put", key, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return wrap("put", key, err)
	}
	if err := ctx.Err(); err != nil { // cancelled: nothing becomes visible
		return fmt.Errorf("put %q: %w", key, err)
	}
	if ifNotExist {
		err = b.linkNew(tmp, target)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("put %q: %w", key, ErrExists)
		}
	} else {
		err = os.Rename(tmp, target)
	}
	if err != nil {
		return wrap("put", key, err)
	}
	if err := b.syncDirs(dir, key); err != nil {
		return wrap("put", key, err)
	}
	return nil
}

// linkNew gives tmp the name target unless target exists (fs.ErrExist).
func (b *bucketBackend) linkNew(tmp, target string) error {
	err := os.Link(tmp, target)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) || (errno != syscall.EPERM && errno != syscall.ENOTSUP && errno != syscall.EOPNOTSUPP && errno != syscall.EMLINK) {
		return err
	}
	// No hard links here (some FUSE and network file systems): check and
	// rename under a process-wide lock, atomic only within this process.
	b.fs.mu.Lock()
	defer b.fs.mu.Unlock()
	if _, err := os.Lstat(target); err == nil {
		return fs.ErrExist
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(tmp, target)
}

// createTemp creates "<path>.<hex nanos>.tmp", like fileblob does.
func createTemp(path string) (*os.File, error) {
	for try := 0; ; try++ {
		name := path + "." + strconv.FormatInt(time.Now().UnixNano(), 16) + tmpSuffix
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) && try < 10000 {
			continue
		}
		return f, err
	}
}

// syncDirs makes a new directory entry in dir durable: it fsyncs dir and,
// once per process, each directory between dir and the root (they may have
// just been created for this key).
func (b *bucketBackend) syncDirs(dir, key string) error {
	if err := syncDir(dir); err != nil {
		return err
	}
	for range strings.Count(key, "/") {
		if _, ok := b.fs.durableDirs.Load(dir); ok {
			return nil
		}
		parent := filepath.Dir(dir)
		if err := syncDir(parent); err != nil {
			return err
		}
		b.fs.durableDirs.Store(dir, true)
		dir = parent
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) { // file systems that cannot sync directories
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// listFile walks the tree under the prefix's directory in key order: within
// a directory, entries sort by name with "/" appended to directories, which
// is the byte order of the keys below them.
func (b *bucketBackend) listFile(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	rel := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		rel = prefix[:i+1]
	}
	var walk func(dirKey string) error
	walk = func(dirKey string) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		entries, err := os.ReadDir(filepath.Join(b.dir, filepath.FromSlash(dirKey)))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || (dirKey != "" && errors.Is(err, syscall.ENOTDIR)) {
				return nil // no such "directory": nothing listed
			}
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		type item struct {
			sortKey string
			entry   fs.DirEntry
		}
		items := make([]item, 0, len(entries))
		for _, e := range entries {
			k := dirKey + e.Name()
			if e.IsDir() {
				k += "/"
			}
			items = append(items, item{k, e})
		}
		slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.sortKey, b.sortKey) })
		for _, it := range items {
			k := it.sortKey
			if it.entry.IsDir() {
				// Descend only where keys can still match the prefix.
				if strings.HasPrefix(k, prefix) || strings.HasPrefix(prefix, k) {
					if err := walk(k); err != nil {
						return err
					}
				}
				continue
			}
			if !strings.HasPrefix(k, prefix) || !it.entry.Type().IsRegular() {
				continue
			}
			if strings.HasSuffix(k, tmpSuffix) || strings.HasSuffix(k, attrsSuffix) {
				continue // a write in progress, a crash leftover, or a sidecar
			}
			info, err := it.entry.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted meanwhile
			}
			if err != nil {
				return fmt.Errorf("list %q: %w", prefix, err)
			}
			if err := fn(ObjectInfo{Key: k, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(rel)
}
