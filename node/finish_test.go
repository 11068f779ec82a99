package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin/files"
	"github.com/crayfish-backup/crayfish/storage"
)

// validConfig is a configuration Finish accepts.
func validConfig(t *testing.T) Config {
	t.Helper()
	c := DefaultConfig(files.Driver{})
	c.NodeID, c.DataDir = "n1", t.TempDir()
	c.Plugins.Config("files").(*files.Config).Root = t.TempDir()
	return c
}

// TestFinishRefuses: each invalid setting is refused with an error that
// names it.
func TestFinishRefuses(t *testing.T) {
	if err := func() error { c := validConfig(t); return c.Finish() }(); err != nil {
		t.Fatalf("the valid configuration: %v", err)
	}
	for _, c := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no node id", func(c *Config) { c.NodeID = "" }, "node_id"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"root inside the data dir", func(c *Config) { c.Plugins.Config("files").(*files.Config).Root = filepath.Join(c.DataDir, "r") }, "contain each other"},
		{"bad include", func(c *Config) { c.Plugins.Config("files").(*files.Config).Include = []string{"[x"} }, "include"},
		{"read token without admin token", func(c *Config) { c.APIReadTokenFile = "/r" }, "api_token_file"},
		{"no voters", func(c *Config) { c.MaxVoters = 0 }, "max_voters"},
		{"negative bootstrap_expect", func(c *Config) { c.BootstrapExpect = -1 }, "bootstrap_expect"},
		{"zero dead_node_timeout", func(c *Config) { c.DeadNodeTimeout = 0 }, "dead_node_timeout"},
		{"zero node_timeout", func(c *Config) { c.NodeTimeout = 0 }, "node_timeout"},
		{"short raft_timeout", func(c *Config) { c.RaftTimeout = 10 * time.Millisecond }, "raft_timeout"},
		{"no upload concurrency", func(c *Config) { c.UploadConcurrency = 0 }, "upload_concurrency"},
		{"no download concurrency", func(c *Config) { c.DownloadConcurrency = 0 }, "download_concurrency"},
		{"no step attempts", func(c *Config) { c.StepAttempts = 0 }, "step_attempts"},
		{"negative nice", func(c *Config) { c.Nice = -1 }, "nice -1"},
		{"nice over 19", func(c *Config) { c.Nice = 20 }, "nice 20"},
		{"negative hash workers", func(c *Config) { c.HashWorkers = -1 }, "hash_workers"},
		{"negative bandwidth", func(c *Config) { c.UploadBytesPerSecond = -1 }, "upload_bytes_per_second"},
		{"negative retry delay", func(c *Config) { c.StepRetryDelay = -time.Second }, "step_retry_delay"},
		{"negative memory limit", func(c *Config) { c.MemoryLimitMiB = -1 }, "memory_limit_mib"},
		{"negative request rate", func(c *Config) { c.StorageRequestsPerSecond = -1 }, "storage_requests_per_second"},
		{"bad log level", func(c *Config) { c.LogLevel = "verbose" }, `"verbose"`},
		{"exposed http", func(c *Config) { c.HTTPAddr = "0.0.0.0:7300" }, "unguarded"},
		{"no plugins registered", func(c *Config) { c.Plugins = nil }, `plugin "files"`},
	} {
		cfg := validConfig(t)
		c.mutate(&cfg)
		err := cfg.Finish()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
}

// TestFinishDerives: the data dir is made absolute; the repository and
// the advertised addresses default from it and the listeners, and are
// left alone when given.
func TestFinishDerives(t *testing.T) {
	t.Chdir(t.TempDir())
	c := validConfig(t)
	c.DataDir = "rel/data"
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(c.DataDir) || !strings.HasSuffix(c.DataDir, "/rel/data") {
		t.Errorf("data dir %q", c.DataDir)
	}
	if c.Repository != "file://"+c.DataDir+"/repository" || !c.embeddedRepository {
		t.Errorf("embedded repository %q %v", c.Repository, c.embeddedRepository)
	}
	if c.RaftAdvertise != c.RaftAddr || c.GossipAdvertise != c.GossipAddr || c.HTTPAdvertise != c.HTTPAddr {
		t.Errorf("advertised addresses %q %q %q", c.RaftAdvertise, c.GossipAdvertise, c.HTTPAdvertise)
	}

	c = validConfig(t)
	c.Repository, c.RaftAdvertise, c.GossipAdvertise, c.HTTPAdvertise = "s3://b/p", "10.0.0.1:1", "10.0.0.1:2", "10.0.0.1:3"
	c.RetentionKeepLast, c.RetentionKeepWithin, c.RetentionMinKeep = 7, 48*time.Hour, 2
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if c.Repository != "s3://b/p" || c.embeddedRepository || c.RaftAdvertise != "10.0.0.1:1" || c.GossipAdvertise != "10.0.0.1:2" || c.HTTPAdvertise != "10.0.0.1:3" {
		t.Errorf("given values changed: %+v", c)
	}
	want := storage.RetentionPolicy{KeepLast: 7, KeepWithin: storage.Duration(48 * time.Hour), MinKeep: 2}
	if p := c.RetentionPolicy(); p != want {
		t.Errorf("retention policy %+v, want %+v", p, want)
	}
	if cc := c.coordConfig(); cc.Retention != want || cc.NodeID != "n1" || cc.Plugin != "files" || cc.StepAttempts != c.StepAttempts {
		t.Errorf("coordinator config %+v", cc)
	}
	if wc := c.workerConfig(); wc.NodeID != "n1" || wc.DataDir != c.DataDir || wc.Repository != "s3://b/p" || wc.UploadConcurrency != c.UploadConcurrency {
		t.Errorf("worker config %+v", wc)
	}
}

// TestLoadConfigFileErrors: a missing file, bad YAML, a document that is
// not a mapping and a value of the wrong type are errors naming the
// file; an empty file changes nothing.
func TestLoadConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := DefaultConfig(files.Driver{})
	if err := LoadConfigFile(filepath.Join(dir, "missing.yaml"), &c); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("a missing file: %v", err)
	}
	for name, content := range map[string]string{
		"bad.yaml":    "node_id: [unclosed\n",
		"list.yaml":   "- a\n- b\n",
		"type.yaml":   "upload_concurrency: many\n",
		"ptype.yaml":  "include: {a: b}\n",
		"scalar.yaml": "just a string\n",
	} {
		p := write(name, content)
		if err := LoadConfigFile(p, &c); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
	before := c
	if err := LoadConfigFile(write("empty.yaml", ""), &c); err != nil || c.NodeID != before.NodeID || c.UploadConcurrency != before.UploadConcurrency {
		t.Errorf("an empty file: %v", err)
	}
}

// TestPluginsNil: a configuration without registered drivers has no
// plugin and no plugin keys.
func TestPluginsNil(t *testing.T) {
	var p *Plugins
	if _, ok := p.Driver("files"); ok || p.Config("files") != nil || p.Names() != nil {
		t.Error("nil plugins answered")
	}
	if _, _, ok := p.pluginFor("root"); ok {
		t.Error("nil plugins own a key")
	}
	c := DefaultConfig()
	c.Plugins = nil
	for _, f := range c.Fields() {
		if f.Key == "root" {
			t.Error("a root key without the files driver")
		}
	}
	p = NewPlugins(files.Driver{})
	if _, ok := p.Driver("cassandra"); ok || p.Config("cassandra") != nil {
		t.Error("an unregistered driver answered")
	}
	if _, _, ok := p.pluginFor("cassandra_hosts"); ok {
		t.Error("an unregistered driver's key was taken")
	}
}
