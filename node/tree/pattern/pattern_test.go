package pattern

import (
	"errors"
	"strings"
	"testing"
)

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{"data/**/snapshots/**",
			[]string{"data/snapshots", "data/ks/t/snapshots", "data/ks/t/snapshots/x/y.db", "data/snapshots/f"},
			[]string{"data", "data/ks", "data/ks/t/backups/x", "other/snapshots/x", "data/ks/snapshots2/x"}},
		{"**/*.tmp",
			[]string{"a.tmp", "x/a.tmp", "x/y/.tmp"},
			[]string{"a.tmp/x", "a.tmpx", "x/a.tmp.y"}},
		{"**", []string{"a", "a/b/c"}, nil},
		{"a/*/c", []string{"a/b/c", "a/.x/c"}, []string{"a/c", "a/b/b/c", "a/b/c/d"}},
		{"a/**/c", []string{"a/c", "a/b/c", "a/b/b/c"}, []string{"a/b/c/d", "ab/c"}},
		{"f?le[0-9]", []string{"file1", "fxle9"}, []string{"file", "file10", "fle1"}},
		{"a/**/**/b", []string{"a/b", "a/x/y/b"}, []string{"a/x"}},
		{"\\*", []string{"*"}, []string{"x"}},
		{"commitlog/", []string{"commitlog"}, []string{"commitlog/x"}},
	} {
		pat, err := Compile(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		for _, name := range tc.yes {
			if !Match(pat, strings.Split(name, "/")) {
				t.Errorf("%q should match %q", tc.pattern, name)
			}
		}
		for _, name := range tc.no {
			if Match(pat, strings.Split(name, "/")) {
				t.Errorf("%q should not match %q", tc.pattern, name)
			}
		}
	}
}

func TestMayMatchBelow(t *testing.T) {
	for _, tc := range []struct {
		pattern, dir string
		want         bool
	}{
		{"data/*/t/snapshots/**", "data", true},
		{"data/*/t/snapshots/**", "data/ks1", true},
		{"data/*/t/snapshots/**", "data/ks1/t", true},
		{"data/*/t/snapshots/**", "data/ks1/u", false},
		{"data/*/t/snapshots/**", "commitlog", false},
		{"data/**/snapshots/**", "data/anything/deep", true},
		{"data/**/snapshots/**", "other", false},
		{"a/b", "a", true},
		{"a/b", "a/b", false}, // the pattern ends at a/b: below it only via "a/b matches"
		{"**/*.db", "x", true},
	} {
		pat, _ := Compile(tc.pattern)
		if got := MayMatchBelow(pat, strings.Split(tc.dir, "/")); got != tc.want {
			t.Errorf("MayMatchBelow(%q, %q) = %v", tc.pattern, tc.dir, got)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Validate([]string{"data/**/snapshots/**", "**/*.tmp", "a/b/", "[a-z]*"}); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "/abs", "a//b", "a/../b", "./a", "a/[", "a/\\", "x\x00"} {
		if err := Validate([]string{"ok", bad}); err == nil {
			t.Errorf("%q accepted", bad)
		} else {
			if !errors.Is(err, ErrBadPattern) {
				t.Errorf("%v, want ErrBadPattern", err)
			}
		}
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		pat, path string
		want      bool
	}{{"a", "a/b/c", true}, {"a/b/c", "a", false}, {"**/c", "a/b/c", true}, {"a/*/c", "a/b/c/d", true}, {"x", "a", false}} {
		if got, err := Matches(tc.pat, tc.path); err != nil || got != tc.want {
			t.Errorf("Matches(%q, %q) = %v, %v; want %v", tc.pat, tc.path, got, err, tc.want)
		}
	}
	if _, err := Matches("/abs", "a"); !errors.Is(err, ErrBadPattern) {
		t.Errorf("an absolute pattern: %v", err)
	}
}
