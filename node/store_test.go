package node

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
)

func storeConfig(t *testing.T, dataDir string, join []string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.Join = "s1", dataDir, freePort(t), join
	cfg.RaftAdvertise = cfg.RaftAddr
	cfg.RaftTimeout = 100 * time.Millisecond
	return cfg
}

// TestStoreWaitingToJoin: a store told to join does not bootstrap; until
// it is in a configuration it leads nothing, votes only for a candidate
// that names it, and every write says there is no leader here.
func TestStoreWaitingToJoin(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(storeConfig(t, dir, []string{"127.0.0.1:1"}), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.HasState() || s.IsLeader() || s.LeaderID() != "" {
		t.Fatalf("a joining store: state %v leader %v %q", s.HasState(), s.IsLeader(), s.LeaderID())
	}
	if m, err := s.Members(); err != nil || len(m) != 0 {
		t.Errorf("members of no configuration: %v %v", m, err)
	}
	if st := s.Status(); st.State != "Follower" || len(st.Servers) != 0 || st.LeaderID != "" {
		t.Errorf("status: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := fsm.Command{Type: fsm.CmdStart, OpID: "x"}
	if _, err := s.Apply(ctx, cmd); !errors.Is(err, wire.ErrNotLeader) {
		t.Errorf("apply on a non-leader: %v", err)
	}
	if err := s.Barrier(ctx); !errors.Is(err, wire.ErrNotLeader) {
		t.Errorf("barrier on a non-leader: %v", err)
	}
	if err := s.VerifyLeader(ctx); !errors.Is(err, wire.ErrNotLeader) {
		t.Errorf("verify leader on a non-leader: %v", err)
	}
	for name, f := range map[string]func() error{
		"add voter":     func() error { return s.AddVoter("s2", "127.0.0.1:2") },
		"add non-voter": func() error { return s.AddNonvoter("s2", "127.0.0.1:2") },
		"remove":        func() error { return s.RemoveServer("s2") },
	} {
		if err := f(); !errors.Is(err, wire.ErrNotLeader) {
			t.Errorf("%s on a non-leader: %v", name, err)
		}
	}

	// The vote guard: no member yet, so only a candidate that names it.
	if s.voteAllowed("c") {
		t.Error("voted without a configuration or a candidate check")
	}
	var asked []string
	s.SetCandidateCheck(func(c string) bool { asked = append(asked, c); return c == "friend" })
	if s.voteAllowed("stranger") || !s.voteAllowed("friend") || len(asked) != 2 {
		t.Errorf("candidate check: asked %v", asked)
	}

	// Bootstrapped, it leads its configuration and is a member for good.
	if err := s.Bootstrap([]raft.Server{{ID: "s1", Address: raft.ServerAddress(s.transport.LocalAddr()), Suffrage: raft.Voter}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "leadership", 10*time.Second, s.IsLeader)
	asked = nil
	if !s.voteAllowed("stranger") || len(asked) != 0 || !s.HasState() {
		t.Errorf("a member votes without asking: asked %v, state %v", asked, s.HasState())
	}
	if err := s.Bootstrap(nil); err != nil {
		t.Errorf("a second bootstrap: %v, want none (already in a cluster)", err)
	}
	if err := s.Barrier(ctx); err != nil {
		t.Errorf("barrier on the leader: %v", err)
	}
	if err := s.VerifyLeader(ctx); err != nil {
		t.Errorf("verify leader on the leader: %v", err)
	}
	if resp, err := s.Apply(ctx, fsm.Command{Type: "no-such-command"}); err != nil || !errors.Is(resp.Err, fsm.ErrInvalidCommand) {
		t.Errorf("an invalid command: %v, fsm error %v", err, resp.Err)
	}
	if st := s.Status(); st.State != "Leader" || st.LeaderID != "s1" || st.Term == 0 || len(st.Servers) != 1 {
		t.Errorf("leader status: %+v", st)
	}
}

// TestStoreRestart: a lone store bootstraps once; reopened, it resumes
// with its state and leads again without bootstrapping.
func TestStoreRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := storeConfig(t, dir, nil)
	s, err := OpenStore(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if s.hadState {
		t.Error("a new store had state")
	}
	eventually(t, "leadership", 10*time.Second, s.IsLeader)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(context.Background(), fsm.Command{Type: fsm.CmdStart}); !errors.Is(err, wire.ErrNotLeader) {
		t.Errorf("apply after shutdown: %v", err)
	}
	s, err = OpenStore(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.hadState || !s.HasState() {
		t.Error("a reopened store lost its state")
	}
	eventually(t, "leadership after restart", 10*time.Second, s.IsLeader)

	// The Raft port is taken: a second store cannot open.
	other := storeConfig(t, t.TempDir(), nil)
	other.RaftAddr, other.RaftAdvertise = cfg.RaftAddr, cfg.RaftAddr
	if s2, err := OpenStore(other, quietLog()); err == nil {
		s2.Close()
		t.Error("two stores on one Raft address")
	}
	// The data dir is not a directory.
	other = storeConfig(t, t.TempDir()+"/file", nil)
	if err := os.WriteFile(other.DataDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(other, quietLog()); err == nil {
		t.Error("a store in a file")
	}
}
