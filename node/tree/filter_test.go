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
}

func TestSnapshotRefusesBadPattern(t *testing.T) {
	_, err := Snapshot(context.Background(), t.TempDir(), filepath.Join(t.TempDir(), "s"), SnapshotOptions{Exclude: []string{"/x"}})
	assertIs(t, err, ErrBadPattern)
}

// TestSubtree: only entries strictly below the directory, with its path
// cut; a sibling sharing its name as a prefix is not below it.
func TestSubtree(t *testing.T) {
	entries := []storage.FileEntry{
		{Path: "files", Type: storage.TypeDir}, {Path: "files/data", Type: storage.TypeDir},
		{Path: "files/data/x.db", Type: storage.TypeFile}, {Path: "filesystem.txt", Type: storage.TypeFile},
		{Path: "m3db/etcd.json", Type: storage.TypeFile},
	}
	for _, tc := range []struct{ from, want string }{
		{"", "files files/data files/data/x.db filesystem.txt m3db/etcd.json"},
		{"files", "data data/x.db"},
		{"/files/", "data data/x.db"},
		{"files/data", "x.db"},
		{"../files", "data data/x.db"},
		{"nothing", ""},
	} {
		var got []string
		for _, e := range Subtree(entries, tc.from) {
			got = append(got, e.Path)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("Subtree(%q) = %q, want %q", tc.from, got, tc.want)
		}
	}
	if entries[2].Path != "files/data/x.db" {
		t.Errorf("Subtree changed its input: %s", entries[2].Path)
	}
}
