package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/internal/testbin"
	"github.com/crayfish-backup/crayfish/node/api"
)

// binary is the crayfish executable built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	if b := os.Getenv(envNetnsBinary); b != "" {
		// A child run inside a network namespace (partition_test.go): the
		// parent built the binary already.
		binary = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "crayfish-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// With CRAYFISH_COVERDIR set, a coverage build whose processes inherit
	// GOCOVERDIR (docs/coverage.md).
	binary, err = testbin.Build(dir, "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "building crayfish:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddrOn returns a free port on ip, free for TCP and UDP alike
// (gossip uses both on one port).
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatalf("no free TCP+UDP port on %s", ip)
	return ""
}

// agent is one crayfish agent process.
type agent struct {
	t       *testing.T
	nodeID  string
	dataDir string
	root    string
	repo    string // repository URL
	keyFile string // unlocks repo
	http    string
	raft    string
	gossip  string
	extra   []string
	// clustered agents wait for any leader at start, not to lead.
	clustered bool
	secure    *security
	cmd       *exec.Cmd
	logPath   string
	exited    chan struct{}
}

type agentOpts struct {
	nodeID  string
	dataDir string
	root    string
	repo    string // with keyFile; default: a new repository made by initRepo
	keyFile string
	extra   []string // more flags
	// ip is the loopback address the agent binds (default 127.0.0.1).
	ip string
	// clustered: the agent joins others (extra carries --join or
	// --bootstrap-expect); start waits for a leader, not for leadership.
	clustered bool
	secure    *security
}

// initRepo creates an encrypted file:// repository with `crayfish init`
// and returns its URL and the generated key file.
func initRepo(t *testing.T) (url, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	url = "file://" + filepath.Join(dir, "repository")
	keyFile = filepath.Join(dir, "repo.key")
	out, err := exec.Command(binary, "init", "--repository", url, "--key-file", keyFile).CombinedOutput()
	if err != nil {
		t.Fatalf("crayfish init: %v\n%s", err, out)
	}
	return url, keyFile
}

