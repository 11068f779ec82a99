package tree

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/crayfish-backup/crayfish/storage"
)

// ErrMismatch marks a file under a restored root that differs from its
// manifest entry (or cannot be read).
var ErrMismatch = errors.New("restored file differs from the backup")

// Verify reads every regular file of entries back from root and compares
// its size and SHA-256 with the entry (workers files at a time; 0: one
// per core). It returns how many files and bytes matched, and the first
// mismatch.
func Verify(ctx context.Context, root string, entries []storage.FileEntry, workers int) (files, bytes int64, err error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var n, total atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, e := range entries {
		if e.Type != storage.TypeFile {
			continue
		}
		g.Go(func() error {
			f, err := os.Open(filepath.Join(root, filepath.FromSlash(e.Path)))
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrMismatch, e.Path, err)
			}
			defer f.Close()
			sum, size, err := hashReader(ctx, f, nil)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrMismatch, e.Path, err)
			}
			if size != e.Size || sum != e.Content {
				return fmt.Errorf("%w: %s: %d bytes, sha256 %s; the backup has %d bytes, %s", ErrMismatch, e.Path, size, sum, e.Size, e.Content)
			}
			n.Add(1)
			total.Add(size)
			return nil
		})
	}
	err = g.Wait()
	return n.Load(), total.Load(), err
}
