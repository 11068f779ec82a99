package gossip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/crayfish-backup/crayfish/transport"
)

// ErrMetaTooLarge: the metadata does not fit memberlist's 512-byte limit
// (memberlist would panic on it).
var ErrMetaTooLarge = errors.New("gossip metadata over 512 bytes")

// Meta is what a node tells the others about itself.
type Meta struct {
	NodeID   string `json:"id"`
	RaftAddr string `json:"raft"`
	HTTPAddr string `json:"http"`
	// HTTPScheme is "https" when the node's API serves TLS.
	HTTPScheme string `json:"scheme,omitempty"`
	Zone       string `json:"zone,omitempty"`
	Version    string `json:"version,omitempty"`
	// BootstrapExpect is the node's bootstrap_expect setting: nodes only
	// bootstrap together with nodes that expect the same cluster size.
	BootstrapExpect int `json:"expect,omitempty"`
	// RepoID is the id of the repository the node writes to: the leader
	// admits to Raft only nodes of the cluster's repository.
	RepoID string `json:"repo,omitempty"`
	// Leaving is set just before a graceful leave: memberlist reports
	// leaves and deaths through the same callback without telling them
	// apart, so the member says it itself.
	Leaving bool `json:"leaving,omitempty"`
}

// Status is a member's gossip state.
type Status string

// Member states. (memberlist does not report suspicion: a suspect
// member stays alive here until it is declared dead.)
const (
	StatusAlive Status = "alive"
	StatusDead  Status = "dead"
	StatusLeft  Status = "left"
)

// Statuses lists every status.
func Statuses() []Status { return []Status{StatusAlive, StatusDead, StatusLeft} }

// Member is one node as gossip sees it.
type Member struct {
	Meta
	GossipAddr string `json:"gossip_addr"`
	Status     Status `json:"status"`
	// Since is when this node saw the status change (its own clock).
	Since time.Time `json:"since"`
}

// Config configures a gossip member.
type Config struct {
	// BindAddr is host:port to listen on (TCP and UDP).
	BindAddr string
	// AdvertiseAddr is host:port others use to reach BindAddr (default:
	// BindAddr, which must then not be a wildcard).
	AdvertiseAddr string
	// Join lists gossip addresses of existing members.
	Join []string
	// Key encrypts gossip (AES, 16, 24 or 32 bytes); nil: plain text.
	Key []byte
	// Label separates clusters that share a network: members with other
	// labels are ignored.
	Label string
	Meta  Meta
	Log   *slog.Logger
	// RejoinInterval is how often peers that are not alive are joined
	// again (default 10s).
	RejoinInterval time.Duration
}

// Gossip is this node's membership.
type Gossip struct {
	cfg Config
	ml  *memberlist.Memberlist
	log *slog.Logger

	metaMu sync.Mutex
	meta   []byte

	mu      sync.Mutex
	members map[string]*Member
	known   map[string]bool // gossip addresses ever seen or given (rejoin targets)
	changed chan struct{}

	stop chan struct{}
	done chan struct{}
}

// Start listens and joins cfg.Join (a failure to join is not fatal: the
// rejoin loop keeps trying).
func Start(cfg Config) (*Gossip, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = 10 * time.Second
	}
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = cfg.BindAddr
	}
	meta, err := json.Marshal(cfg.Meta)
	if err != nil {
		return nil, err
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMetaTooLarge, len(meta))
	}
	bindHost, bindPort, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip bind address: %w", err)
	}
	advHost, advPort, err := splitHostPort(cfg.AdvertiseAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip advertise address: %w", err)
	}
	if ip := net.ParseIP(advHost); ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("gossip advertise address %q: must be a reachable IP", cfg.AdvertiseAddr)
	}
	g := &Gossip{cfg: cfg, meta: meta, log: cfg.Log, members: map[string]*Member{}, known: map[string]bool{},
		changed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.NodeID
	mc.BindAddr, mc.BindPort = bindHost, bindPort
	mc.AdvertiseAddr, mc.AdvertisePort = advHost, advPort
	mc.Label = cfg.Label
	mc.SecretKey = cfg.Key
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	mc.LogOutput = &logWriter{log: cfg.Log}
	mc.PushPullInterval = 15 * time.Second
	if ip := transport.SourceIP(cfg.AdvertiseAddr); ip != nil {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{bindHost}, BindPort: bindPort,
			Logger: log.New(mc.LogOutput, "", 0)})
		if err != nil {
			return nil, fmt.Errorf("gossip on %s: %w", cfg.BindAddr, err)
		}
		mc.Transport = &sourceTransport{NetTransport: nt, dialer: transport.NewDialer(cfg.AdvertiseAddr, 0)}
	}
	if g.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("gossip on %s: %w", cfg.BindAddr, err)
	}
	for _, a := range cfg.Join {
		g.known[a] = true
	}
	if len(cfg.Join) > 0 {
		if n, err := g.ml.Join(cfg.Join); err != nil {
			g.log.Warn("gossip join failed; will retry", "join", cfg.Join, "err", err)
		} else {
			g.log.Info("joined the cluster by gossip", "contacted", n)
		}
	}
	go g.rejoinLoop()
	return g, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", port, err)
	}
	return host, p, nil
}

