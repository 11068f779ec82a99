package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/transport"
)

// Store owns this node's Raft instance and the FSM it drives.
type Store struct {
	nodeID    string
	raft      *raft.Raft
	fsm       *fsm.Machine
	transport *raft.NetworkTransport
	logStore  *raftboltdb.BoltStore
	// hadState: the node had Raft state when it started (it belongs to a
	// cluster and must never bootstrap another).
	hadState bool

	// Vote guard (voteAllowed): running is raft once started; member
	// latches when this node's id is in its configuration; candidateNamesUs
	// asks a candidate whether its configuration names this node (set by
	// the cluster, which knows how to reach it).
	running          atomic.Pointer[raft.Raft]
	member           atomic.Bool
	candidateNamesUs atomic.Pointer[func(candidateID string) bool]
}

// voteAllowed decides whether this node may vote for candidate.
func (s *Store) voteAllowed(candidate string) bool {
	if s.member.Load() {
		return true
	}
	r := s.running.Load()
	if r == nil {
		return false
	}
	for _, srv := range r.GetConfiguration().Configuration().Servers {
		if string(srv.ID) == s.nodeID {
			s.member.Store(true)
			return true
		}
	}
	if ask := s.candidateNamesUs.Load(); ask != nil {
		return (*ask)(candidate)
	}
	return false
}

// SetCandidateCheck installs how the vote guard asks a candidate whether
// its configuration names this node (cluster formation).
func (s *Store) SetCandidateCheck(f func(candidateID string) bool) { s.candidateNamesUs.Store(&f) }

// OpenStore starts Raft with a bolt log and stable store and a file snapshot
// store under dataDir/raft. A node with state just resumes. A node without
// state bootstraps itself as the single voter of a new cluster when it is
// configured to stand alone (no join, bootstrap_expect at most 1);
// otherwise it waits to be added by a leader or for Bootstrap.
func OpenStore(cfg Config, logger *slog.Logger) (*Store, error) {
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft dir: %w", err)
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("raft log store: %w", err)
	}
	logs, err := raft.NewLogCache(512, bolt)
	if err != nil {
		bolt.Close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("raft snapshot store: %w", err)
	}
	var trans *raft.NetworkTransport
	if files := cfg.TLSFiles(); files.Enabled() {
		server, cerr := files.ServerConfig()
		if cerr != nil {
			bolt.Close()
			return nil, cerr
		}
		client, cerr := files.ClientConfig()
		if cerr != nil {
			bolt.Close()
			return nil, cerr
		}
		trans, err = transport.NewRaftTransportTLS(cfg.RaftAddr, cfg.RaftAdvertise, server, client, os.Stderr)
	} else {
		trans, err = transport.NewRaftTransport(cfg.RaftAddr, cfg.RaftAdvertise, os.Stderr)
	}
	if err != nil {
		bolt.Close()
		return nil, err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.RaftTimeout
	rc.ElectionTimeout = cfg.RaftTimeout
	rc.LeaderLeaseTimeout = cfg.RaftTimeout / 2
	rc.SnapshotThreshold = 1024
	rc.TrailingLogs = 1024
	rc.SnapshotInterval = 30 * time.Second

	machine := fsm.NewMachine()
	has, err := raft.HasExistingState(logs, bolt, snaps)
	if err != nil {
		bolt.Close()
		trans.Close()
		return nil, fmt.Errorf("raft state: %w", err)
	}
	if !has && cfg.BootstrapExpect <= 1 && len(cfg.Join) == 0 {
		boot := raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter,
		}}}
		if err := raft.BootstrapCluster(rc, logs, bolt, snaps, trans, boot); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			bolt.Close()
			trans.Close()
			return nil, fmt.Errorf("raft bootstrap: %w", err)
		}
		logger.Info("bootstrapped a new single-node raft cluster", "node", cfg.NodeID)
	}
	// The node votes only as a member (transport.VoteGuard): once its own
	// id is in its configuration, or when the candidate's configuration
	// names it. A wiped node back on its old address must not vote, with
	// an empty log, for the member it replaced.
	st := &Store{nodeID: cfg.NodeID, fsm: machine, transport: trans, logStore: bolt, hadState: has}
	guarded := transport.GuardVotes(trans, st.voteAllowed)
	r, err := raft.NewRaft(rc, machine, logs, bolt, snaps, guarded)
	if err != nil {
		bolt.Close()
		trans.Close()
		return nil, fmt.Errorf("raft: %w", err)
	}
	st.running.Store(r)
	st.raft = r
	return st, nil
}

