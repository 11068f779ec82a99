package tree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/crayfish-backup/crayfish/storage"
)

// RestorePlan says what Restore with the same arguments would do to a
// target, without doing any of it.
type RestorePlan struct {
	// Create counts the regular files not at their path yet (or with
	// something else there); Overwrite the files there whose size or
	// mtime differ from the entry's; Unchanged the files whose size and
	// mtime match (Restore still compares their SHA-256 and rewrites a
	// file whose content differs).
	Create, Overwrite, Unchanged int64
	// DownloadBytes is the size of the created and overwritten files.
	DownloadBytes int64
	// Delete counts the paths Restore would remove (extras: 0 with
	// KeepExtra); DeletePaths lists the first MaxPlanPaths of them.
	Delete      int64
	DeletePaths []string
	// Dirs and Symlinks are the directory and symlink entries.
	Dirs, Symlinks int64
}

// MaxPlanPaths bounds the paths a RestorePlan lists.
const MaxPlanPaths = 100

// PlanRestore reports what Restore(ctx, target, entries, src, opts) would
// create, overwrite and delete. It validates entries the same way, reads
// only metadata (Lstat and a directory walk) and writes nothing: a target
// that does not exist yet is planned as empty.
func PlanRestore(ctx context.Context, target string, entries []storage.FileEntry, opts RestoreOptions) (RestorePlan, error) {
	var plan RestorePlan
	if err := validateEntries(entries); err != nil {
		return plan, fmt.Errorf("restore: %w", err)
	}
	real, err := filepath.EvalSymlinks(target)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return plan, fmt.Errorf("restore target: %w", err)
	}
	r := newRestorer(ctx, real, entries, nil)
	if r.filter, err = newFilter(opts.Include, opts.Exclude, opts.Select...); err != nil {
		return plan, fmt.Errorf("restore: %w", err)
	}
	if exists && !opts.KeepExtra {
		extras, err := r.findExtras()
		if err != nil {
			return plan, err
		}
		plan.Delete = int64(len(extras))
		plan.DeletePaths = extras[:min(len(extras), MaxPlanPaths)]
	}
	for i := range r.entries {
		if err := ctx.Err(); err != nil {
			return plan, err
		}
		e := &r.entries[i]
		switch e.Type {
		case storage.TypeDir:
			plan.Dirs++
			continue
		case storage.TypeSymlink:
			plan.Symlinks++
			continue
		}
		var fi os.FileInfo
		if exists {
			fi, err = os.Lstat(r.abs(e.Path))
		}
		switch {
		case !exists || err != nil || !fi.Mode().IsRegular():
			plan.Create++
			plan.DownloadBytes += e.Size
		case fi.Size() == e.Size && fi.ModTime().Equal(e.MTime):
			plan.Unchanged++
		default:
			plan.Overwrite++
			plan.DownloadBytes += e.Size
		}
	}
	return plan, nil
}
