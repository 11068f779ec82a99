package tree

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/crayfish-backup/crayfish/storage"
)

// ErrDamaged: Restore met chunks the source reports as missing or corrupt
// (storage.ErrNotFound, storage.ErrCorrupt). Every other file was
// restored; RestoreStats.Damaged names the files left out.
var ErrDamaged = errors.New("tree: damaged content in the repository")

// DamagedChunk is one chunk of a file the source could not deliver.
type DamagedChunk struct {
	Index int              // position of the chunk in the file
	ID    storage.ObjectID // the chunk's blob id
	// Missing: the source does not have it (storage.ErrNotFound);
	// otherwise it is corrupt (storage.ErrCorrupt).
	Missing bool
	Detail  string // the source's error
}

// DamagedFile is a file Restore left out because of damaged chunks: it is
// not under its real name in the target (a file already there is left as
// it was).
type DamagedFile struct {
	Path   string
	Chunks []DamagedChunk // every damaged chunk of the file, in order
}

// isDamage reports whether a source error means the content is damaged in
// the repository, as opposed to a failure a retry may fix (a timeout).
func isDamage(err error) bool {
	return errors.Is(err, storage.ErrCorrupt) || errors.Is(err, storage.ErrNotFound)
}

// damageError is the error of one file whose chunks are damaged.
type damageError struct{ file DamagedFile }

func (e *damageError) Error() string {
	parts := make([]string, len(e.file.Chunks))
	for i, c := range e.file.Chunks {
		parts[i] = fmt.Sprintf("chunk %d (%s): %s", c.Index, c.ID, c.Detail)
	}
	return fmt.Sprintf("%s: %s", ErrDamaged, strings.Join(parts, "; "))
}

func (e *damageError) Unwrap() error { return ErrDamaged }

// addDamaged records a damaged file; Restore goes on with the others.
func (r *restorer) addDamaged(f DamagedFile) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Damaged = append(r.stats.Damaged, f)
}

// damageResult sorts the damaged files by path and returns the error
// Restore ends with, nil if there are none.
func (r *restorer) damageResult() error {
	if len(r.stats.Damaged) == 0 {
		return nil
	}
	slices.SortFunc(r.stats.Damaged, func(a, b DamagedFile) int { return strings.Compare(a.Path, b.Path) })
	first := r.stats.Damaged[0]
	return fmt.Errorf("%w: %d files not restored, first %s chunk %s",
		ErrDamaged, len(r.stats.Damaged), first.Path, first.Chunks[0].ID)
}
