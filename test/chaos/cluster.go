package chaos

import (
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
	"syscall"
	"time"
)

// Agent is one crayfish agent process.
type Agent struct {
	ID, IP                 string
	HTTP, Raft, Gossip     string
	DataDir, Root, LogPath string
	mu                     sync.Mutex
	cmd                    *exec.Cmd
	exited                 chan struct{}
	paused                 bool
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
}

// BuildBinary builds crayfish (with build tags, if any) into dir.
func BuildBinary(dir, tags string) (string, error) {
	bin := filepath.Join(dir, "crayfish")
	args := []string{"build", "-o", bin}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, "github.com/crayfish-backup/crayfish/cmd/crayfish")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// NewCluster creates a repository and n agents (not started) on
// 127.0.0.2 ... 127.0.0.(n+1), each with the same ports on its own IP.
func NewCluster(bin, dir string, n int, env []string, store *Store) (*Cluster, error) {
	if store == nil {
		store = NewFileStore(dir)
	}
	env = append(append([]string{}, env...), store.Env...)
	c := &Cluster{Bin: bin, Dir: dir, Repo: store.URL, Store: store, KeyFile: filepath.Join(dir, "repo.key"), env: env}
	initCmd := exec.Command(bin, "init", "--repository", c.Repo, "--key-file", c.KeyFile)
	initCmd.Env = append(os.Environ(), env...)
	if out, err := initCmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("crayfish init: %v\n%s", err, out)
	}
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		a := &Agent{ID: fmt.Sprintf("n%d", i+1), IP: ip, HTTP: ip + ":7300", Raft: ip + ":7301", Gossip: ip + ":7302",
			DataDir: filepath.Join(dir, "nodes", fmt.Sprintf("n%d", i+1), "data"),
			Root:    filepath.Join(dir, "nodes", fmt.Sprintf("n%d", i+1), "root"),
			LogPath: filepath.Join(dir, "logs", fmt.Sprintf("n%d.log", i+1))}
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
// needed but given anyway, as an operator would).
func (c *Cluster) Start(a *Agent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		return nil
	}
	args := []string{"agent", "--node-id", a.ID, "--data-dir", a.DataDir, "--root", a.Root,
		"--repository", c.Repo, "--key-file", c.KeyFile, "--http-addr", a.HTTP, "--raft-addr", a.Raft,
		"--gossip-addr", a.Gossip, "--cluster-name", "chaos", "--bootstrap-expect", fmt.Sprint(len(c.Agents)),
		"--join", c.Agents[0].Gossip, "--node-timeout", "20s", "--step-retry-delay", "200ms", "--lock-wait", "30s",
		"--memory-limit-mib", "128"}
	args = append(args, c.Extra...)
	logf, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), c.env...)
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