func newAgent(t *testing.T, o agentOpts) *agent {
	t.Helper()
	if o.nodeID == "" {
		o.nodeID = "node1"
	}
	if o.dataDir == "" {
		o.dataDir = filepath.Join(t.TempDir(), "data")
	}
	if o.root == "" {
		o.root = filepath.Join(t.TempDir(), "root")
		if err := os.MkdirAll(o.root, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if o.repo == "" {
		o.repo, o.keyFile = initRepo(t)
	}
	if o.ip == "" {
		o.ip = "127.0.0.1"
	}
	a := &agent{t: t, nodeID: o.nodeID, dataDir: o.dataDir, root: o.root, repo: o.repo, keyFile: o.keyFile, extra: o.extra,
		http: freeAddrOn(t, o.ip), raft: freeAddrOn(t, o.ip), gossip: freeAddrOn(t, o.ip), clustered: o.clustered, secure: o.secure,
		logPath: filepath.Join(t.TempDir(), "agent.log")}
	a.launchBound(o.ip)
	if !o.clustered {
		a.waitReady(30 * time.Second)
	}
	t.Cleanup(a.stop)
	return a
}

// launchBound launches a new agent and, if it exits at once because one
// of its ports was taken meanwhile, launches it again on new ports:
// freeAddrOn's ports are free only when it looks, and the outgoing
// connections of tests running beside this one take ephemeral ports too
// (a five-node cluster failed so in CI).
func (a *agent) launchBound(ip string) {
	a.t.Helper()
	for try := 1; ; try++ {
		logged := len(a.logs())
		a.launch()
		if !a.exitedOnBind(logged, 15*time.Second) || try == 5 {
			return
		}
		a.t.Logf("agent %s: a port was taken before it could bind; new ports (try %d)", a.nodeID, try+1)
		a.cmd = nil
		a.http, a.raft, a.gossip = freeAddrOn(a.t, ip), freeAddrOn(a.t, ip), freeAddrOn(a.t, ip)
	}
}

// exitedOnBind waits until the agent answers HTTP (its listeners are
// bound) or exits, and reports whether it exited for want of a port (in
// its log after offset logged).
func (a *agent) exitedOnBind(logged int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-a.exited:
			return strings.Contains(a.logs()[logged:], "address already in use")
		default:
		}
		if a.getJSON("/v1/cluster", nil) != 0 {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (a *agent) url() string {
	if a.secure != nil {
		return "https://" + a.http
	}
	return "http://" + a.http
}

// security is the TLS and token setup of a secured agent, and how a
// client reaches it.
type security struct {
	caFile, certFile, keyFile string // the node's and test client's certificate
	adminTokenFile            string
	readTokenFile             string
	gossipKeyFile             string
	client                    *http.Client // TLS client with the admin token
}

// agentFlags are the agent flags that turn security on.
func (s *security) agentFlags() []string {
	return []string{"--tls-cert-file", s.certFile, "--tls-key-file", s.keyFile, "--tls-ca-file", s.caFile,
		"--tls-verify-clients", "--api-token-file", s.adminTokenFile, "--api-read-token-file", s.readTokenFile,
		"--gossip-key-file", s.gossipKeyFile}
}

// cliFlags are the client flags a secured agent needs.
func (s *security) cliFlags() []string {
	return []string{"--ca-file", s.caFile, "--cert-file", s.certFile, "--key-file-tls", s.keyFile, "--token-file", s.adminTokenFile}
}

func (a *agent) client() *http.Client {
	if a.secure != nil {
		return a.secure.client
	}
	return httpClient
}

// start launches the process and waits until it leads its cluster of one
// (or, clustered, until it knows a leader).
func (a *agent) start() {
	a.t.Helper()
	a.launch()
	a.waitReady(30 * time.Second)
}

// launch starts the process without waiting.
func (a *agent) launch() {
	a.t.Helper()
	args := append([]string{"agent", "--node-id", a.nodeID, "--data-dir", a.dataDir, "--root", a.root,
		"--repository", a.repo, "--key-file", a.keyFile, "--http-addr", a.http, "--raft-addr", a.raft,
		"--gossip-addr", a.gossip, "--cluster-name", strings.ReplaceAll(a.t.Name(), "/", "-")}, a.extra...)
	if a.secure != nil {
		args = append(args, a.secure.agentFlags()...)
	}
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		a.t.Fatal(err)
	}
	a.cmd = exec.Command(binary, args...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	logf.Close()
	a.exited = make(chan struct{})
	go func(c *exec.Cmd, ch chan struct{}) { c.Wait(); close(ch) }(a.cmd, a.exited)
}

// waitReady waits until the agent leads (alone) or knows a leader
// (clustered).
func (a *agent) waitReady(timeout time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var st api.ClusterStatus
		if code := a.getJSON("/v1/cluster", &st); code == 200 && (st.State == "Leader" || a.clustered && st.LeaderID != "") {
			return
		}
		select {
		case <-a.exited:
			a.t.Fatalf("agent exited during start-up:\n%s", a.logs())
		case <-time.After(100 * time.Millisecond):
		}
	}
	a.t.Fatalf("agent did not become leader in time:\n%s", a.logs())
}

func (a *agent) logs() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

// kill sends SIGKILL: no shutdown code runs.
func (a *agent) kill() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
	a.cmd = nil
}

// stop shuts the agent down gracefully.
func (a *agent) stop() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		a.t.Errorf("agent ignored SIGTERM for 15s; killing it")
		a.kill()
	}
	a.cmd = nil
	if a.t.Failed() {
		a.t.Logf("agent %s log:\n%s", a.nodeID, tail(a.logs(), 4000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// httpClient bounds every test request: a stopped (SIGSTOP) agent
// accepts connections but never answers.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// getJSON fetches path into v and returns the status code (0 on transport error).
func (a *agent) getJSON(path string, v any) int { return a.getJSONWith(a.client(), path, v) }

func (a *agent) getJSONWith(hc *http.Client, path string, v any) int {
	req, err := http.NewRequest(http.MethodGet, a.url()+path, nil)
	if err != nil {
		return 0
	}
	if a.secure != nil {
		req.Header.Set("Authorization", "Bearer "+readFileString(a.t, a.secure.adminTokenFile))
		if hc != a.secure.client {
			hc = &http.Client{Timeout: hc.Timeout, Transport: a.secure.client.Transport}
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

// post sends raw body to path and returns status and the decoded body.
func (a *agent) post(path, body string) (int, map[string]any) {
	a.t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.url()+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if a.secure != nil {
		req.Header.Set("Authorization", "Bearer "+readFileString(a.t, a.secure.adminTokenFile))
	}
	resp, err := a.client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		a.t.Fatalf("POST %s: %d with non-JSON body %q", path, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// operation reads an operation, optionally long-polling.
func (a *agent) operation(id string) *fsm.Operation {
	a.t.Helper()
	var op fsm.Operation
	if code := a.getJSON("/v1/operations/"+id, &op); code != 200 {
		a.t.Fatalf("GET operation %s: status %d", id, code)
	}
	return &op
}

// waitOp long-polls until the operation finishes.
func (a *agent) waitOp(id string, timeout time.Duration) *fsm.Operation {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	var rev uint64
	for time.Now().Before(deadline) {
		var op fsm.Operation
		code := a.getJSON(fmt.Sprintf("/v1/operations/%s?wait=10s&revision=%d", id, rev), &op)
		if code == 200 {
			if op.State.Terminal() {
				return &op
			}
			rev = op.Revision
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	a.t.Fatalf("operation %s did not finish within %s", id, timeout)
	return nil
}

// cliResult is one run of the crayfish client.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cli runs the crayfish client against this agent.
func (a *agent) cli(args ...string) cliResult {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	global := []string{"--url", a.url()}
	if a.secure != nil {
		global = append(global, a.secure.cliFlags()...)
	}
	cmd := exec.CommandContext(ctx, binary, append(global, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		a.t.Fatalf("crayfish %v: %v", args, err)
	}
	return res
}

// backupWait runs `crayfish backup --wait --output json` and returns the
// finished operation; it fails the test unless the backup succeeded.
func (a *agent) backupWait(extra ...string) *fsm.Operation {
	a.t.Helper()
	res := a.cli(append([]string{"backup", "--wait", "--output", "json"}, extra...)...)
	if res.code != 0 {
		a.t.Fatalf("backup failed (exit %d): %s\nstdout: %s\nagent log:\n%s", res.code, res.stderr, res.stdout, tail(a.logs(), 3000))
	}
	var op fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &op); err != nil {
		a.t.Fatalf("backup --output json printed non-JSON: %v\n%s", err, res.stdout)
	}
	if op.State != fsm.OpSucceeded || op.BackupID == "" {
		a.t.Fatalf("backup op %s state %s backup_id %q", op.ID, op.State, op.BackupID)
	}
	return &op
}

// stepResult decodes the result of the first step called name.
func stepResult(t *testing.T, op *fsm.Operation, name string, v any) *fsm.Step {
	t.Helper()
	for i := range op.Steps {
		if op.Steps[i].Name == name {
			if v != nil {
				if err := json.Unmarshal(op.Steps[i].Result, v); err != nil {
					t.Fatalf("step %s result %q: %v", name, op.Steps[i].Result, err)
				}
			}
			return &op.Steps[i]
		}
	}
	t.Fatalf("operation %s has no step %s", op.ID, name)
	return nil
}

func readFileString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// scrapeMetrics reads an agent's crayfish_ series, each under its name
// with its labels as exposed (crayfish_x{kind="backup"}).
func scrapeMetrics(t *testing.T, a *agent) map[string]float64 {
	t.Helper()
	resp, err := a.client().Get(a.url() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || !strings.HasPrefix(line, "crayfish_") {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
