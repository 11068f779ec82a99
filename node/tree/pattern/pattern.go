// Package pattern is the path pattern language of crayfish: include and
// exclude patterns of a backup and the selections of a restore. It is a
// leaf (standard library only), shared by node/tree and the plugins.
//
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
package pattern

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrBadPattern: an Include or Exclude pattern is malformed.
var ErrBadPattern = errors.New("bad pattern")

// Validate checks Include or Exclude patterns as Snapshot would:
// relative slash paths, no empty, "." or ".." elements, and valid
// path.Match syntax in each element. Config loading can call it to reject a
// bad pattern before any backup runs.
func Validate(patterns []string) error {
	_, err := CompileAll(patterns)
	return err
}

// CompileAll compiles patterns (see Compile).
func CompileAll(patterns []string) ([][]string, error) {
	var out [][]string
	for _, p := range patterns {
		els, err := Compile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, els)
	}
	return out, nil
}

// Compile splits a pattern into its elements, checking each.
func Compile(p string) ([]string, error) {
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

// Match reports whether the path elements name match the pattern
// elements pat.
func Match(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for len(pat) > 0 && pat[0] == "**" {
				pat = pat[1:]
			}
			if len(pat) == 0 {
				return true
			}
			for i := range len(name) + 1 {
				if Match(pat, name[i:]) {
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

// MayMatchBelow reports whether some path strictly below the directory
// whose elements are dir could match pat. It answers exactly up to the
// first "**" of the pattern and "yes" after it.
func MayMatchBelow(pat, dir []string) bool {
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

// Matches reports whether pattern selects p (a slash path relative to
// the root): it matches p or one of its ancestors.
func Matches(pattern, p string) (bool, error) {
	pat, err := Compile(pattern)
	if err != nil {
		return false, err
	}
	els := strings.Split(p, "/")
	for n := 1; n <= len(els); n++ {
		if Match(pat, els[:n]) {
			return true, nil
		}
	}
	return false, nil
}
