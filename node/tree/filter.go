package tree

import (
	"path"
	"strings"

	"github.com/crayfish-backup/crayfish/node/tree/pattern"
	"github.com/crayfish-backup/crayfish/storage"
)

// ErrBadPattern: an Include or Exclude pattern is malformed (the pattern
// language is package node/tree/pattern's).
var ErrBadPattern = pattern.ErrBadPattern

// ValidatePatterns checks Include or Exclude patterns as Snapshot would.
func ValidatePatterns(patterns []string) error { return pattern.Validate(patterns) }

// filter holds the compiled Include and Exclude patterns of a snapshot. A
// nil *filter selects everything.
type filter struct {
	include, exclude [][]string
	// sel narrows include further (a restore's selection): a path must be
	// selected by both.
	sel [][]string
}

func newFilter(include, exclude []string, sel ...string) (*filter, error) {
	if len(include) == 0 && len(exclude) == 0 && len(sel) == 0 {
		return nil, nil
	}
	inc, err := pattern.CompileAll(include)
	if err != nil {
		return nil, err
	}
	exc, err := pattern.CompileAll(exclude)
	if err != nil {
		return nil, err
	}
	s, err := pattern.CompileAll(sel)
	if err != nil {
		return nil, err
	}
	return &filter{include: inc, exclude: exc, sel: s}, nil
}

// selfOrAncestor reports whether a pattern of pats matches els or one of
// its ancestors.
func selfOrAncestor(pats [][]string, els []string) bool {
	for n := 1; n <= len(els); n++ {
		if anyMatch(pats, els[:n]) {
			return true
		}
	}
	return false
}

// SelectEntries keeps the entries that Include, Exclude and the selection
// sel choose, and the directories above them, in order: what a restore
// limited by them downloads and creates.
func SelectEntries(entries []storage.FileEntry, include, exclude, sel []string) ([]storage.FileEntry, error) {
	f, err := newFilter(include, exclude, sel...)
	if err != nil || f == nil {
		return entries, err
	}
	keep := map[string]bool{}
	for _, e := range entries {
		if f.selects(e.Path) {
			keep[e.Path] = true
			for d := path.Dir(e.Path); d != "." && d != "/" && !keep[d]; d = path.Dir(d) {
				keep[d] = true
			}
		}
	}
	out := make([]storage.FileEntry, 0, len(keep))
	for _, e := range entries {
		if keep[e.Path] {
			out = append(out, e)
		}
	}
	return out, nil
}

// Subtree keeps the entries strictly below the directory from (relative,
// slash-separated) with from cut from their paths: restoring a backed-up
// subdirectory as a tree of its own. "" keeps every entry.
func Subtree(entries []storage.FileEntry, from string) []storage.FileEntry {
	from = strings.Trim(path.Clean("/"+from), "/")
	if from == "" {
		return entries
	}
	prefix := from + "/"
	var out []storage.FileEntry
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Path, prefix); ok && rest != "" {
			e.Path = rest
			out = append(out, e)
		}
	}
	return out
}

func anyMatch(pats [][]string, els []string) bool {
	for _, p := range pats {
		if pattern.Match(p, els) {
			return true
		}
	}
	return false
}

// excluded reports whether rel itself matches an Exclude pattern. The walk
// prunes excluded directories, so their descendants are never asked about.
func (f *filter) excluded(rel string) bool {
	return f != nil && anyMatch(f.exclude, strings.Split(rel, "/"))
}

// included reports whether rel or one of its ancestors matches an Include
// pattern (always true without Include patterns).
func (f *filter) included(rel string) bool {
	if f == nil {
		return true
	}
	els := strings.Split(rel, "/")
	return (len(f.include) == 0 || selfOrAncestor(f.include, els)) &&
		(len(f.sel) == 0 || selfOrAncestor(f.sel, els))
}

// mayContain reports whether the directory rel, which is not itself
// included, could have an included descendant: if not, the walk skips it.
func (f *filter) mayContain(rel string) bool {
	if f == nil {
		return true
	}
	els := strings.Split(rel, "/")
	return mayHold(f.include, els) && mayHold(f.sel, els)
}

// mayHold reports whether the directory els, or something below it, could
// be chosen by pats (always, without patterns).
func mayHold(pats [][]string, els []string) bool {
	if len(pats) == 0 || selfOrAncestor(pats, els) {
		return true
	}
	for _, p := range pats {
		if pattern.MayMatchBelow(p, els) {
			return true
		}
	}
	return false
}

// selects reports whether the walk would record rel if it existed: it is
// included and neither it nor an ancestor is excluded. It decides which
// hash cache entries a snapshot is responsible for.
func (f *filter) selects(rel string) bool {
	if f == nil {
		return true
	}
	if len(f.exclude) > 0 {
		els := strings.Split(rel, "/")
		for n := 1; n <= len(els); n++ {
			if anyMatch(f.exclude, els[:n]) {
				return false
			}
		}
	}
	return f.included(rel)
}
