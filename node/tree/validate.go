package tree

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/crayfish-backup/crayfish/storage"
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrRootMissing: the directory to snapshot does not exist.
	ErrRootMissing = errors.New("tree: root directory missing")
	// ErrUnsafePath: a manifest path could escape the target or be
	// reached through a file or symlink.
	ErrUnsafePath = errors.New("tree: unsafe path")
	// ErrInvalidEntry: a manifest entry is malformed (duplicate path, unknown
	// type, size or mode out of range, chunk ids not matching the size).
	ErrInvalidEntry = errors.New("tree: invalid entry")
	// ErrVerify: restored content does not have the size or hash the
	// manifest records, or a chunk from the source has the wrong length.
	ErrVerify = errors.New("tree: content verification failed")
	// ErrSourceChanged: Upload needed a chunk of a file that Snapshot did
	// not link (the hash cache knew it), and the live file has changed
	// since, or is gone, or does not hold the content the cache had for
	// it. The snapshot can no longer be uploaded as recorded; the next
	// snapshot reads the file. It is not storage.ErrCorrupt: nothing is
	// wrong with the snapshot directory or the store.
	ErrSourceChanged = errors.New("tree: live file changed since the snapshot")
)

// maxFileSize bounds entry sizes (1 PiB): large enough for any real file,
// small enough that sums of sizes cannot overflow int64.
const maxFileSize = storage.MaxFileSize

// validateEntries checks a whole manifest before anything is written. It
// is the only defence against a hostile manifest, so it is strict: every
// path must be usable as-is below a directory without escaping it.
func validateEntries(entries []storage.FileEntry) error {
	types := make(map[string]storage.EntryType, len(entries))
	for i := range entries {
		e := &entries[i]
		if err := validatePath(e.Path); err != nil {
			return err
		}
		if err := validateEntry(e); err != nil {
			return err
		}
		if _, dup := types[e.Path]; dup {
			return fmt.Errorf("%w: %q: duplicate path", ErrInvalidEntry, e.Path)
		}
		types[e.Path] = e.Type
	}
	// A second pass, because a file may be listed after its would-be children.
	for _, e := range entries {
		for _, d := range parentDirs(e.Path) {
			if t, ok := types[d]; ok && t != storage.TypeDir {
				return fmt.Errorf("%w: %q: ancestor %q is a %s, not a dir", ErrUnsafePath, e.Path, d, t)
			}
		}
	}
	return nil
}

// validatePath accepts only clean, relative, slash-separated paths that stay
// inside the directory they are joined to.
func validatePath(p string) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("%w: %q: empty path", ErrUnsafePath, p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: %q: contains NUL", ErrUnsafePath, p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%w: %q: absolute path", ErrUnsafePath, p)
	case hasDotDot(p):
		return fmt.Errorf("%w: %q: contains a .. element", ErrUnsafePath, p)
	case path.Clean(p) != p:
		return fmt.Errorf("%w: %q: not a clean path", ErrUnsafePath, p)
	}
	return nil
}

// validateEntry checks the fields of one entry other than its path.
func validateEntry(e *storage.FileEntry) error {
	if e.Mode&^modeMask != 0 {
		return fmt.Errorf("%w: %q: mode %#o has bits outside 0o7777", ErrInvalidEntry, e.Path, e.Mode)
	}
	if e.Size < 0 || e.Size > maxFileSize {
		return fmt.Errorf("%w: %q: size %d out of range", ErrInvalidEntry, e.Path, e.Size)
	}
	if e.Type != storage.TypeFile && len(e.Chunks) > 0 {
		return fmt.Errorf("%w: %q: a %s with chunks", ErrInvalidEntry, e.Path, e.Type)
	}
	switch e.Type {
	case storage.TypeDir:
	case storage.TypeFile:
		if e.Size > 0 && e.Content.IsZero() {
			return fmt.Errorf("%w: %q: non-empty file without content id", ErrInvalidEntry, e.Path)
		}
		if err := validateChunks(e); err != nil {
			return err
		}
	case storage.TypeSymlink:
		if e.LinkTarget == "" || strings.ContainsRune(e.LinkTarget, 0) {
			return fmt.Errorf("%w: %q: bad symlink target %q", ErrInvalidEntry, e.Path, e.LinkTarget)
		}
	default:
		return fmt.Errorf("%w: %q: unknown type %q", ErrInvalidEntry, e.Path, e.Type)
	}
	return nil
}

// validateChunks checks that a file entry has exactly one chunk id per
// ChunkSize piece of its size, and that the single chunk of a small file is
// its content. Upload and Restore derive every read offset and expected
// length from Size, so this is what keeps them in range.
func validateChunks(e *storage.FileEntry) error {
	if want := storage.NumChunks(e.Size); int64(len(e.Chunks)) != want {
		return fmt.Errorf("%w: %q: %d chunks for %d bytes, want %d", ErrInvalidEntry, e.Path, len(e.Chunks), e.Size, want)
	}
	if e.Size > 0 && e.Size <= storage.ChunkSize && e.Chunks[0] != e.Content {
		return fmt.Errorf("%w: %q: the only chunk %s is not the content %s", ErrInvalidEntry, e.Path, e.Chunks[0], e.Content)
	}
	for i, id := range e.Chunks {
		if id.IsZero() {
			return fmt.Errorf("%w: %q: chunk %d has no id", ErrInvalidEntry, e.Path, i)
		}
	}
	return nil
}