// Members returns every member ever seen (until removed with Forget),
// sorted by node id.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out
}

// Member returns the member called id.
func (g *Gossip) Member(id string) (Member, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[id]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// Changed returns a channel closed at the next membership change.
func (g *Gossip) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// KnownAddrs lists the gossip addresses of members seen and not departed
// gracefully, plus the configured join addresses: where to rejoin after a
// restart.
func (g *Gossip) KnownAddrs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for a := range g.known {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// Forget drops a member that left the cluster for good, so it is no
// longer listed or rejoined.
func (g *Gossip) Forget(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.members[id]; ok && m.Status != StatusAlive {
		delete(g.known, m.GossipAddr)
		delete(g.members, id)
		g.notifyLocked()
	}
}

// Join contacts addrs now.
func (g *Gossip) Join(addrs []string) (int, error) {
	g.mu.Lock()
	for _, a := range addrs {
		g.known[a] = true
	}
	g.mu.Unlock()
	return g.ml.Join(addrs)
}

// Leave tells the cluster this node is leaving for good and stops.
func (g *Gossip) Leave(timeout time.Duration) error {
	meta := g.cfg.Meta
	meta.Leaving = true
	b, _ := json.Marshal(meta)
	g.metaMu.Lock()
	g.meta = b
	g.metaMu.Unlock()
	if err := g.ml.UpdateNode(timeout); err != nil {
		g.log.Warn("announcing the leave", "err", err)
	}
	err := g.ml.Leave(timeout)
	g.Shutdown()
	return err
}

// Shutdown stops gossiping without a goodbye (others will see this node
// die).
func (g *Gossip) Shutdown() {
	select {
	case <-g.stop:
		return
	default:
	}
	close(g.stop)
	<-g.done
	_ = g.ml.Shutdown()
}

// rejoinLoop joins the known peers that are not alive: after a partition
// heals, each side has declared the other dead and memberlist would not
// talk to it again by itself.
func (g *Gossip) rejoinLoop() {
	defer close(g.done)
	// While this node sees nobody else (a join that failed because the
	// peer was not up yet), it retries every second.
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		if time.Since(last) < g.cfg.RejoinInterval && g.ml.NumMembers() > 1 {
			continue
		}
		last = time.Now()
		targets := g.rejoinTargets()
		if len(targets) == 0 {
			continue
		}
		if n, err := g.ml.Join(targets); err != nil {
			g.log.Debug("gossip rejoin", "targets", targets, "contacted", n, "err", err)
		} else {
			g.log.Info("gossip rejoined peers", "targets", targets, "contacted", n)
		}
	}
}

func (g *Gossip) rejoinTargets() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	alive := map[string]bool{}
	for _, m := range g.members {
		if m.Status == StatusAlive {
			alive[m.GossipAddr] = true
		}
	}
	self := g.cfg.AdvertiseAddr
	var out []string
	for a := range g.known {
		if !alive[a] && a != self {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

func (g *Gossip) notifyLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// update records n's state as memberlist reports it.
func (g *Gossip) update(n *memberlist.Node, status Status) {
	var meta Meta
	if err := json.Unmarshal(n.Meta, &meta); err != nil || meta.NodeID != n.Name {
		g.log.Warn("ignoring gossip member with bad metadata", "name", n.Name, "addr", n.Address(), "err", err)
		return
	}
	if status == StatusDead && meta.Leaving {
		status = StatusLeft
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	addr := n.Address()
	m, ok := g.members[n.Name]
	if !ok || m.Status != status || m.Meta != meta || m.GossipAddr != addr {
		if !ok || m.Status != status {
			g.log.Info("gossip member", "node", n.Name, "addr", addr, "status", status)
		}
		since := time.Now()
		if ok && m.Status == status {
			since = m.Since
		}
		g.members[n.Name] = &Member{Meta: meta, GossipAddr: addr, Status: status, Since: since}
		g.notifyLocked()
	}
	if status == StatusLeft {
		delete(g.known, addr)
	} else {
		g.known[addr] = true
	}
}

type events Gossip

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Gossip)(e).update(n, StatusAlive) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Gossip)(e).update(n, StatusAlive) }
func (e *events) NotifyLeave(n *memberlist.Node) {
	// Fired for graceful leaves and deaths alike (n.State is not set):
	// update tells them apart by the Leaving flag in the metadata.
	(*Gossip)(e).update(n, StatusDead)
}

// sourceTransport is memberlist's transport with TCP dials from the
// node's source address (transport.SourceIP); UDP already leaves from the
// bound socket.
type sourceTransport struct {
	*memberlist.NetTransport
	dialer *net.Dialer
}

func (t *sourceTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := *t.dialer
	d.Timeout = timeout
	return d.Dial("tcp", addr)
}

func (t *sourceTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

type delegate Gossip

func (d *delegate) NodeMeta(limit int) []byte {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	return d.meta
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// logWriter turns memberlist's "[LEVEL] memberlist: ..." lines into slog.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelDebug
	switch {
	case strings.Contains(line, "[ERR]"):
		level = slog.LevelError
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelWarn
	}
	if i := strings.Index(line, "memberlist: "); i >= 0 {
		line = line[i+len("memberlist: "):]
	}
	w.log.Log(context.Background(), level, line, "component", "gossip")
	return len(p), nil
}
