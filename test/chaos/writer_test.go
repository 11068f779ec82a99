package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMatchLiveTree: the restore check accepts what a file-by-file walk
// of a changing tree can produce and nothing else.
func TestMatchLiveTree(t *testing.T) {
	write := func(dir string, gens ...int) {
		for _, g := range gens {
			for name, b := range GenFiles("n1", g) {
				p := filepath.Join(dir, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// During the backup: {1,2,3} → 4 added → 1 removed.
	cands := []TreeState{{Gens: []int{1, 2, 3}}, {Gens: []int{1, 2, 3, 4}}, {Gens: []int{2, 3, 4}}}
	for _, tc := range []struct {
		name string
		gens []int
		ok   bool
		why  string
	}{
		{"a recorded state", []int{1, 2, 3, 4}, true, ""},
		{"1 gone, 4 not yet seen: the walk's mix", []int{2, 3}, true, ""},
		{"a stable generation missing", []int{1, 3, 4}, false, "generation 2"},
		{"a generation that never existed then", []int{2, 3, 9}, false, "no generation"},
	} {
		dir := t.TempDir()
		write(dir, tc.gens...)
		ok, why := MatchLiveTree(dir, "n1", cands)
		if ok != tc.ok || !strings.Contains(why, tc.why) {
			t.Errorf("%s: %v %q", tc.name, ok, why)
		}
	}
	dir := t.TempDir()
	write(dir, 2, 3)
	var some string
	for name := range GenFiles("n1", 3) {
		some = name
	}
	os.WriteFile(filepath.Join(dir, some), []byte("torn"), 0o644)
	if ok, why := MatchLiveTree(dir, "n1", cands); ok || !strings.Contains(why, "byte-exact") {
		t.Errorf("a torn file: %v %q", ok, why)
	}
}
