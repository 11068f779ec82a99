package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/crayfish-backup/crayfish/internal/testbin"
)

// Agent is one slot of the cluster: an address, a data tree and the
// crayfish agent process serving them. Its node id changes when the
// nemesis wipes it and re-adds it (n2, then n2w1, ...); Tree, the slot's
// first id, names its data tree and writer for good.
type Agent struct {
	Tree, IP               string
	HTTP, Raft, Gossip     string
	DataDir, Root, LogPath string
	// ClockFile holds the agent's wall-clock offset (node/wallclock,
	// chaosfaults builds).
	ClockFile string
	id        atomic.Pointer[string]
	wipes     int
	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{}
	paused    bool
}

// ID is the agent's current node id.
func (a *Agent) ID() string { return *a.id.Load() }

// Running reports whether the agent's process is up (maybe paused).
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cmd != nil
}

// URL is the agent's API base URL.
func (a *Agent) URL() string { return "http://" + a.HTTP }

// Cluster is the cluster under test.
type Cluster struct {
	Bin, Dir, Repo, KeyFile string
	Store                   *Store
	Agents                  []*Agent
	env                     []string
	// Extra are more agent flags.
	Extra []string

	mu      sync.Mutex
	trees   map[string]string // every node id ever used → its slot's tree
	retired []RetiredNode
}

// RetiredNode is one ended process lifetime of a node id: the node-side
// audits read just before the nemesis killed it (the process's journals
// live in memory). Wiped is set when the id itself ended (its data dir
// was deleted); a killed node comes back under the same id.
type RetiredNode struct {
	ID, Tree string
	Wiped    bool
	Fence    fenceJournal
	Jobs     []jobInterval
	Err      string // why the audits could not be read, if so
}

// TreeOf returns the tree of a node id (current or retired; an unknown
// id names itself).
func (c *Cluster) TreeOf(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.trees[id]; ok {
		return t
	}
	return id
}

// Retired returns the audits of ended lifetimes, in the order they ended.
func (c *Cluster) Retired() []RetiredNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]RetiredNode{}, c.retired...)
}

// ByTree returns the slot of a tree.
func (c *Cluster) ByTree(tree string) *Agent {
	for _, a := range c.Agents {
		if a.Tree == tree {
			return a
		}
	}
	return nil
}

// BuildBinary builds crayfish (with build tags, if any) into dir.
func BuildBinary(dir, tags string) (string, error) {
	return testbin.Build(dir, tags)
}

// NewCluster creates a repository and n agents (not started) on
// 127.0.0.2 ... 127.0.0.(n+1), each with the same ports on its own IP.
func NewCluster(bin, dir string, n int, env []string, store *Store) (*Cluster, error) {
	if store == nil {
		store = NewFileStore(dir)
	}
	env = append(append([]string{}, env...), store.Env...)
	c := &Cluster{Bin: bin, Dir: dir, Repo: store.URL, Store: store, KeyFile: filepath.Join(dir, "repo.key"), env: env, trees: map[string]string{}}
	initCmd := exec.Command(bin, "init", "--repository", c.Repo, "--key-file", c.KeyFile)
	initCmd.Env = append(os.Environ(), env...)
	if out, err := initCmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("crayfish init: %v\n%s", err, out)
	}
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		name := fmt.Sprintf("n%d", i+1)
		a := &Agent{Tree: name, IP: ip, HTTP: ip + ":7300", Raft: ip + ":7301", Gossip: ip + ":7302",
			DataDir:   filepath.Join(dir, "nodes", name, "data"),
			Root:      filepath.Join(dir, "nodes", name, "root"),
			LogPath:   filepath.Join(dir, "logs", name+".log"),
			ClockFile: filepath.Join(dir, "nodes", name, "clock-offset")}
		a.id.Store(&name)
		c.trees[name] = name
		for _, d := range []string{a.Root, filepath.Dir(a.LogPath)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
		c.Agents = append(c.Agents, a)
	}
	return c, nil
}

// Start launches a (again, after a kill: same data dir, no join flags
// needed but given anyway, as an operator would; after a wipe, the join
// flags bring the new id in).
func (c *Cluster) Start(a *Agent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		return nil
	}
	var join []string
	for _, o := range c.Agents {
		if o != a {
			join = append(join, o.Gossip)
		}
	}
	args := []string{"agent", "--node-id", a.ID(), "--data-dir", a.DataDir, "--root", a.Root,
		"--repository", c.Repo, "--key-file", c.KeyFile, "--http-addr", a.HTTP, "--raft-addr", a.Raft,
		"--gossip-addr", a.Gossip, "--cluster-name", "chaos", "--bootstrap-expect", fmt.Sprint(len(c.Agents)),
		"--join", strings.Join(join, ","), "--node-timeout", "20s", "--step-retry-delay", "200ms", "--lock-wait", "30s",
		"--memory-limit-mib", "128"}
	args = append(args, c.Extra...)
	logf, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(os.Environ(), c.env...), "CRAYFISH_CLOCK_OFFSET_FILE="+a.ClockFile)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	logf.Close()
	a.cmd, a.exited, a.paused = cmd, make(chan struct{}), false
	go func(cmd *exec.Cmd, ch chan struct{}) { cmd.Wait(); close(ch) }(cmd, a.exited)
	return nil
}

