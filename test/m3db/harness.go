// Package m3dbtest runs a real M3DB cluster for tests: a real etcd and real
// m3dbnode v1.5.0 processes, started and stopped by scripts/m3db.sh, and
// driven over M3DB's own JSON HTTP APIs (node API on :9002, cluster API on
// :9003, the embedded coordinator on :7201). It uses only the standard
// library, so it adds nothing to crayfish's go.mod; the m3dbnode binary is
// built from its own wrapper module (test/m3db/wrapper) by
// `scripts/m3db.sh install` and cached under ~/.cache/crayfish.
//
// A test that uses it fails (never skips) when m3dbnode or etcd is not
// installed.
package m3dbtest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Script is the path of scripts/m3db.sh in this checkout.
func Script() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("m3dbtest: cannot find its own source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "m3db.sh")
}

// Harness runs the script for one test with its own nodes directory.
type Harness struct {
	t        testing.TB
	NodesDir string   // CRAYFISH_M3DB_NODES: one directory per node or etcd member
	Env      []string // extra environment for the script (M3DB_NUM_SHARDS=..., ...)
	started  []string // names, in start order (stopped in reverse)
}

// New checks that m3dbnode and etcd are installed (t.Fatal with the
// script's output if not), makes a fresh nodes directory under /tmp and
// registers a cleanup that stops every node it started and deletes the
// directory; on failure it first logs the tail of every node's log. Set
// CRAYFISH_M3DB_KEEP=1 to keep the directory.
func New(t testing.TB) *Harness {
	t.Helper()
	out, err := exec.Command(Script(), "check").CombinedOutput()
	if err != nil {
		t.Fatalf("m3dbnode/etcd missing: run scripts/m3db.sh install (as .ci/run does)\n%s: %v\n%s", Script()+" check", err, out)
	}
	dir, err := os.MkdirTemp("/tmp", "crayfish-m3db-test-")
	if err != nil {
		t.Fatal(err)
	}
	h := &Harness{t: t, NodesDir: dir}
	t.Cleanup(h.cleanup)
	return h
}

func (h *Harness) cleanup() {
	if h.t.Failed() {
		for _, name := range h.started {
			if out, err := h.run("logs", name, "40"); err == nil {
				h.t.Logf("---- %s log (tail) ----\n%s", name, out)
			}
		}
	}
	for i := len(h.started) - 1; i >= 0; i-- {
		if out, err := h.run("stop", h.started[i]); err != nil {
			h.t.Errorf("stop %s: %v\n%s", h.started[i], err, out)
		}
	}
	if os.Getenv("CRAYFISH_M3DB_KEEP") != "" {
		h.t.Logf("kept %s (CRAYFISH_M3DB_KEEP)", h.NodesDir)
		return
	}
	if out, err := h.run("clean", "--all"); err != nil {
		h.t.Errorf("clean: %v\n%s", err, out)
	}
	_ = os.RemoveAll(h.NodesDir)
}

func (h *Harness) run(args ...string) (string, error) {
	cmd := exec.Command(Script(), args...)
	cmd.Env = append(append(os.Environ(), "CRAYFISH_M3DB_NODES="+h.NodesDir), h.Env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run runs scripts/m3db.sh with args and returns its output; any failure
// is fatal and shows the whole output (which holds the node's log tail).
func (h *Harness) Run(args ...string) string {
	h.t.Helper()
	out, err := h.run(args...)
	if err != nil {
		h.t.Fatalf("scripts/m3db.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// StartEtcd starts a one-member etcd on ip:2379.
func (h *Harness) StartEtcd(name, ip string) {
	h.t.Helper()
	h.Run("etcd-start", name, ip)
	h.started = append(h.started, name)
}

// StartNode starts an m3dbnode with host id name on ip (standard ports on
// that IP), with the embedded coordinator on ip:7201 if coordinator is
// set. It returns once the node API answers (before bootstrap).
func (h *Harness) StartNode(name, ip string, coordinator bool) {
	h.t.Helper()
	h.StartNodeOn(name, ip, 9000, coordinator)
}

// StartNodeOn is StartNode with the node's ports from portBase:
// tchannel portBase, node HTTP portBase+2, cluster HTTP portBase+3,
// debug portBase+4 (M3DB_PORT_BASE).
func (h *Harness) StartNodeOn(name, ip string, portBase int, coordinator bool) {
	h.t.Helper()
	args := []string{"start", name, ip}
	if coordinator {
		args = append(args, "--coordinator")
	}
	env := h.Env
	h.Env = append(append([]string(nil), env...), fmt.Sprintf("M3DB_PORT_BASE=%d", portBase))
	defer func() { h.Env = env }()
	h.Run(args...)
	for _, s := range h.started {
		if s == name {
			return
		}
	}
	h.started = append(h.started, name)
}

// Wipe deletes a stopped node's data and kv cache.
func (h *Harness) Wipe(name string) { h.t.Helper(); h.Run("wipe", name) }

// WipeEtcd restarts an etcd member empty.
func (h *Harness) WipeEtcd(name string) { h.t.Helper(); h.Run("etcd-wipe", name) }

// Stop stops one node or etcd member (SIGTERM, then SIGKILL).
func (h *Harness) Stop(name string) { h.t.Helper(); h.Run("stop", name) }

// InitCluster writes the placement (every running node, RF min(3, nodes))
// and the namespaces ("name:retention[:blocksize]") through the
// coordinator, and waits until every node is bootstrapped with every
// shard AVAILABLE.
func (h *Harness) InitCluster(namespaces ...string) {
	h.t.Helper()
	h.Run(append([]string{"init-cluster"}, namespaces...)...)
}

// WaitBootstrapped waits until the node reports bootstrapped.
func (h *Harness) WaitBootstrapped(name string) { h.t.Helper(); h.Run("wait", name) }

// NodeEnv returns `scripts/m3db.sh env NAME` as a map (M3DB_NODE_HTTP,
// M3DB_DATA_DIR, M3DB_ETCD_ENDPOINTS, ...).
func (h *Harness) NodeEnv(name string) map[string]string {
	h.t.Helper()
	out := h.Run("env", name)
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "m3db.sh") {
			m[k] = v
		}
	}
	return m
}

// PID returns the pid of a running node or etcd member.
func (h *Harness) PID(name string) int {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.NodesDir, name, "pid"))
	if err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		h.t.Fatalf("%s: bad pid file: %v", name, err)
	}
	return pid
}