// FSM returns the local replica of the state machine.
func (s *Store) FSM() *fsm.Machine { return s.fsm }

// IsLeader reports whether this node is the Raft leader now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderCh delivers leadership changes.
func (s *Store) LeaderCh() <-chan bool { return s.raft.LeaderCh() }

// Apply commits cmd and returns the FSM's response. Raft errors are
// translated into ErrNotLeader (nothing happened) or ErrUnknownOutcome.
// The FSM's own error, if any, is in Response.Err.
func (s *Store) Apply(ctx context.Context, cmd fsm.Command) (fsm.Response, error) {
	b, err := cmd.Encode()
	if err != nil {
		return fsm.Response{}, err
	}
	f := s.raft.Apply(b, 5*time.Second)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// The entry may still commit: the caller must treat this as unknown.
		return fsm.Response{}, fmt.Errorf("%w: %v", wire.ErrUnknownOutcome, ctx.Err())
	}
	switch {
	case err == nil:
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown):
		return fsm.Response{}, fmt.Errorf("%w: %v", wire.ErrNotLeader, err)
	default:
		return fsm.Response{}, fmt.Errorf("%w: %v", wire.ErrUnknownOutcome, err)
	}
	resp, ok := f.Response().(fsm.Response)
	if !ok {
		return fsm.Response{}, fmt.Errorf("unexpected fsm response %T", f.Response())
	}
	return resp, nil
}

// Barrier waits until every committed entry is applied locally.
func (s *Store) Barrier(ctx context.Context) error {
	f := s.raft.Barrier(0)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: barrier: %v", wire.ErrNotLeader, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status describes the Raft view of this node.
type Status struct {
	State       string
	LeaderID    string
	LeaderAddr  string
	Term        uint64
	CommitIndex uint64
	LastContact string
	Servers     []raft.Server
}

// Status returns this node's Raft view.
func (s *Store) Status() Status {
	addr, id := s.raft.LeaderWithID()
	st := Status{
		State: s.raft.State().String(), LeaderID: string(id), LeaderAddr: string(addr),
		CommitIndex: s.raft.CommitIndex(),
	}
	stats := s.raft.Stats()
	fmt.Sscan(stats["term"], &st.Term)
	st.LastContact = stats["last_contact"]
	if f := s.raft.GetConfiguration(); f.Error() == nil {
		st.Servers = f.Configuration().Servers
	}
	return st
}

// HasState reports whether this node belongs to a Raft cluster: it had
// state at start or has a configuration now.
func (s *Store) HasState() bool {
	if s.hadState {
		return true
	}
	f := s.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// Bootstrap forms a new cluster of servers (every node of a
// bootstrap_expect group proposes the same configuration).
func (s *Store) Bootstrap(servers []raft.Server) error {
	err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil // state appeared meanwhile: we are in a cluster already
	}
	return err
}

// Members lists the nodes that take part in operations: every server of
// the Raft configuration.
func (s *Store) Members() ([]string, error) {
	servers, err := s.Servers()
	if err != nil {
		return nil, err
	}
	nodes := make([]string, 0, len(servers))
	for _, sv := range servers {
		nodes = append(nodes, string(sv.ID))
	}
	return nodes, nil
}

// Servers returns the current Raft configuration.
func (s *Store) Servers() ([]raft.Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	return f.Configuration().Servers, nil
}

// AddVoter adds (or re-addresses) a voting member. Leader only.
func (s *Store) AddVoter(id, addr string) error {
	return translateMembershipErr(s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error())
}

// AddNonvoter adds (or re-addresses) a member that replicates the log but
// does not vote. Leader only.
func (s *Store) AddNonvoter(id, addr string) error {
	return translateMembershipErr(s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error())
}

// RemoveServer removes a member. Leader only.
func (s *Store) RemoveServer(id string) error {
	return translateMembershipErr(s.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error())
}

func translateMembershipErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return fmt.Errorf("%w: %v", wire.ErrNotLeader, err)
	}
	return err
}

// VerifyLeader confirms with a quorum that this node still leads: the
// basis of consistent reads.
func (s *Store) VerifyLeader(ctx context.Context) error {
	f := s.raft.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %v", wire.ErrNotLeader, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LeaderID returns the current leader's id, "" if unknown.
func (s *Store) LeaderID() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// Close shuts Raft down and closes its stores.
func (s *Store) Close() error {
	err := s.raft.Shutdown().Error()
	s.transport.Close()
	if cerr := s.logStore.Close(); err == nil {
		err = cerr
	}
	return err
}
