package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/crayfish-backup/crayfish/storage"
)

// What a restore removes: extras (mirror restores) and the temporary files
// of an interrupted restore (every restore).

// removeExtras deletes everything under the target that no entry names
// (temp files of an interrupted restore included), deepest first. WalkDir
// does not follow symlinks, so a symlink to elsewhere is removed as a link
// and what it points to is never visited. Removing extras first also frees
// their space before new content is downloaded.
func (r *restorer) removeExtras() error {
	extras, err := r.findExtras()
	if err != nil {
		return err
	}
	for _, rel := range slices.Backward(extras) {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if err := os.RemoveAll(r.abs(rel)); err != nil {
			return fmt.Errorf("remove extra: %w", err)
		}
		r.stats.Removed++
	}
	return nil
}

// findExtras lists, parents before children, what removeExtras deletes:
// the paths under the target that no entry names and the filter selects,
// less the directories that hold something not ours.
func (r *restorer) findExtras() ([]string, error) {
	var extras []string
	holdsKept := map[string]bool{} // directories with something not ours below

	err := filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if p == r.root {
			return nil
		}
		rel, err := filepath.Rel(r.root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if r.wanted[rel] {
			return nil
		}
		if !r.filter.selects(rel) {
			// Not ours: leave it, and below an excluded directory or one
			// no Include pattern leads into, everything else too.
			for _, dir := range parentDirs(rel) {
				holdsKept[dir] = true
			}
			if d.IsDir() && (r.filter.excluded(rel) || !r.filter.mayContain(rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		extras = append(extras, rel) // children come after their parent
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan for extra files: %w", err)
	}
	// an extra directory stays when what is not ours in it stays
	return slices.DeleteFunc(extras, func(rel string) bool { return holdsKept[rel] }), nil
}

// removeOwnTemps deletes the temporary files an interrupted restore left
// next to its entries (".<base>.crayfish-tmp-<random>", see tempPattern).
// With KeepExtra nothing else in the target is removed, but these are
// ours. It runs after makeDirs, so every directory it reads is a real
// directory, not a symlink to elsewhere.
func (r *restorer) removeOwnTemps() error {
	byDir := map[string]map[string]bool{} // directory → temp name prefixes
	for _, e := range r.entries {
		if e.Type == storage.TypeDir {
			continue
		}
		d := path.Dir(e.Path)
		if byDir[d] == nil {
			byDir[d] = map[string]bool{}
		}
		byDir[d][strings.TrimSuffix(tempPattern(path.Base(e.Path)), "*")] = true
	}
	for d, prefixes := range byDir {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		dir := r.root
		if d != "." {
			dir = r.abs(d)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("scan for temporary files: %w", err)
		}
		for _, ent := range ents {
			if ent.IsDir() || !isOwnTemp(ent.Name(), prefixes) {
				continue
			}
			if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove temporary file: %w", err)
			}
		}
	}
	return nil
}

// isOwnTemp reports whether name is one of prefixes followed by the
// random part our temporary names end in (letters and digits).
func isOwnTemp(name string, prefixes map[string]bool) bool {
	i := strings.LastIndex(name, tempSuffix)
	if i < 0 || !prefixes[name[:i+len(tempSuffix)]] {
		return false
	}
	rest := name[i+len(tempSuffix):]
	if rest == "" {
		return false
	}
	for _, c := range rest {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
