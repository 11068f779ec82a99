package tree

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/crayfish-backup/crayfish/storage"
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
		pat, err := compilePattern(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		for _, name := range tc.yes {
			if !matchElems(pat, strings.Split(name, "/")) {
				t.Errorf("%q should match %q", tc.pattern, name)
			}
		}
		for _, name := range tc.no {
			if matchElems(pat, strings.Split(name, "/")) {
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
		pat, _ := compilePattern(tc.pattern)
		if got := mayMatchBelow(pat, strings.Split(tc.dir, "/")); got != tc.want {
			t.Errorf("mayMatchBelow(%q, %q) = %v", tc.pattern, tc.dir, got)
		}
	}
}

func TestValidatePatterns(t *testing.T) {
	if err := ValidatePatterns([]string{"data/**/snapshots/**", "**/*.tmp", "a/b/", "[a-z]*"}); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "/abs", "a//b", "a/../b", "./a", "a/[", "a/\\", "x\x00"} {
		if err := ValidatePatterns([]string{"ok", bad}); err == nil {
			t.Errorf("%q accepted", bad)
		} else {
			assertIs(t, err, ErrBadPattern)
		}
	}
	_, err := Snapshot(context.Background(), t.TempDir(), filepath.Join(t.TempDir(), "s"), SnapshotOptions{Exclude: []string{"/x"}})
	assertIs(t, err, ErrBadPattern)
}

// cassandraTree lays out a tree like Cassandra's data directory.
func cassandraTree(t *testing.T) string {
	root := filepath.Join(t.TempDir(), "live")
	for _, p := range []string{
		"data/ks1/t1/nb-1-big-Data.db",
		"data/ks1/t1/snapshots/tag1/nb-1-big-Data.db",
		"data/ks1/t1/snapshots/tag1/manifest.json",
		"data/ks1/t1/snapshots/tag2/nb-1-big-Data.db",
		"data/ks1/t1/backups/nb-0-big-Data.db",
		"data/ks2/t2/snapshots/tag1/nb-5-big-Data.db",
		"data/ks2/t2/snapshots/tag1/scratch.tmp",
		"data/ks2/t2/nb-5-big-Data.db",
		"commitlog/CommitLog-7-1.log",
		"saved_caches/KeyCache-e.db",
	} {
		mustWrite(t, filepath.Join(root, p), []byte(p), 0o644)
	}
	mustMkdir(t, filepath.Join(root, "data/ks3/empty/snapshots/tag1"), 0o755)
	return root
}

func paths(entries []storage.FileEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Path)
	}
	return out
}

