package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestAgentConfigPrecedence: defaults < file < environment < flags, and
// every YAML key has a flag.
func TestAgentConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	yaml := "node_id: from-file\nroot: " + dir + "/root\ndata_dir: " + dir + "/data\nupload_concurrency: 2\nhttp_addr: 127.0.0.1:1\nstep_retry_delay: 3s\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	registerConfigFlags(fs)
	for _, f := range configFields() {
		if fs.Lookup(flagName(yamlKey(f))) == nil {
			t.Fatalf("config key %s has no flag", yamlKey(f))
		}
	}
	if err := fs.Parse([]string{"--node-id", "from-flag", "--step-retry-delay", "5s"}); err != nil {
		t.Fatal(err)
	}
	env := []string{"CRAYFISH_NODE_ID=from-env", "CRAYFISH_UPLOAD_CONCURRENCY=7", "CRAYFISH_URL=http://x"}
	cfg, err := loadAgentConfig(file, fs, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeID != "from-flag" || cfg.UploadConcurrency != 7 || cfg.HTTPAddr != "127.0.0.1:1" ||
		cfg.StepRetryDelay != 5*time.Second || cfg.RaftAddr != "127.0.0.1:7301" {
		t.Fatalf("precedence wrong: %+v", cfg)
	}
	if _, err := loadAgentConfig(file, fs, []string{"CRAYFISH_UPLOAD_CONCURRENCY=many"}); err == nil {
		t.Fatal("non-integer env value accepted")
	}
}
