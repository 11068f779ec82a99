package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/crayfish-backup/crayfish/internal/fsutil"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/transport/gossip"
)

// Cluster ties gossip membership to the Raft configuration: it forms a
// new cluster once bootstrap_expect agents see each other, and while this
// node leads it adds live members to Raft and removes departed ones.
type Cluster struct {
	cfg    Config
	repoID string // the repository this node writes to
	log    *slog.Logger
	store  *Store
	gossip *gossip.Gossip
	peers  *peerClient

	mu      sync.Mutex
	refused map[string]string // node → the other repository id last logged
}

// StartCluster starts gossip and joins the configured peers, or the peers
// remembered from the last run when none are configured.
func StartCluster(cfg Config, repoID string, store *Store, peers *peerClient, log *slog.Logger) (*Cluster, error) {
	key, err := loadGossipKey(cfg.GossipKeyFile)
	if err != nil {
		return nil, err
	}
	join := cfg.Join
	if len(join) == 0 {
		join = loadPeers(cfg.DataDir)
	}
	scheme := "http"
	if peers.tls {
		scheme = "https"
	}
	g, err := gossip.Start(gossip.Config{
		BindAddr: cfg.GossipAddr, AdvertiseAddr: cfg.GossipAdvertise, Join: join, Key: key,
		Label: "crayfish:" + cfg.ClusterName, Log: log.With("component", "gossip"),
		Meta: gossip.Meta{NodeID: cfg.NodeID, RaftAddr: cfg.RaftAdvertise, HTTPAddr: cfg.HTTPAdvertise, HTTPScheme: scheme,
			Zone: cfg.Zone, Version: Version, BootstrapExpect: cfg.BootstrapExpect, RepoID: repoID},
	})
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, repoID: repoID, log: log.With("component", "cluster"), store: store, gossip: g, peers: peers,
		refused: map[string]string{}}
	store.SetCandidateCheck(c.candidateNamesUs)
	return c, nil
}

func loadGossipKey(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("gossip key %s: not base64: %w", path, err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("gossip key %s: %d bytes, want 16, 24 or 32", path, n)
	}
	return key, nil
}

func peersPath(dataDir string) string { return filepath.Join(dataDir, "peers.json") }

// loadPeers returns the gossip addresses saved by the last run: how an
// agent restarted without --join finds its cluster again.
func loadPeers(dataDir string) []string {
	b, err := os.ReadFile(peersPath(dataDir))
	if err != nil {
		return nil
	}
	var addrs []string
	_ = json.Unmarshal(b, &addrs)
	return addrs
}

