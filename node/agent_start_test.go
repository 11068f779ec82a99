package node

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

// TestAgentRestart: an agent stopped and started on its data dir keeps
// its Raft state, its operations, its key file and its backups.
func TestAgentRestart(t *testing.T) {
	cfg := testConfig(t, agentOpts{})
	a := runAgent(t, cfg, "")
	a.waitLeader()
	b := a.run("/v1/backups", api.StartBackupRequest{ID: "before"})
	key, err := os.ReadFile(filepath.Join(cfg.DataDir, "repository.key"))
	if err != nil {
		t.Fatal(err)
	}
	a.stop()

	a = runAgent(t, cfg, "")
	a.waitLeader()
	if k, _ := os.ReadFile(filepath.Join(cfg.DataDir, "repository.key")); !bytes.Equal(k, key) {
		t.Error("the key file changed across a restart")
	}
	var op fsm.Operation
	a.expect(http.StatusOK, http.MethodGet, "/v1/operations/before", nil, &op)
	if op.State != fsm.OpSucceeded || op.BackupID != b.BackupID {
		t.Errorf("the operation after a restart: %s", mustJSON(t, op))
	}
	var list api.BackupList
	a.expect(http.StatusOK, http.MethodGet, "/v1/backups", nil, &list)
	if len(list.Backups) != 1 || list.Backups[0].BackupID != b.BackupID {
		t.Errorf("backups after a restart: %s", mustJSON(t, list))
	}
	a.run("/v1/backups", api.StartBackupRequest{ID: "after"})
}

// TestEmbeddedRepositoryWithPassword: with CRAYFISH_PASSWORD the
// embedded repository is encrypted with it and no key file is written;
// without it the repository cannot be opened again.
func TestEmbeddedRepositoryWithPassword(t *testing.T) {
	t.Setenv(PasswordEnv, "correct horse battery staple")
	cfg := testConfig(t, agentOpts{})
	a := runAgent(t, cfg, "")
	a.waitLeader()
	a.run("/v1/backups", api.StartBackupRequest{})
	a.stop()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "repository.key")); !os.IsNotExist(err) {
		t.Errorf("a key file next to a password-encrypted repository: %v", err)
	}
	t.Setenv(PasswordEnv, "")
	if ag, err := NewAgent(context.Background(), cfg, quietLog()); err == nil {
		ag.close()
		t.Fatal("opened a password-encrypted repository without the password")
	}
	// And the failed start left the data dir usable.
	t.Setenv(PasswordEnv, "correct horse battery staple")
	a = runAgent(t, cfg, "")
	a.waitLeader()
}

// TestNewAgentErrors: each thing an agent needs at start is checked, and
// a failed start releases what it opened (the same data dir then starts).
func TestNewAgentErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, c := range []struct {
		name   string
		mutate func(*Config)
		want   string
		reuse  bool // start the data dir after the failure
	}{
		{"data dir is a file", func(c *Config) { c.DataDir = write("file", "x") }, "data dir", false},
		{"snapshots dir is a file", func(c *Config) {
			if err := os.WriteFile(filepath.Join(c.DataDir, "snapshots"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "data dir", false},
		{"unknown plugin", func(c *Config) { c.Plugin = "oracle" }, `"oracle"`, false},
		{"missing key file", func(c *Config) { c.KeyFile = filepath.Join(dir, "nokey") }, "key file", false},
		{"repository not initialised", func(c *Config) {
			c.Repository, c.embeddedRepository, c.KeyFile = "file://"+filepath.Join(dir, "none"), false, write("k", strings.Repeat("ab", 32))
		}, "not initialized", false},
		{"corrupt fence", func(c *Config) { writeFileT(t, filepath.Join(c.DataDir, "fence.json"), "{") }, "fence", false},
		{"raft address taken", func(c *Config) { c.RaftAddr, c.RaftAdvertise = busy.Addr().String(), busy.Addr().String() }, "raft transport", true},
		{"missing token file", func(c *Config) { c.APITokenFile = filepath.Join(dir, "notoken") }, "admin token", true},
		{"bad gossip key", func(c *Config) { c.GossipKeyFile = write("gk", "short") }, "gossip key", true},
		{"gossip address taken", func(c *Config) { c.GossipAddr, c.GossipAdvertise = busy.Addr().String(), busy.Addr().String() }, "gossip on", true},
		{"missing TLS certificate", func(c *Config) {
			c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile = filepath.Join(dir, "cert"), filepath.Join(dir, "key"), filepath.Join(dir, "ca")
		}, "certificate file", true},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			cfg := testConfig(t, agentOpts{})
			c.mutate(&cfg)
			ag, err := NewAgent(context.Background(), cfg, quietLog())
			if err == nil {
				ag.close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want an error naming %s", err, c.want)
			}
			if !c.reuse {
				return
			}
			// Whatever was opened was closed: the data dir starts (its
			// Raft log is locked while open).
			a := startAgent(t, agentOpts{dataDir: cfg.DataDir})
			a.waitLeader()
		})
	}
}

func writeFileT(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRunHTTPAddressTaken: Run fails when it cannot listen, and releases
// the agent's Raft store and repository.
func TestRunHTTPAddressTaken(t *testing.T) {
	cfg := testConfig(t, agentOpts{})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	ag, err := NewAgent(context.Background(), cfg, quietLog())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	err = ag.Run(context.Background())
	ln.Close()
	if err == nil || !strings.Contains(err.Error(), "http listen") {
		t.Fatalf("Run on a taken address: %v", err)
	}
	a := runAgent(t, cfg, "")
	a.waitLeader()
}

// TestSetNice: setting every thread to the niceness it has succeeds and
// changes nothing.
func TestSetNice(t *testing.T) {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatalf("getpriority: %v", err)
	}
	nice := 20 - prio // the raw system call answers 20 - nice
	if err := setNice(nice); err != nil {
		t.Fatalf("setNice(%d), the current niceness: %v", nice, err)
	}
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatalf("the agent's threads: %v", err)
	}
	for _, d := range tids {
		tid, _ := strconv.Atoi(d.Name())
		if p, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil && 20-p != nice {
			t.Errorf("thread %d at niceness %d, want %d", tid, 20-p, nice)
		}
	}
}
