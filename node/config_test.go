package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfigFileRejectsUnknownKeyByName(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("node_id: a\nupload_concurency: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
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
	c := DefaultConfig()
	if err := LoadConfigFile(p, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "n7" || c.UploadConcurrency != 3 || c.StepRetryDelay.Milliseconds() != 250 {
		t.Fatalf("loaded %+v", c)
	}
	if c.Repository != "file://"+dir+"/data/repository" || c.RaftAdvertise != c.RaftAddr {
		t.Fatalf("derived defaults: %q %q", c.Repository, c.RaftAdvertise)
	}
}

func TestFinishRejectsOverlappingDirs(t *testing.T) {
	for _, tc := range []struct{ data, root string }{
		{"/srv/db/crayfish", "/srv/db"},
		{"/srv/db", "/srv/db/sub"},
		{"/srv/db", "/srv/db"},
	} {
		c := DefaultConfig()
		c.DataDir, c.Root = tc.data, tc.root
		if err := c.Finish(); err == nil {
			t.Errorf("data_dir %s root %s accepted", tc.data, tc.root)
		}
	}
	c := DefaultConfig()
	c.DataDir, c.Root = "/srv/crayfish", "/srv/db"
	if err := c.Finish(); err != nil {
		t.Errorf("disjoint dirs rejected: %v", err)
	}
	c = DefaultConfig()
	c.DataDir, c.Root = "/srv/db-crayfish", "/srv/db" // a shared prefix is not containment
	if err := c.Finish(); err != nil {
		t.Errorf("sibling with shared prefix rejected: %v", err)
	}
}

func TestFinishCassandraPlugin(t *testing.T) {
	c := DefaultConfig()
	c.DataDir, c.Plugin = "/srv/crayfish", "cassandra"
	if err := c.Finish(); err != nil {
		t.Fatalf("a cassandra node needs no root: %v", err)
	}
	if c.CassandraOverrideFile != "/srv/crayfish/cassandra-override.yaml" {
		t.Errorf("override file defaults to %q", c.CassandraOverrideFile)
	}
	cc, err := c.CassandraConfig()
	if err != nil || cc.Hosts[0] != "127.0.0.1" || cc.DataDirs[0] != "/var/lib/cassandra/data" || cc.Nodetool[0] != "nodetool" || cc.LogFile != "/var/log/cassandra/system.log" {
		t.Fatalf("defaults: %+v %v", cc, err)
	}
	for name, mutate := range map[string]func(*Config){
		"unknown plugin":    func(c *Config) { c.Plugin = "mysql" },
		"no hosts":          func(c *Config) { c.CassandraHosts = nil },
		"relative data dir": func(c *Config) { c.CassandraDataDirs = []string{"data"} },
		"cert without key":  func(c *Config) { c.CassandraTLSCertFile = "/etc/c.pem" },
		"no nodetool":       func(c *Config) { c.CassandraNodetool = " " },
		"missing password":  func(c *Config) { c.CassandraPasswordFile = "/nonexistent/pw" },
	} {
		c := DefaultConfig()
		c.DataDir, c.Plugin = "/srv/crayfish", "cassandra"
		mutate(&c)
		if err := c.Finish(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c = DefaultConfig()
	c.DataDir = "/srv/crayfish"
	if err := c.Finish(); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("a files node without root: %v", err)
	}
}