// Run keeps the cluster together until ctx ends.
func (c *Cluster) Run(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var saved []string
	for {
		changed := c.gossip.Changed()
		if !c.store.HasState() && c.cfg.BootstrapExpect > 1 {
			c.tryBootstrap(ctx)
		}
		if c.store.IsLeader() {
			c.reconcile()
		}
		if addrs := c.otherPeers(); len(addrs) > 0 && !slices.Equal(addrs, saved) {
			if b, err := json.Marshal(addrs); err == nil && fsutil.WriteFileAtomic(peersPath(c.cfg.DataDir), b) == nil {
				saved = addrs
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

func (c *Cluster) otherPeers() []string {
	var out []string
	for _, a := range c.gossip.KnownAddrs() {
		if a != c.cfg.GossipAdvertise {
			out = append(out, a)
		}
	}
	return out
}

// tryBootstrap forms the cluster once bootstrap_expect agents that expect
// the same size are alive, unless one of them already belongs to a
// cluster (then the leader adds this node instead). Every agent proposes
// the same configuration, so it does not matter which one wins.
func (c *Cluster) tryBootstrap(ctx context.Context) {
	var group []gossip.Member
	for _, m := range c.gossip.Members() {
		if m.Status == gossip.StatusAlive && m.BootstrapExpect == c.cfg.BootstrapExpect && c.sameRepository(m) {
			group = append(group, m)
		}
	}
	if len(group) < c.cfg.BootstrapExpect {
		return
	}
	for _, m := range group {
		if m.NodeID == c.cfg.NodeID {
			continue
		}
		has, err := c.peers.raftState(ctx, memberURL(m))
		if err != nil {
			c.log.Info("bootstrap: peer not ready", "peer", m.NodeID, "err", err)
			return
		}
		if has {
			c.log.Info("bootstrap: a peer already belongs to a cluster; waiting to be added", "peer", m.NodeID)
			return
		}
	}
	var servers []raft.Server
	for _, m := range group {
		servers = append(servers, raft.Server{ID: raft.ServerID(m.NodeID), Address: raft.ServerAddress(m.RaftAddr), Suffrage: raft.Voter})
	}
	if err := c.store.Bootstrap(servers); err != nil {
		c.log.Error("bootstrap failed", "err", err)
		return
	}
	c.log.Info("bootstrapped a new cluster", "voters", len(servers))
}

// reconcile makes the Raft configuration follow gossip (leader only):
// live members are added as voters up to max_voters and as non-voters
// beyond (promoted when a voter goes), members that left are removed, and
// dead ones are removed after dead_node_timeout, never going below
// bootstrap_expect voters.
func (c *Cluster) reconcile() {
	servers, err := c.store.Servers()
	if err != nil {
		return
	}
	inConfig := map[string]raft.Server{}
	voters := 0
	for _, s := range servers {
		inConfig[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	minVoters := max(c.cfg.BootstrapExpect, 1)
	for _, m := range c.gossip.Members() {
		s, in := inConfig[m.NodeID]
		switch {
		case m.NodeID == c.cfg.NodeID:
		case m.Status == gossip.StatusAlive && !in && !c.sameRepository(m):
			c.refuseOtherRepository(m)
		case m.Status == gossip.StatusAlive && !in && c.removeImpostor(servers, m, &voters):
			// The old member at this address went first; the new id is
			// added on the next pass.
		case m.Status == gossip.StatusAlive && (!in || string(s.Address) != m.RaftAddr):
			var err error
			suffrage := raft.Voter
			if in {
				suffrage = s.Suffrage
			} else if voters >= c.cfg.MaxVoters {
				suffrage = raft.Nonvoter
			}
			if suffrage == raft.Voter {
				err = c.store.AddVoter(m.NodeID, m.RaftAddr)
			} else {
				err = c.store.AddNonvoter(m.NodeID, m.RaftAddr)
			}
			if err != nil {
				c.log.Warn("adding member to raft", "node", m.NodeID, "err", err)
			} else {
				c.log.Info("added member to raft", "node", m.NodeID, "raft", m.RaftAddr, "suffrage", suffrage.String())
				if !in && suffrage == raft.Voter {
					voters++
				}
			}
		case m.Status == gossip.StatusAlive && s.Suffrage == raft.Nonvoter && voters < c.cfg.MaxVoters:
			// A voter went: promote a live non-voter.
			if err := c.store.AddVoter(m.NodeID, m.RaftAddr); err != nil {
				c.log.Warn("promoting member to voter", "node", m.NodeID, "err", err)
			} else {
				c.log.Info("promoted member to voter", "node", m.NodeID)
				voters++
			}
		case m.Status == gossip.StatusLeft && in:
			if err := c.store.RemoveServer(m.NodeID); err != nil {
				c.log.Warn("removing departed member", "node", m.NodeID, "err", err)
			} else {
				c.log.Info("removed member that left", "node", m.NodeID)
				c.gossip.Forget(m.NodeID)
			}
		case m.Status == gossip.StatusLeft:
			c.gossip.Forget(m.NodeID)
		case m.Status == gossip.StatusDead && in && time.Since(m.Since) > c.cfg.DeadNodeTimeout:
			if s.Suffrage == raft.Voter && voters-1 < minVoters {
				continue
			}
			if err := c.store.RemoveServer(m.NodeID); err != nil {
				c.log.Warn("removing dead member", "node", m.NodeID, "err", err)
			} else {
				c.log.Warn("removed member dead longer than dead_node_timeout", "node", m.NodeID, "dead_since", m.Since)
				if s.Suffrage == raft.Voter {
					voters--
				}
			}
		}
	}
}

// removeImpostor removes the Raft server that has m's Raft address under
// another id (a node wiped and back on its old address with a new id):
// Raft addresses servers by address, so until the old id goes, the new
// process would answer for it — with an empty log. Reports whether it
// removed one.
func (c *Cluster) removeImpostor(servers []raft.Server, m gossip.Member, voters *int) bool {
	for _, s := range servers {
		if string(s.Address) != m.RaftAddr || string(s.ID) == m.NodeID || string(s.ID) == c.cfg.NodeID {
			continue
		}
		if err := c.store.RemoveServer(string(s.ID)); err != nil {
			c.log.Warn("removing the old member at a new member's address", "old", s.ID, "new", m.NodeID, "err", err)
			return true
		}
		c.log.Warn("removed the old member whose address a new member took over", "old", s.ID, "new", m.NodeID, "raft", m.RaftAddr)
		if s.Suffrage == raft.Voter {
			*voters--
		}
		return true
	}
	return false
}

// Remove takes a member that is not alive out of the cluster by hand.
func (c *Cluster) Remove(id string) error {
	if id == c.cfg.NodeID {
		return fmt.Errorf("%w: a node cannot remove itself; run `crayfish cluster leave` on it", wire.ErrBadRequest)
	}
	if m, ok := c.gossip.Member(id); ok && m.Status == gossip.StatusAlive {
		return fmt.Errorf("%w: node %s is alive; stop it or run `crayfish cluster leave` on it first", wire.ErrBadRequest, id)
	}
	servers, err := c.store.Servers()
	if err != nil {
		return err
	}
	found := false
	for _, s := range servers {
		found = found || string(s.ID) == id
	}
	_, known := c.gossip.Member(id)
	if !found && !known {
		return fmt.Errorf("%w: %s", wire.ErrUnknownNode, id)
	}
	if found {
		if err := c.store.RemoveServer(id); err != nil {
			return err
		}
	}
	c.gossip.Forget(id)
	return nil
}

// Leave makes this node leave the cluster for good: gossip says so, and
// the leader removes it from Raft.
func (c *Cluster) Leave() error { return c.gossip.Leave(5 * time.Second) }

// Shutdown stops gossip without leaving: a restart rejoins.
func (c *Cluster) Shutdown() { c.gossip.Shutdown() }

// Members lists what gossip knows.
func (c *Cluster) Members() []gossip.Member { return c.gossip.Members() }

// NodeURL returns the base URL of node id's HTTP API.
func (c *Cluster) NodeURL(id string) (string, error) {
	m, ok := c.gossip.Member(id)
	if !ok {
		return "", fmt.Errorf("%w: %s", wire.ErrUnknownNode, id)
	}
	return memberURL(m), nil
}

// LeaderURL returns the base URL of the leader's HTTP API.
func (c *Cluster) LeaderURL() (string, error) {
	id := c.store.LeaderID()
	if id == "" {
		return "", fmt.Errorf("%w: no leader known", wire.ErrNotLeader)
	}
	u, err := c.NodeURL(id)
	if err != nil {
		return "", fmt.Errorf("%w: leader %s not known to gossip", wire.ErrNotLeader, id)
	}
	return u, nil
}

func memberURL(m gossip.Member) string {
	scheme := m.HTTPScheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + m.HTTPAddr
}

// peerClient makes node-to-node HTTP calls.
type peerClient struct {
	http  *http.Client
	token string // admin token sent to peers, if tokens are configured
	tls   bool
}

func (p *peerClient) Do(req *http.Request) (*http.Response, error) {
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	return p.http.Do(req)
}

// raftStateReply is GET /internal/v1/raft-state: whether the node has
// Raft state, and its latest configuration.
type raftStateReply struct {
	HasState bool              `json:"has_state"`
	Servers  []raftStateServer `json:"servers,omitempty"`
}

type raftStateServer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// raftState asks a peer whether it already belongs to a Raft cluster.
func (p *peerClient) raftState(ctx context.Context, base string) (bool, error) {
	st, err := p.raftConfig(ctx, base)
	return st.HasState, err
}

// candidateNamesUs reports whether a vote candidate's Raft configuration
// holds this node under its own id and address (a cluster forming from
// bootstrap_expect), as opposed to another id at this address (this node
// replaced a wiped member and must not vote for it). It is asked only
// while this node is not in its own configuration, so it takes no part in
// elections and a second's wait delays nothing that counts.
func (c *Cluster) candidateNamesUs(candidate string) bool {
	m, ok := c.gossip.Member(candidate)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := c.peers.raftConfig(ctx, memberURL(m))
	if err != nil {
		return false
	}
	for _, s := range st.Servers {
		if s.ID == c.cfg.NodeID {
			return s.Address == c.cfg.RaftAdvertise
		}
	}
	return false
}

func (p *peerClient) raftConfig(ctx context.Context, base string) (raftStateReply, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var st raftStateReply
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/internal/v1/raft-state", nil)
	if err != nil {
		return st, err
	}
	resp, err := p.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("raft-state: HTTP %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// sameRepository reports whether member m writes to this node's
// repository (a member that does not say is taken at its word: older
// agents did not gossip the id).
func (c *Cluster) sameRepository(m gossip.Member) bool {
	return m.RepoID == "" || c.repoID == "" || m.RepoID == c.repoID
}

// refuseOtherRepository logs, once per member and id, that the leader
// does not admit m: its backups would land in a repository the cluster
// never reads.
func (c *Cluster) refuseOtherRepository(m gossip.Member) {
	c.mu.Lock()
	seen := c.refused[m.NodeID] == m.RepoID
	c.refused[m.NodeID] = m.RepoID
	c.mu.Unlock()
	if !seen {
		c.log.Error("not admitting a node that uses another repository", "node", m.NodeID,
			"node_repository", m.RepoID, "cluster_repository", c.repoID)
	}
}

// RepoID is the id of the repository this node writes to.
func (c *Cluster) RepoID() string { return c.repoID }