// Memory returns a process's current and peak resident set size in MiB
// (VmRSS and VmHWM of /proc/PID/status).
func Memory(pid int) (rss, peak int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak, nil
}

// --- M3DB's JSON HTTP API ----------------------------------------------------

// Tag is one series tag.
type Tag struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Datapoint is one value at a Unix time in seconds.
type Datapoint struct {
	Timestamp int64   `json:"timestamp"`
	Value     float64 `json:"value"`
}

var client = &http.Client{Timeout: 30 * time.Second}

// Post sends a JSON body to http://addr/path and decodes the JSON answer
// into out (if not nil). M3DB answers errors with HTTP 500 or 400 and
// {"error":{"message":...}}; those come back as errors holding the body.
func Post(addr, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := client.Post("http://"+addr+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s%s: HTTP %d: %s", addr, path, resp.StatusCode, bytes.TrimSpace(rb))
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			return fmt.Errorf("POST %s%s: %v in %q", addr, path, err, rb)
		}
	}
	return nil
}

// WriteTagged writes one datapoint through /writetagged. On a node's own
// API (:9002) it is written to that node only (if it owns the shard); on
// the cluster API (:9003) it goes to every replica, at the node's
// configured write consistency (majority).
func WriteTagged(addr, namespace, id string, tags []Tag, dp Datapoint) error {
	if tags == nil {
		tags = []Tag{}
	}
	return Post(addr, "/writetagged", map[string]any{
		"nameSpace": namespace,
		"id":        id,
		"tags":      tags,
		"datapoint": map[string]any{
			"timestamp":         dp.Timestamp,
			"value":             dp.Value,
			"timestampTimeType": "UNIX_SECONDS",
		},
	}, nil)
}

// Fetch reads a series' datapoints in [start, end) (Unix seconds) through
// /fetch: on :9002 from that node alone, on :9003 from the cluster.
func Fetch(addr, namespace, id string, start, end int64) ([]Datapoint, error) {
	var res struct {
		Datapoints []Datapoint `json:"datapoints"`
	}
	err := Post(addr, "/fetch", map[string]any{
		"nameSpace":      namespace,
		"id":             id,
		"rangeStart":     start,
		"rangeEnd":       end,
		"rangeType":      "UNIX_SECONDS",
		"resultTimeType": "UNIX_SECONDS",
	}, &res)
	return res.Datapoints, err
}

// Bootstrapped asks a node's /health (on :9002).
func Bootstrapped(addr string) (bool, error) {
	resp, err := client.Get("http://" + addr + "/health")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var h struct {
		Bootstrapped bool `json:"bootstrapped"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return false, err
	}
	return h.Bootstrapped, nil
}

// wrapperDir is the wrapper module that holds filesetgen's sources.
func wrapperDir() string {
	return filepath.Join(filepath.Dir(Script()), "..", "test", "m3db", "wrapper")
}

// FilesetGen returns the cached filesetgen (real M3DB filesets written by
// M3's own writer, complete or damaged on request) that scripts/m3db.sh
// install builds, failing the test (never skipping) when it is missing or
// older than its sources: CI installs it, and a test that quietly skipped
// would prove nothing.
func FilesetGen(t testing.TB) string {
	t.Helper()
	cache := os.Getenv("CRAYFISH_M3DB_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatalf("no home directory for the filesetgen cache: %v", err)
		}
		cache = filepath.Join(home, ".cache", "crayfish", "m3db")
	}
	version := os.Getenv("M3DB_VERSION")
	if version == "" {
		version = "v1.5.0"
	}
	bin := filepath.Join(cache, version, "filesetgen")
	stamp, err := os.ReadFile(bin + ".complete")
	if _, serr := os.Stat(bin); serr != nil || err != nil {
		t.Fatalf("filesetgen (real M3DB filesets from M3's own writer) is not installed at %s: "+
			"run scripts/m3db.sh install (CI's .ci/run does)", bin)
	}
	if want := filesetgenHash(t); strings.TrimSpace(string(stamp)) != want {
		t.Fatalf("%s was built from other sources than %s/filesetgen (stamp %q, sources %s): "+
			"run scripts/m3db.sh install", bin, wrapperDir(), strings.TrimSpace(string(stamp)), want)
	}
	return bin
}

// filesetgenHash is scripts/m3db.sh's filesetgen_hash: sha256 of
// filesetgen/*.go (byte order of names), go.mod and go.sum, concatenated.
func filesetgenHash(t testing.TB) string {
	t.Helper()
	srcs, err := filepath.Glob(filepath.Join(wrapperDir(), "filesetgen", "*.go"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no filesetgen sources under %s (%v)", wrapperDir(), err)
	}
	slices.Sort(srcs)
	h := sha256.New()
	for _, name := range append(srcs, filepath.Join(wrapperDir(), "go.mod"), filepath.Join(wrapperDir(), "go.sum")) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}