func TestSnapshotIncludeExclude(t *testing.T) {
	root := cassandraTree(t)
	var mu sync.Mutex
	var walked []string
	testWalkHook = func(rel string) { mu.Lock(); walked = append(walked, rel); mu.Unlock() }
	t.Cleanup(func() { testWalkHook = nil })

	for _, tc := range []struct {
		name             string
		include, exclude []string
		want             []string
		notWalked        []string // directories whose contents must not be walked
	}{
		{
			name:    "one snapshot tag",
			include: []string{"data/*/*/snapshots/tag1/**"},
			exclude: []string{"**/*.tmp"},
			want: []string{"data", "data/ks1", "data/ks1/t1", "data/ks1/t1/snapshots", "data/ks1/t1/snapshots/tag1",
				"data/ks1/t1/snapshots/tag1/manifest.json", "data/ks1/t1/snapshots/tag1/nb-1-big-Data.db",
				"data/ks2", "data/ks2/t2", "data/ks2/t2/snapshots", "data/ks2/t2/snapshots/tag1",
				"data/ks2/t2/snapshots/tag1/nb-5-big-Data.db",
				"data/ks3", "data/ks3/empty", "data/ks3/empty/snapshots", "data/ks3/empty/snapshots/tag1"},
			notWalked: []string{"commitlog", "saved_caches", "data/ks1/t1/backups", "data/ks1/t1/snapshots/tag2"},
		},
		{
			name:    "everything but snapshots and caches",
			exclude: []string{"data/**/snapshots", "saved_caches", "**/backups"},
			want: []string{"commitlog", "commitlog/CommitLog-7-1.log", "data", "data/ks1", "data/ks1/t1",
				"data/ks1/t1/nb-1-big-Data.db", "data/ks2", "data/ks2/t2", "data/ks2/t2/nb-5-big-Data.db",
				"data/ks3", "data/ks3/empty"},
			notWalked: []string{"saved_caches", "data/ks1/t1/snapshots", "data/ks1/t1/backups"},
		},
		{
			name:    "a directory by name",
			include: []string{"commitlog", "data/ks2"},
			exclude: []string{"data/ks2/t2/snapshots/**"},
			// "x/**" matches x itself, so the snapshots directory goes too.
			want:      []string{"commitlog", "commitlog/CommitLog-7-1.log", "data", "data/ks2", "data/ks2/t2", "data/ks2/t2/nb-5-big-Data.db"},
			notWalked: []string{"data/ks1", "saved_caches", "data/ks2/t2/snapshots"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			walked = nil
			res, err := Snapshot(context.Background(), root, filepath.Join(t.TempDir(), "s"),
				SnapshotOptions{Include: tc.include, Exclude: tc.exclude})
			if err != nil {
				t.Fatal(err)
			}
			if got := paths(res.Entries); !slices.Equal(got, tc.want) {
				t.Errorf("entries\n got %q\nwant %q", got, tc.want)
			}
			for _, p := range tc.notWalked {
				for _, w := range walked {
					if strings.HasPrefix(w, p+"/") {
						t.Errorf("%s was walked into (%s)", p, w)
						break
					}
				}
			}
			// The snapshot copy holds exactly the entries.
			copied := scanTree(t, res.Dir)
			if len(copied) != len(res.Entries) {
				t.Errorf("snapshot dir holds %d entries, manifest %d", len(copied), len(res.Entries))
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings %q", res.Warnings)
			}
		})
	}
}

func TestSelectEntries(t *testing.T) {
	entries := []storage.FileEntry{
		{Path: "a", Type: storage.TypeDir}, {Path: "a/b", Type: storage.TypeDir},
		{Path: "a/b/c.txt", Type: storage.TypeFile}, {Path: "a/b/d.log", Type: storage.TypeFile},
		{Path: "a/e.txt", Type: storage.TypeFile}, {Path: "z.txt", Type: storage.TypeFile},
	}
	paths := func(es []storage.FileEntry) string {
		var p []string
		for _, e := range es {
			p = append(p, e.Path)
		}
		return strings.Join(p, " ")
	}
	for _, tc := range []struct {
		inc, exc, sel []string
		want          string
	}{
		{nil, nil, nil, "a a/b a/b/c.txt a/b/d.log a/e.txt z.txt"},
		{nil, nil, []string{"a/b"}, "a a/b a/b/c.txt a/b/d.log"},
		{nil, nil, []string{"a/b/c.txt"}, "a a/b a/b/c.txt"},
		{nil, []string{"**/*.log"}, []string{"a/b"}, "a a/b a/b/c.txt"},
		{[]string{"a"}, nil, []string{"**/*.txt"}, "a a/b a/b/c.txt a/e.txt"},
		{nil, nil, []string{"nothing"}, ""},
	} {
		got, err := SelectEntries(entries, tc.inc, tc.exc, tc.sel)
		if err != nil {
			t.Fatal(err)
		}
		if paths(got) != tc.want {
			t.Errorf("SelectEntries(%v, %v, %v) = %q, want %q", tc.inc, tc.exc, tc.sel, paths(got), tc.want)
		}
	}
	if _, err := SelectEntries(entries, nil, nil, []string{"/abs"}); !errors.Is(err, ErrBadPattern) {
		t.Errorf("an absolute selection: %v, want ErrBadPattern", err)
	}
	for _, tc := range []struct {
		pat, path string
		want      bool
	}{{"a", "a/b/c", true}, {"a/b/c", "a", false}, {"**/c", "a/b/c", true}, {"a/*/c", "a/b/c/d", true}, {"x", "a", false}} {
		if got, err := PatternMatches(tc.pat, tc.path); err != nil || got != tc.want {
			t.Errorf("PatternMatches(%q, %q) = %v, %v; want %v", tc.pat, tc.path, got, err, tc.want)
		}
	}
}
