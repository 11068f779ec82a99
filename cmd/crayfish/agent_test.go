package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/crayfish-backup/crayfish/cassandra"
	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
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
	def := newConfig()
	for _, f := range def.Fields() {
		if fs.Lookup(flagName(f.Key)) == nil && !f.FileOnly {
			t.Fatalf("config key %s has no flag", f.Key)
		}
	}
	for _, key := range []string{"root", "in_place", "cassandra_hosts", "cassandra_log_file"} {
		if fs.Lookup(flagName(key)) == nil {
			t.Errorf("plugin key %s has no flag", key)
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
	// A plugin's keys come from its configuration type, with its prefix,
	// in the file, the environment and flags alike.
	cyaml := "node_id: c\nplugin: cassandra\ndata_dir: " + dir + "/data\ncassandra_port: 9142\ncassandra_nodetool: /opt/c/bin/nodetool -p 7199\n"
	if err := os.WriteFile(file, []byte(cyaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = loadAgentConfig(file, pflag.NewFlagSet("agent", pflag.ContinueOnError), []string{"CRAYFISH_CASSANDRA_HOSTS=10.0.0.1,10.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	cs := cfg.Plugins.Config("cassandra").(*cassandra.Settings)
	if cs.Port != 9142 || cs.Nodetool != "/opt/c/bin/nodetool -p 7199" || !slices.Equal(cs.Hosts, []string{"10.0.0.1", "10.0.0.2"}) ||
		cs.OverrideFile != filepath.Join(dir, "data", "cassandra-override.yaml") {
		t.Fatalf("cassandra settings: %+v", cs)
	}
	if err := os.WriteFile(file, []byte(cyaml+"cassandra_prot: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadAgentConfig(file, pflag.NewFlagSet("agent", pflag.ContinueOnError), nil); err == nil || !strings.Contains(err.Error(), "cassandra_prot") {
		t.Fatalf("a misspelt plugin key: %v, want an error naming cassandra_prot", err)
	}
}

// TestStartRetriesWithSameID: while the agent has no leader (503) the
// client retries, always with the id it fixed before the first attempt.
func TestStartRetriesWithSameID(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req api.StartBackupRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		ids = append(ids, req.ID)
		n := len(ids)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: "not the raft leader", Code: api.CodeNoLeader})
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(fsm.Operation{ID: req.ID, Kind: fsm.KindBackup, State: fsm.OpRunning})
	}))
	defer srv.Close()
	code, out, errOut := runCLI(t, nil, "--url", srv.URL, "backup", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if len(ids) != 3 || ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("ids sent: %q", ids)
	}
	if !strings.Contains(out, ids[0]) {
		t.Fatalf("output does not show the operation %s: %s", ids[0], out)
	}
}
