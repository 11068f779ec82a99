package files

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

func TestFinishRejectsOverlappingDirs(t *testing.T) {
	for _, tc := range []struct {
		data, root string
		ok         bool
	}{
		{"/srv/db/crayfish", "/srv/db", false},
		{"/srv/db", "/srv/db/sub", false},
		{"/srv/db", "/srv/db", false},
		{"/srv/crayfish", "/srv/db", true},
		{"/srv/db-crayfish", "/srv/db", true}, // a shared prefix is not containment
	} {
		c := Config{Root: tc.root}
		if err := c.Finish(plugin.Env{DataDir: tc.data}); (err == nil) != tc.ok {
			t.Errorf("data_dir %s root %s: %v, want ok=%v", tc.data, tc.root, err, tc.ok)
		}
	}
	for name, c := range map[string]Config{
		"no root":     {},
		"bad include": {Root: "/srv/db", Include: []string{"/abs"}},
		"bad exclude": {Root: "/srv/db", Exclude: []string{"a/../b"}},
	} {
		if err := c.Finish(plugin.Env{DataDir: "/srv/crayfish"}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestStage: where a restore step's files go. A node without a root (it
// runs another plugin) must not fall back to the working directory.
func TestStage(t *testing.T) {
	rooted := &Plugin{cfg: Config{Root: "/srv/db", Include: []string{"data"}, Exclude: []string{"**/*.tmp"}}}
	input, _ := json.Marshal(Action{Select: []string{"data/a"}, Delete: true})
	for _, tc := range []struct {
		name string
		p    *Plugin
		step plugin.RestoreStep
		want plugin.Stage
	}{
		{"root mirrors", rooted, plugin.RestoreStep{}, plugin.Stage{Needed: true, Into: "/srv/db", Include: []string{"data"}, Exclude: []string{"**/*.tmp"}, Owners: true}},
		{"target is additive", rooted, plugin.RestoreStep{Target: "/x/"}, plugin.Stage{Needed: true, Into: "/x", KeepExtra: true, Include: []string{"data"}, Exclude: []string{"**/*.tmp"}, Owners: true}},
		{"target with delete and selection", &Plugin{}, plugin.RestoreStep{Target: "/x", Input: input}, plugin.Stage{Needed: true, Into: "/x", Select: []string{"data/a"}, Owners: true}},
	} {
		got, err := tc.p.Stage(tc.step)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if g, w := jsonOf(got), jsonOf(tc.want); g != w {
			t.Errorf("%s: %s, want %s", tc.name, g, w)
		}
	}
	_, err := (&Plugin{}).Stage(plugin.RestoreStep{BackupID: "b"})
	if !plugin.IsPermanent(err) || !errors.Is(err, plugin.ErrBadRequest) {
		t.Errorf("no root, no target: %v, want a permanent bad request", err)
	}
	if _, err := rooted.Stage(plugin.RestoreStep{Input: json.RawMessage(`{"select":7}`)}); !plugin.IsPermanent(err) {
		t.Errorf("a malformed step input: %v, want a permanent error", err)
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
