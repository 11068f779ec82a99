package node

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/plugin/files"
)

// freePort returns a 127.0.0.1 port free for TCP and UDP (gossip listens
// on both) at the time of the call.
func freePort(t *testing.T) string {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return addr
	}
	t.Fatal("no free port")
	return ""
}

// writeTree writes files (path → content) below root.
func writeTree(t *testing.T, root string, tree map[string]string) {
	t.Helper()
	for p, content := range tree {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree returns the regular files below root (slash path → content).
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTree fails t unless got equals want.
func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d files %v, want %d %v", what, len(got), keys(got), len(want), keys(want))
		return
	}
	for p, c := range want {
		if g, ok := got[p]; !ok || g != c {
			t.Errorf("%s: %s = %q (present %v), want %q", what, p, g, ok, c)
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

var initialTree = map[string]string{
	"a.txt":         "alpha\n",
	"dir/b.txt":     "bravo\n",
	"dir/sub/c.bin": strings.Repeat("charlie", 1000),
}

// agentOpts configure a test agent; zero values give a lone node with
// an embedded repository and a root holding initialTree.
type agentOpts struct {
	id              string
	dataDir         string // default: a new temp dir
	root            string // default: a new temp dir with initialTree
	repository      string
	keyFile         string
	join            []string
	bootstrapExpect int
	maxVoters       int
	token           string // admin token: written to api_token_file
	mutate          func(*Config)
}

// testAgent is an in-process agent serving its HTTP API on a free port.
type testAgent struct {
	t      *testing.T
	cfg    Config
	agent  *Agent
	base   string
	root   string
	token  string
	cancel context.CancelFunc
	done   chan error
}

// testConfig is a finished configuration for opts.
func testConfig(t *testing.T, o agentOpts) Config {
	t.Helper()
	if o.id == "" {
		o.id = "n1"
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if o.root == "" {
		o.root = t.TempDir()
		writeTree(t, o.root, initialTree)
	}
	cfg := DefaultConfig(files.Driver{})
	cfg.NodeID, cfg.DataDir = o.id, o.dataDir
	cfg.Plugins.Config("files").(*files.Config).Root = o.root
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = freePort(t), freePort(t), freePort(t)
	cfg.Repository, cfg.KeyFile = o.repository, o.keyFile
	cfg.Join, cfg.BootstrapExpect = o.join, o.bootstrapExpect
	if o.maxVoters > 0 {
		cfg.MaxVoters = o.maxVoters
	}
	cfg.RaftTimeout = 200 * time.Millisecond
	cfg.NodeTimeout = 20 * time.Second
	cfg.StepRetryDelay = 100 * time.Millisecond
	cfg.LockWait = 5 * time.Second
	cfg.MemoryLimitMiB = 0 // leave the test process's memory limit alone
	if o.token != "" {
		cfg.APITokenFile = filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(cfg.APITokenFile, []byte(o.token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startAgent starts an agent for opts; it stops when the test ends.
func startAgent(t *testing.T, o agentOpts) *testAgent {
	t.Helper()
	return runAgent(t, testConfig(t, o), o.token)
}

func runAgent(t *testing.T, cfg Config, token string) *testAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ag, err := NewAgent(ctx, cfg, quietLog())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	a := &testAgent{t: t, cfg: cfg, agent: ag, base: "http://" + cfg.HTTPAddr, root: cfg.Plugins.Config("files").(*files.Config).Root,
		token: token, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- ag.Run(ctx) }()
	t.Cleanup(a.stop)
	a.waitHTTP()
	return a
}

// stop ends the agent and waits for Run to return (idempotent).
func (a *testAgent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.cancel = nil
	select {
	case err := <-a.done:
		if err != nil {
			a.t.Errorf("agent %s: Run: %v", a.cfg.NodeID, err)
		}
	case <-time.After(30 * time.Second):
		a.t.Errorf("agent %s did not stop", a.cfg.NodeID)
	}
}

func (a *testAgent) waitHTTP() {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(a.base + "/healthz"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("agent %s: HTTP never came up", a.cfg.NodeID)
}

// call sends body (a string is sent as is, anything else as JSON; nil
// sends nothing) and decodes a JSON answer into out (if not nil). It
// returns the status and the raw answer.
func (a *testAgent) call(method, path string, body, out any) (int, []byte) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, raw
}

// expect calls and fails the test unless the status is want.
func (a *testAgent) expect(want int, method, path string, body, out any) []byte {
	a.t.Helper()
	code, raw := a.call(method, path, body, out)
	if code != want {
		a.t.Fatalf("%s %s: %d %s, want %d", method, path, code, raw, want)
	}
	return raw
}

// expectError calls and checks the status and the JSON error code.
func (a *testAgent) expectError(status int, code, method, path string, body any) string {
	a.t.Helper()
	var e struct{ Error, Code string }
	got, raw := a.call(method, path, body, &e)
	if got != status || e.Code != code {
		a.t.Fatalf("%s %s: %d %s, want %d %s", method, path, got, raw, status, code)
	}
	return e.Error
}

// waitLeader waits until the agent leads and its coordinator has claimed
// its epoch and raised its own fence to it. The claim is applied after
// every earlier entry, so the replica has caught up; and the fencing
// (which the engine runs in a goroutine Run does not wait for) has
// written fence.json, so nothing writes to the data dir after a stop.
func (a *testAgent) waitLeader() {
	a.t.Helper()
	eventually(a.t, "agent "+a.cfg.NodeID+" leading and fenced", 20*time.Second, func() bool {
		if !a.agent.store.IsLeader() {
			return false
		}
		epoch, coord := a.agent.store.FSM().Epoch()
		if coord != a.cfg.NodeID {
			return false
		}
		for _, c := range a.agent.server.fence.Journal().Admitted {
			if c.OpID == "-" && c.Epoch == epoch {
				return true
			}
		}
		return false
	})
}

// start posts a start request and returns the new operation (202).
func (a *testAgent) start(path string, body any) *fsm.Operation {
	a.t.Helper()
	var op fsm.Operation
	a.expect(http.StatusAccepted, http.MethodPost, path, body, &op)
	if op.ID == "" {
		a.t.Fatalf("POST %s: operation without an id", path)
	}
	return &op
}

// waitOp long-polls the operation until it finishes. The bound only
// catches an operation that never ends: under -race with coverage on a
// loaded machine, a restore of 1,500 files from corrupt packs took 29 s.
func (a *testAgent) waitOp(id string) *fsm.Operation {
	a.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var rev uint64
	for time.Now().Before(deadline) {
		var op fsm.Operation
		a.expect(http.StatusOK, http.MethodGet, "/v1/operations/"+id+"?wait=5s&revision="+strconv.FormatUint(rev, 10), nil, &op)
		if op.State.Terminal() {
			return &op
		}
		rev = op.Revision
	}
	a.t.Fatalf("operation %s did not finish", id)
	return nil
}

// run starts an operation and waits for it to succeed.
func (a *testAgent) run(path string, body any) *fsm.Operation {
	a.t.Helper()
	op := a.waitOp(a.start(path, body).ID)
	if op.State != fsm.OpSucceeded {
		a.t.Fatalf("POST %s: operation %s %s: %s", path, op.ID, op.State, op.Error)
	}
	return op
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// expectMetrics checks that /metrics shows every line of want, waiting a
// little: the coordinator counts an operation right after the FSM records
// its end, which a caller may see first.
func (a *testAgent) expectMetrics(want ...string) {
	a.t.Helper()
	for _, w := range want {
		var metrics []byte
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, metrics = a.call(http.MethodGet, "/metrics", nil, nil); strings.Contains(string(metrics), w) || time.Now().After(deadline) {
				break
			}
		}
		if !strings.Contains(string(metrics), w) {
			a.t.Errorf("metrics lack %s", w)
		}
	}
}
