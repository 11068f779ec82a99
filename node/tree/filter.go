package tree

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/crayfish-backup/crayfish/storage"
)

// ErrBadPattern: an Include or Exclude pattern is malformed.
var ErrBadPattern = errors.New("tree: bad pattern")

// Patterns select entries by their slash path relative to the root. A
// pattern is split on "/" into elements and matched element by element: an
// element "**" matches any number (zero included) of path elements, and
// any other element is matched against one path element with path.Match,
// so "*" matches any run of characters other than "/", "?" any one of
// them, "[a-z]" and "[^0-9]" classes, and "\" quotes the next character.
// "**" is special only as a whole element ("a**" is "a*"). There are no
// "{a,b}" alternatives: use two patterns.
//
// A pattern that matches a directory selects everything below it too, so
// "data/ks1" and "data/ks1/**" are the same selection, and so are
// "**/*.tmp" for a directory named x.tmp.
//
// Examples: "data/**/snapshots/**" (every snapshots directory below data,
// at any depth), "**/*.tmp" (every .tmp name anywhere), "commitlog" (the
// commitlog directory at the top).

// ValidatePatterns checks Include or Exclude patterns as Snapshot would:
// relative slash paths, no empty, "." or ".." elements, and valid
// path.Match syntax in each element. Config loading can call it to reject a
// bad pattern before any backup runs.
func ValidatePatterns(patterns []string) error {
	_, err := compilePatterns(patterns)
	return err
}

func compilePatterns(patterns []string) ([][]string, error) {
	var out [][]string
	for _, p := range patterns {
		els, err := compilePattern(p)
		if err != nil {
			return nil, err
		}
		out = append(out, els)
	}
	return out, nil
}

func compilePattern(p string) ([]string, error) {
	bad := func(why string) error { return fmt.Errorf("%w: %q: %s", ErrBadPattern, p, why) }
	switch {
	case p == "":
		return nil, bad("empty")
	case strings.HasPrefix(p, "/"):
		return nil, bad("absolute; patterns are relative to the root")
	case strings.ContainsRune(p, 0):
		return nil, bad("contains NUL")
	}
	els := strings.Split(strings.TrimSuffix(p, "/"), "/")
	for _, el := range els {
		switch el {
		case "":
			return nil, bad("empty path element")
		case ".", "..":
			return nil, bad("contains a " + el + " element")
		case "**":
			continue
		}
		if _, err := path.Match(el, ""); err != nil {
			return nil, bad(err.Error())
		}
	}
	return els, nil
}

// matchElems reports whether the path elements name match the pattern
// elements pat.
func matchElems(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for len(pat) > 0 && pat[0] == "**" {
				pat = pat[1:]
			}
			if len(pat) == 0 {
				return true
			}
			for i := range len(name) + 1 {
				if matchElems(pat, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// mayMatchBelow reports whether some path strictly below the directory
// whose elements are dir could match pat. It answers exactly up to the
// first "**" of the pattern and "yes" after it.
func mayMatchBelow(pat, dir []string) bool {
	for i, d := range dir {
		if i >= len(pat) {
			return false // the pattern ends above dir: only dir's ancestors can match it
		}
		if pat[i] == "**" {
			return true
		}
		if ok, _ := path.Match(pat[i], d); !ok {
			return false
		}
	}
	return len(pat) > len(dir)
}

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
	inc, err := compilePatterns(include)
	if err != nil {
		return nil, err
	}
	exc, err := compilePatterns(exclude)
	if err != nil {
		return nil, err
	}
	s, err := compilePatterns(sel)
	if err != nil {
		return nil, err
	}
	return &filter{include: inc, exclude: exc, sel: s}, nil
}

// PatternMatches reports whether pattern selects path (a slash path
// relative to the root): it matches the path or one of its ancestors.
func PatternMatches(pattern, path string) (bool, error) {
	pat, err := compilePattern(pattern)
	if err != nil {
		return false, err
	}
	return selfOrAncestor([][]string{pat}, strings.Split(path, "/")), nil
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

func anyMatch(pats [][]string, els []string) bool {
	for _, p := range pats {
		if matchElems(p, els) {
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
		if mayMatchBelow(p, els) {
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
