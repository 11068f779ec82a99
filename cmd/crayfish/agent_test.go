package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

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
