package node

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/plugin/files"
	"github.com/crayfish-backup/crayfish/node/wire"
)

func TestLoadConfigFileRejectsUnknownKeyByName(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("node_id: a\nupload_concurency: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig(files.Driver{})
	err := LoadConfigFile(p, &c)
	if err == nil || !strings.Contains(err.Error(), "upload_concurency") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestLoadConfigFileAndFinish(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	yaml := "node_id: n7\ndata_dir: " + dir + "/data\nroot: " + dir + "/root\nupload_concurrency: 3\nstep_retry_delay: 250ms\n"
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig(files.Driver{})
	if err := LoadConfigFile(p, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "n7" || c.UploadConcurrency != 3 || c.StepRetryDelay.Milliseconds() != 250 || c.Plugins.Config("files").(*files.Config).Root != dir+"/root" {
		t.Fatalf("loaded %+v", c)
	}
	if c.Repository != "file://"+dir+"/data/repository" || c.RaftAdvertise != c.RaftAddr {
		t.Fatalf("derived defaults: %q %q", c.Repository, c.RaftAdvertise)
	}
}

func TestFinishNeedsARegisteredPlugin(t *testing.T) {
	c := DefaultConfig(files.Driver{})
	c.DataDir, c.Plugin = "/srv/crayfish", "mysql"
	if err := c.Finish(); err == nil || !strings.Contains(err.Error(), `"mysql"`) || !strings.Contains(err.Error(), "files") {
		t.Fatalf("an unknown plugin: %v, want an error naming it and the registered ones", err)
	}
	c = DefaultConfig(files.Driver{})
	c.DataDir = "/srv/crayfish"
	if err := c.Finish(); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("a files node without root: %v", err)
	}
}

// TestPluginsOpen: a node opens its own plugin and the portable ones; a
// backup of a database the node does not run is refused before anything
// is touched.
func TestPluginsOpen(t *testing.T) {
	c := DefaultConfig(files.Driver{}, fakeDriver{})
	c.DataDir, c.Plugin = t.TempDir(), "fake"
	np, err := openPlugins(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := np.Own().(fakePlugin); !ok {
		t.Fatalf("own plugin is %T", np.Own())
	}
	if _, err := np.For("files"); err != nil {
		t.Errorf("a files backup on a fake node: %v", err)
	}
	c.Plugin = "files"
	c.Plugins.Config("files").(*files.Config).Root = t.TempDir()
	np, err = openPlugins(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := np.For("fake"); !wire.IsPermanent(err) || !errors.Is(err, wire.ErrBadRequest) {
		t.Errorf("a fake backup on a files node: %v, want a permanent bad request", err)
	}
}

// fakeDriver is a plugin that is not portable.
type fakeDriver struct{}

type fakeConfig struct {
	Level int `yaml:"level" help:"a setting"`
}

func (*fakeConfig) Finish(plugin.Env) error { return nil }

type fakePlugin struct{ plugin.Plugin }

func (fakeDriver) Name() string                                          { return "fake" }
func (fakeDriver) NewConfig() plugin.Config                              { return &fakeConfig{Level: 1} }
func (fakeDriver) Open(plugin.Config, plugin.Env) (plugin.Plugin, error) { return fakePlugin{}, nil }
func (fakeDriver) PlanRestore(plugin.RestoreRequest) (plugin.Plan, error) {
	return plugin.Plan{}, nil
}

func TestLoadConfigFilePluginKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("node_id: a\nplugin: fake\nfake_level: 4\nroot: /srv/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig(files.Driver{}, fakeDriver{})
	if err := LoadConfigFile(p, &c); err != nil {
		t.Fatal(err)
	}
	if lv := c.Plugins.Config("fake").(*fakeConfig).Level; lv != 4 {
		t.Errorf("fake_level = %d, want 4", lv)
	}
	if r := c.Plugins.Config("files").(*files.Config).Root; r != "/srv/x" {
		t.Errorf("root = %q", r)
	}
	if err := os.WriteFile(p, []byte("node_id: a\nfake_levle: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := LoadConfigFile(p, &c); err == nil || !strings.Contains(err.Error(), "fake_levle") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a misspelt plugin key: %v", err)
	}
	if err := os.WriteFile(p, []byte("fake_level: many\n"), 0o644); err == nil {
		if err := LoadConfigFile(p, &c); err == nil || !strings.Contains(err.Error(), "many") {
			t.Errorf("a bad plugin value: %v", err)
		}
	}
	keys := map[string]bool{}
	for _, f := range c.Fields() {
		keys[f.Key] = true
	}
	for _, k := range []string{"node_id", "plugin", "root", "include", "fake_level"} {
		if !keys[k] {
			t.Errorf("Fields lacks %s", k)
		}
	}
}
