package node

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

// sharedRepository creates a repository in a temp dir and returns its URL
// and key file.
func sharedRepository(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "repo.key")
	k, err := WriteNewKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	url := "file://" + filepath.Join(dir, "repo")
	repo, err := storage.Init(context.Background(), url, storage.InitOptions{Secret: storage.Secret{KeyMaterial: k}})
	if err != nil {
		t.Fatal(err)
	}
	repo.Close()
	return url, keyFile
}

// member returns the member id of st, and whether it is listed.
func member(st api.ClusterStatus, id string) (api.Member, bool) {
	i := slices.IndexFunc(st.Members, func(m api.Member) bool { return m.ID == id })
	if i < 0 {
		return api.Member{}, false
	}
	return st.Members[i], true
}

func (a *testAgent) cluster() api.ClusterStatus {
	a.t.Helper()
	var st api.ClusterStatus
	a.expect(http.StatusOK, http.MethodGet, "/v1/cluster", nil, &st)
	return st
}

// TestCluster: two agents form a cluster with bootstrap_expect, a third
// beyond max_voters joins as a non-voter, a fourth with another
// repository is not admitted; a follower forwards writes and consistent
// reads to the leader; a backup and a restore span the members; a member
// that leaves is removed.
func TestCluster(t *testing.T) {
	repo, key := sharedRepository(t)
	opts := func(id string, join ...string) agentOpts {
		return agentOpts{id: id, repository: repo, keyFile: key, join: join, bootstrapExpect: 2, maxVoters: 2}
	}
	n1 := startAgent(t, opts("n1"))
	n2 := startAgent(t, opts("n2", n1.cfg.GossipAddr))
	var leader, follower *testAgent
	eventually(t, "a leader of two voters", 30*time.Second, func() bool {
		for _, a := range []*testAgent{n1, n2} {
			if a.agent.store.IsLeader() {
				st := a.cluster()
				m1, _ := member(st, "n1")
				m2, _ := member(st, "n2")
				if m1.Suffrage == "Voter" && m2.Suffrage == "Voter" {
					leader, follower = a, map[*testAgent]*testAgent{n1: n2, n2: n1}[a]
					return true
				}
			}
		}
		return false
	})
	leader.waitLeader()

	// Beyond max_voters: a non-voter. Another repository: not admitted.
	n3 := startAgent(t, opts("n3", n1.cfg.GossipAddr))
	n4 := startAgent(t, agentOpts{id: "n4", join: []string{n1.cfg.GossipAddr}})
	var st api.ClusterStatus
	eventually(t, "n3 a non-voter, n4 seen", 30*time.Second, func() bool {
		st = leader.cluster()
		m3, _ := member(st, "n3")
		m4, ok := member(st, "n4")
		return m3.Suffrage == "Nonvoter" && m3.Gossip == "alive" && ok && m4.Gossip == "alive"
	})
	if st.State != "Leader" || st.LeaderID != leader.cfg.NodeID || st.NodeID != leader.cfg.NodeID || st.Epoch == 0 || st.Coordinator != leader.cfg.NodeID {
		t.Errorf("leader's status: %s", mustJSON(t, st))
	}
	if m4, _ := member(st, "n4"); !m4.OtherRepository || m4.Suffrage != "" || m4.RepositoryID == st.RepositoryID || m4.RepositoryID == "" {
		t.Errorf("a member of another repository: %s", mustJSON(t, m4))
	}
	if m2, _ := member(st, "n2"); m2.HTTPAddr != n2.cfg.HTTPAddr || m2.RaftAddr != n2.cfg.RaftAddr || m2.Version != Version || m2.OtherRepository {
		t.Errorf("n2 as the leader sees it: %s", mustJSON(t, m2))
	}
	if fs := follower.cluster(); fs.State != "Follower" || fs.LeaderID != leader.cfg.NodeID {
		t.Errorf("follower's status: %s", mustJSON(t, fs))
	}
	var rs raftStateReply
	n4.expect(http.StatusOK, http.MethodGet, "/internal/v1/raft-state", nil, &rs)
	if rs.HasState {
		t.Errorf("n4 was admitted to raft: %+v", rs)
	}
	// n4 knows no leader: writes are 503 no_leader, to be retried; a read
	// of an operation it does not know is its own 404.
	if msg := n4.expectError(http.StatusServiceUnavailable, api.CodeNoLeader, http.MethodPost, "/v1/backups", nil); !strings.Contains(msg, "no leader") {
		t.Errorf("a write on a node without a leader: %q", msg)
	}
	n4.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodGet, "/v1/operations/cb1", nil)

	// A backup started on the follower runs on the leader, across n1-n3.
	members := []*testAgent{n1, n2, n3}
	for _, a := range members {
		writeTree(t, a.root, map[string]string{"own/" + a.cfg.NodeID + ".txt": a.cfg.NodeID})
	}
	op := follower.start("/v1/backups", api.StartBackupRequest{ID: "cb1"})
	op = leader.waitOp(op.ID)
	if op.State != fsm.OpSucceeded {
		t.Fatalf("cluster backup: %s %s", op.State, op.Error)
	}
	var detail api.BackupDetail
	follower.expect(http.StatusOK, http.MethodGet, "/v1/backups/"+op.BackupID, nil, &detail)
	if !slices.Equal(detail.Summary.Nodes, []string{"n1", "n2", "n3"}) {
		t.Fatalf("backup nodes %v", detail.Summary.Nodes)
	}
	// Reads through the follower: consistent ones ask the leader, and an
	// operation the follower does not know is the leader's to deny.
	var got fsm.Operation
	follower.expect(http.StatusOK, http.MethodGet, "/v1/operations/cb1?consistent=true", nil, &got)
	if got.State != fsm.OpSucceeded {
		t.Errorf("consistent read through the follower: %s", got.State)
	}
	var ops api.OperationList
	follower.expect(http.StatusOK, http.MethodGet, "/v1/operations?consistent=true", nil, &ops)
	if len(ops.Operations) != 1 {
		t.Errorf("operations through the follower: %d", len(ops.Operations))
	}
	follower.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodGet, "/v1/operations/unknown", nil)
	// A body over the limit is the follower's own 413, not a failed forward.
	follower.expectError(http.StatusRequestEntityTooLarge, api.CodeTooLarge, http.MethodPost, "/v1/gc", strings.Repeat(" ", 2<<20))

	// Damage the follower, preview and restore through it.
	victim := follower
	writeTree(t, victim.root, map[string]string{"a.txt": "damaged!"})
	var preview api.RestorePreview
	follower.expect(http.StatusOK, http.MethodPost, "/v1/restores/preview", api.StartRestoreRequest{}, &preview)
	if len(preview.Nodes) != 3 {
		t.Fatalf("preview of three nodes: %s", mustJSON(t, preview))
	}
	for _, p := range preview.Nodes {
		if p.Error != "" || p.Mode != "mirror" {
			t.Errorf("preview of %s: %s", p.Node, mustJSON(t, p))
		}
		if wantOverwrite := int64(map[bool]int{true: 1}[p.Node == victim.cfg.NodeID]); p.Overwrite != wantOverwrite {
			t.Errorf("preview of %s: overwrite %d, want %d", p.Node, p.Overwrite, wantOverwrite)
		}
	}
	follower.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/v1/restores/preview",
		api.StartRestoreRequest{Target: "relative/path"})
	r := follower.start("/v1/restores", api.StartRestoreRequest{})
	if r = leader.waitOp(r.ID); r.State != fsm.OpSucceeded {
		t.Fatalf("cluster restore: %s %s", r.State, r.Error)
	}
	if b, _ := os.ReadFile(filepath.Join(victim.root, "a.txt")); string(b) != initialTree["a.txt"] {
		t.Errorf("restored a.txt on %s: %q", victim.cfg.NodeID, b)
	}

	// Removing by hand: never a live member.
	if msg := follower.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/v1/cluster/remove", api.RemoveNodeRequest{Node: "n3"}); !strings.Contains(msg, "alive") {
		t.Errorf("removing a live member: %q", msg)
	}

	// n3 leaves: the leader takes it out of Raft and forgets it.
	var left map[string]string
	n3.expect(http.StatusOK, http.MethodPost, "/v1/cluster/leave", nil, &left)
	if left["left"] != "n3" {
		t.Errorf("leave answered %v", left)
	}
	eventually(t, "n3 removed", 30*time.Second, func() bool {
		_, ok := member(leader.cluster(), "n3")
		return !ok
	})
	if servers, err := leader.agent.store.Members(); err != nil || !slices.Equal(servers, []string{"n1", "n2"}) {
		t.Errorf("raft members after n3 left: %v %v", servers, err)
	}
	// The peers were saved for a restart without join.
	if peers := loadPeers(follower.cfg.DataDir); len(peers) == 0 {
		t.Errorf("follower saved no peers")
	}
}
