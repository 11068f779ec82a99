package worker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/node/wire"
)

func TestRealPathResolvesLongestExistingPrefix(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	realDir, _ := filepath.EvalSymlinks(dir)
	for in, want := range map[string]string{
		filepath.Join(dir, "link"):                filepath.Join(realDir, "real"),
		filepath.Join(dir, "link", "new", "deep"): filepath.Join(realDir, "real", "new", "deep"),
		filepath.Join(dir, "missing", "x"):        filepath.Join(realDir, "missing", "x"),
		"/":                                       "/",
	} {
		got, err := realPath(in)
		if err != nil || got != want {
			t.Errorf("realPath(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := realPath("relative/path"); !errors.Is(err, wire.ErrBadRequest) {
		t.Errorf("relative path: %v", err)
	}
}

func TestTargetGuard(t *testing.T) {
	base := t.TempDir()
	data := filepath.Join(base, "agent", "data")
	repo := filepath.Join(base, "repos", "r1")
	for _, d := range []string{data, repo, filepath.Join(base, "ok")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(data, filepath.Join(base, "to-data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "agent"), filepath.Join(base, "to-agent")); err != nil {
		t.Fatal(err)
	}
	g := newTargetGuard(Config{DataDir: data, Repository: "file://" + repo})
	refused := map[string]string{
		data:                                     "is the agent's data dir",
		filepath.Join(base, "to-data"):           "is the agent's data dir",
		filepath.Join(base, "to-data", "x", "y"): "lies inside the agent's data dir",
		filepath.Join(base, "to-agent"):          "contains the agent's data dir",
		base:                                     "contains the agent's data dir",
		filepath.Join(repo, "sub"):               "lies inside the repository",
		filepath.Join(base, "repos"):             "contains the repository",
		"/":                                      "filesystem root",
		"/etc":                                   "system directory",
		"/etc/../etc/x":                          "system directory",
		"/usr/local/x":                           "system directory",
		"/proc/self":                             "system directory",
		"/lib64/x":                               "system directory",
	}
	for target, why := range refused {
		err := g.check(target)
		if !errors.Is(err, wire.ErrUnsafeTarget) || !errors.Is(err, wire.ErrBadRequest) || !strings.Contains(err.Error(), why) {
			t.Errorf("check(%s) = %v; want a refusal saying %q", target, err, why)
		}
	}
	for _, ok := range []string{filepath.Join(base, "ok"), filepath.Join(base, "ok", "new"), filepath.Join(base, "agent", "datadir-sibling"), "/srv/restore", "/var/tmp/x", "/etcetera"} {
		if err := g.check(ok); err != nil {
			t.Errorf("check(%s) = %v; want accepted", ok, err)
		}
	}
	// A non-file repository guards nothing but the data dir.
	if err := newTargetGuard(Config{DataDir: data, Repository: "s3://bucket/prefix"}).check(filepath.Join(base, "repos")); err != nil {
		t.Errorf("s3 repository: %v", err)
	}
}