// Kill sends SIGKILL (resuming a paused process first is not needed:
// SIGKILL works on stopped processes).
func (c *Cluster) Kill(a *Agent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
	a.cmd, a.paused = nil, false
}

// Pause sends SIGSTOP; Resume SIGCONT.
func (c *Cluster) Pause(a *Agent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil && !a.paused {
		_ = a.cmd.Process.Signal(syscall.SIGSTOP)
		a.paused = true
	}
}

func (c *Cluster) Resume(a *Agent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil && a.paused {
		_ = a.cmd.Process.Signal(syscall.SIGCONT)
		a.paused = false
	}
}

// StopAll stops every agent gracefully (SIGTERM, then SIGKILL).
func (c *Cluster) StopAll() {
	for _, a := range c.Agents {
		c.Resume(a)
		a.mu.Lock()
		if a.cmd != nil {
			_ = a.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-a.exited:
			case <-time.After(10 * time.Second):
				_ = a.cmd.Process.Signal(syscall.SIGKILL)
				<-a.exited
			}
			a.cmd = nil
		}
		a.mu.Unlock()
	}
}

var quick = &http.Client{Timeout: 2 * time.Second}

// ClusterStatus is the part of GET /v1/cluster the harness reads.
type ClusterStatus struct {
	NodeID   string `json:"node_id"`
	State    string `json:"state"`
	LeaderID string `json:"leader_id"`
	Members  []struct {
		ID       string `json:"id"`
		Suffrage string `json:"suffrage"`
		Gossip   string `json:"gossip"`
	} `json:"members"`
}

// Status asks a for its cluster view.
func Status(ctx context.Context, a *Agent) (ClusterStatus, error) {
	var st ClusterStatus
	err := getJSON(ctx, quick, a.URL()+"/v1/cluster", &st)
	return st, err
}

// Leader returns the agent that says it leads, or nil.
func (c *Cluster) Leader(ctx context.Context) *Agent {
	for _, a := range c.Agents {
		if st, err := Status(ctx, a); err == nil && st.State == "Leader" {
			return a
		}
	}
	return nil
}

func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}

// Retire reads a's node-side audits (its fence journal and job
// intervals, which live in the process's memory), kills it and deletes
// its data dir: the host lost its disk. Its tree stays. It returns what
// could not be read, if anything.
func (c *Cluster) Retire(ctx context.Context, a *Agent) string {
	r := c.readAudits(ctx, a)
	r.Wiped = true
	c.Kill(a)
	if err := os.RemoveAll(a.DataDir); err != nil {
		r.Err = strings.Trim(r.Err+"; "+err.Error(), "; ")
	}
	c.mu.Lock()
	c.retired = append(c.retired, r)
	c.mu.Unlock()
	return r.Err
}

// KillKeepingAudits reads a's node-side audits, then kills it: the
// fencing and mutual-exclusion checkers see every lifetime of a node, not
// just its last. A node that does not answer (paused) is killed anyway;
// its lost lifetime is counted, not held against the product.
func (c *Cluster) KillKeepingAudits(ctx context.Context, a *Agent) {
	if !a.Running() {
		return
	}
	a.mu.Lock()
	paused := a.paused
	a.mu.Unlock()
	r := RetiredNode{ID: a.ID(), Tree: a.Tree, Err: "paused: audits not read"}
	if !paused {
		r = c.readAudits(ctx, a)
	}
	c.Kill(a)
	c.mu.Lock()
	c.retired = append(c.retired, r)
	c.mu.Unlock()
}

func (c *Cluster) readAudits(ctx context.Context, a *Agent) RetiredNode {
	r := RetiredNode{ID: a.ID(), Tree: a.Tree}
	var errs []string
	if err := getJSON(ctx, quick, a.URL()+"/internal/v1/fence", &r.Fence); err != nil {
		errs = append(errs, "fence: "+err.Error())
	}
	if err := getJSON(ctx, quick, a.URL()+"/internal/v1/jobs", &r.Jobs); err != nil {
		errs = append(errs, "jobs: "+err.Error())
	}
	r.Err = strings.Join(errs, "; ")
	return r
}

// Reincarnate starts a retired slot again under a new node id (tree n2
// becomes n2w1, then n2w2, ...) with an empty data dir; it joins the
// running cluster like a new host.
func (c *Cluster) Reincarnate(a *Agent) (string, error) {
	a.wipes++
	id := fmt.Sprintf("%sw%d", a.Tree, a.wipes)
	c.mu.Lock()
	c.trees[id] = a.Tree
	c.mu.Unlock()
	a.id.Store(&id)
	if f, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
		fmt.Fprintf(f, "=== chaos: data dir wiped; starting again as %s ===\n", id)
		f.Close()
	}
	return id, c.Start(a)
}

// RemoveMember asks the leader (any running agent when none is known) to
// remove node id, as `crayfish cluster remove ID` does, and returns the
// HTTP status.
func (c *Cluster) RemoveMember(ctx context.Context, id string) (int, error) {
	a := c.Leader(ctx)
	if a == nil {
		for _, o := range c.Agents {
			if o.Running() {
				a = o
				break
			}
		}
	}
	if a == nil {
		return 0, fmt.Errorf("no agent running")
	}
	body, _ := json.Marshal(map[string]string{"node": id})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL()+"/v1/cluster/remove", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := quick.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
