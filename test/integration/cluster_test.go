package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/coord"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// cluster is a set of agents that form one Raft cluster by gossip.
type cluster struct {
	t      *testing.T
	agents []*agent
	repo   string
	key    string
}

// startCluster starts n agents on 127.0.0.2, 127.0.0.3, ... named
// prefix1..prefixN that form a cluster with --bootstrap-expect n (the
// first one alone, the others joining it), sharing one repository.
func startCluster(t *testing.T, n int, prefix, repo, key string, extra ...string) *cluster {
	t.Helper()
	return startSecuredCluster(t, n, prefix, repo, key, nil, extra...)
}

// startSecuredCluster is startCluster with TLS and tokens when sec is set.
func startSecuredCluster(t *testing.T, n int, prefix, repo, key string, sec *security, extra ...string) *cluster {
	t.Helper()
	if repo == "" {
		repo, key = initRepo(t)
	}
	c := &cluster{t: t, repo: repo, key: key}
	flags := append([]string{"--bootstrap-expect", fmt.Sprint(n), "--node-timeout", "30s"}, extra...)
	for i := range n {
		f := flags
		if i > 0 {
			f = append([]string{"--join", c.agents[0].gossip}, flags...)
		}
		c.agents = append(c.agents, newAgent(t, agentOpts{nodeID: fmt.Sprintf("%s%d", prefix, i+1), ip: fmt.Sprintf("127.0.0.%d", i+2),
			repo: repo, keyFile: key, clustered: true, secure: sec, extra: f}))
	}
	c.waitVoters(n, 60*time.Second)
	return c
}

// waitVoters waits until every running agent knows a leader and the
// leader's Raft configuration has n voters.
func (c *cluster) waitVoters(n int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := c.leader(); l != nil {
			var st api.ClusterStatus
			voters := 0
			if l.getJSON("/v1/cluster", &st) == 200 {
				for _, m := range st.Members {
					if m.Suffrage == "Voter" {
						voters++
					}
				}
			}
			if voters == n {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, a := range c.agents {
		c.t.Logf("agent %s log:\n%s", a.nodeID, tail(a.logs(), 3000))
	}
	c.t.Fatalf("cluster did not reach %d voters in %s", n, timeout)
}

// quickClient asks about leadership: a stopped agent must not stall it.
var quickClient = &http.Client{Timeout: time.Second}

// leader returns the running agent that leads, or nil.
func (c *cluster) leader() *agent {
	for _, a := range c.agents {
		if a.cmd == nil {
			continue
		}
		var st api.ClusterStatus
		if a.getJSONWith(quickClient, "/v1/cluster", &st) == 200 && st.State == "Leader" {
			return a
		}
	}
	return nil
}

// follower returns a running agent that does not lead.
func (c *cluster) follower(not ...*agent) *agent {
	l := c.leader()
	for _, a := range c.agents {
		skip := a == l || a.cmd == nil
		for _, n := range not {
			skip = skip || a == n
		}
		if !skip {
			return a
		}
	}
	c.t.Fatal("no follower")
	return nil
}

func (c *cluster) waitNewLeader(old *agent, timeout time.Duration) *agent {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := c.leader(); l != nil && l != old {
			return l
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no new leader")
	return nil
}

// fillRoots gives every node its own files plus a shared 12 MiB file
// (three chunks) identical on all nodes.
func fillRoots(t *testing.T, agents []*agent, ownBytes int) {
	t.Helper()
	shared := randomBytes(rand.New(rand.NewPCG(7, 7)), 12<<20)
	for i, a := range agents {
		r := rand.New(rand.NewPCG(uint64(i+100), 1))
		writeFile(t, filepath.Join(a.root, "shared", "common.bin"), shared, 0o644)
		writeFile(t, filepath.Join(a.root, "own", a.nodeID+".bin"), randomBytes(r, ownBytes), 0o600)
		for j := range 20 {
			writeFile(t, filepath.Join(a.root, "small", fmt.Sprintf("%s-%02d.txt", a.nodeID, j)), randomBytes(r, 100+j*37), 0o644)
		}
		writeFile(t, filepath.Join(a.root, "empty", ".keep"), nil, 0o644)
	}
}

func uploadResults(t *testing.T, op *fsm.Operation) map[string]wire.UploadResult {
	t.Helper()
	out := map[string]wire.UploadResult{}
	for _, st := range op.Steps {
		if st.Name == wire.StepUpload {
			var r wire.UploadResult
			if err := json.Unmarshal(st.Result, &r); err != nil {
				t.Fatalf("upload result of %s: %v", st.Node, err)
			}
			out[st.Node] = r
		}
	}
	return out
}

// TestClusterBackupRestore: three agents join by gossip and bootstrap
// together; a backup started on a follower (forwarded to the leader)
// takes every node's files, uploads the file all nodes share once, and
// restores byte for byte onto the same cluster and onto a fresh cluster
// of other node ids from the repository alone.
func TestClusterBackupRestore(t *testing.T) {
	c := startCluster(t, 3, "n", "", "")
	fillRoots(t, c.agents, 3<<20)
	want := map[string]map[string]entryDesc{}
	for _, a := range c.agents {
		want[a.nodeID] = describeTree(t, a.root)
	}
	f := c.follower()
	op := f.backupWait("--id", "cluster-b1")
	var dedup coord.DedupResult
	stepResult(t, op, wire.StepDedup, &dedup)
	if dedup.Shared != 3 || dedup.SavedBytes != 2*(12<<20) {
		t.Fatalf("dedup %+v: want the 3 chunks of the shared file assigned once", dedup)
	}
	var uploaded int64
	for n, r := range uploadResults(t, op) {
		uploaded += r.Uploaded
		t.Logf("node %s uploaded %d chunks (%d bytes)", n, r.Uploaded, r.UploadedBytes)
	}
	// The snapshots saved the small files as they read them (20 of a
	// chunk each per node, read once); the dedup step saw what was left:
	// the large files, whose shared chunks it gave to one node each.
	if smallSaved := int64(3 * 20); uploaded != dedup.Missing+smallSaved {
		t.Fatalf("nodes uploaded %d chunks, the repository lacked %d after the snapshots saved %d", uploaded, dedup.Missing, smallSaved)
	}
	checkClusterMetrics(t, c, op)

	// Damage every node, restore through another follower.
	for _, a := range c.agents {
		writeFile(t, filepath.Join(a.root, "own", a.nodeID+".bin"), []byte("damaged"), 0o600)
		os.RemoveAll(filepath.Join(a.root, "small"))
		writeFile(t, filepath.Join(a.root, "junk.txt"), []byte("junk"), 0o644)
	}
	if res := c.follower(f).cli("restore", op.BackupID, "--wait"); res.code != 0 {
		t.Fatalf("restore: %s\n%s", res.stderr, res.stdout)
	}
	for _, a := range c.agents {
		compareTrees(t, want[a.nodeID], describeTree(t, a.root))
	}

	// A fresh cluster with other ids restores the same backup by order.
	for _, a := range c.agents {
		a.stop()
	}
	fresh := startCluster(t, 3, "m", c.repo, c.key)
	if res := fresh.follower().cli("restore", "--wait"); res.code != 0 {
		t.Fatalf("restore on a fresh cluster: %s\n%s", res.stderr, res.stdout)
	}
	for i, a := range fresh.agents {
		compareTrees(t, want[c.agents[i].nodeID], describeTree(t, a.root))
	}
	// One node only, with an explicit mapping.
	os.RemoveAll(filepath.Join(fresh.agents[0].root, "own"))
	if res := fresh.agents[1].cli("restore", "--node", "m1", "--map", "m1=n1", "--wait"); res.code != 0 {
		t.Fatalf("restore --node: %s", res.stderr)
	}
	compareTrees(t, want["n1"], describeTree(t, fresh.agents[0].root))
}

// stepRunning reports whether op has a running step called name with
// some progress.
func stepRunning(op *fsm.Operation, name string) bool {
	for _, st := range op.Steps {
		if st.Name == name && st.State == fsm.StepRunning && st.Progress != nil && st.Progress.BytesDone > 0 {
			return true
		}
	}
	return false
}

// startBackupAndWaitFor starts a backup on a and waits until cond holds.
func startBackupAndWaitFor(t *testing.T, a *agent, id string, cond func(*fsm.Operation) bool) {
	t.Helper()
	if code, body := a.post("/v1/backups", `{"id":"`+id+`"}`); code != http.StatusAccepted {
		t.Fatalf("start backup: %d %v", code, body)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var op fsm.Operation
		if a.getJSON("/v1/operations/"+id, &op) == 200 {
			if op.State.Terminal() {
				t.Fatalf("backup ended before the test could act: %s %s", op.State, op.Error)
			}
			if cond(&op) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("backup never reached the wanted state")
}

// TestFailoverResumesBackup: SIGKILL the leader while the nodes upload; a
// new leader resumes the same operation (measured: time until a step
// runs again under the new epoch), the killed node comes back with its
// data dir and rejoins without flags, the backup completes and restores
// byte for byte, and little is uploaded twice.
func TestFailoverResumesBackup(t *testing.T) {
	const own = 48 << 20
	c := startCluster(t, 3, "n", "", "", "--upload-bytes-per-second", fmt.Sprint(16<<20))
	fillRoots(t, c.agents, own)
	want := map[string]map[string]entryDesc{}
	for _, a := range c.agents {
		want[a.nodeID] = describeTree(t, a.root)
	}
	old := c.leader()
	survivor := c.follower()
	startBackupAndWaitFor(t, survivor, "fo-1", func(op *fsm.Operation) bool { return stepRunning(op, wire.StepUpload) })
	var before fsm.Operation
	survivor.getJSON("/v1/operations/fo-1", &before)
	killed := time.Now()
	old.kill()
	// Time until the operation runs again: a step started under a newer epoch.
	var resumedAfter time.Duration
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var op fsm.Operation
		if survivor.getJSON("/v1/operations/fo-1", &op) == 200 && op.Epoch > before.Epoch {
			resumedAfter = time.Since(killed)
			break
		}
	}
	if resumedAfter == 0 {
		t.Fatal("the operation did not resume under a new leader")
	}
	t.Logf("MEASURE failover: leader SIGKILL to operation running under the new epoch: %s", resumedAfter.Round(time.Millisecond))
	// The killed node returns with its data dir and no join flags.
	old.extra = []string{"--upload-bytes-per-second", fmt.Sprint(16 << 20), "--node-timeout", "30s"}
	old.launch()
	op := survivor.waitOp("fo-1", 3*time.Minute)
	if op.State != fsm.OpSucceeded {
		t.Fatalf("backup after failover: %s %s", op.State, op.Error)
	}
	total, dataStored := int64(0), repoDataBytes(t, c.repo)
	for _, a := range c.agents {
		for _, e := range want[a.nodeID] {
			total += e.size
		}
	}
	distinct := total - 2*(12<<20) // the shared file is stored once
	t.Logf("MEASURE failover: data stored %d bytes for %d distinct bytes: %.1f%% extra", dataStored, distinct, 100*float64(dataStored-distinct)/float64(distinct))
	// Packs the killed node uploaded before its last index checkpoint are
	// adopted on resume, not uploaded again; only the packs that were in
	// flight at the kill (at most storage.MaxPackUploads of at most 16 MiB)
	// can be lost and stored twice.
	if limit := distinct + storage.MaxPackUploads*(16<<20); dataStored > limit {
		t.Fatalf("stored %d bytes for %d distinct: more re-uploaded than the packs in flight", dataStored, distinct)
	}
	// Restore onto damaged nodes.
	for _, a := range c.agents {
		writeFile(t, filepath.Join(a.root, "own", a.nodeID+".bin"), []byte("damaged"), 0o600)
	}
	c.waitVoters(3, 30*time.Second)
	if res := survivor.cli("restore", op.BackupID, "--wait"); res.code != 0 {
		t.Fatalf("restore: %s", res.stderr)
	}
	for _, a := range c.agents {
		compareTrees(t, want[a.nodeID], describeTree(t, a.root))
	}
}

// repoDataBytes sums the sizes of the repository's data packs.
func repoDataBytes(t *testing.T, url string) int64 {
	t.Helper()
	var n int64
	root := url[len("file://"):]
	filepath.Walk(filepath.Join(root, "data"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	if n == 0 {
		t.Fatalf("no data packs under %s", root)
	}
	return n
}

type fenceJournal struct {
	Admitted []struct {
		OpID  string    `json:"op_id"`
		Step  int       `json:"step"`
		Epoch uint64    `json:"epoch"`
		At    time.Time `json:"at"`
	} `json:"admitted"`
	RefusedStale int64 `json:"refused_stale"`
}

// TestZombieLeaderIsFenced: SIGSTOP the leader mid-backup past the
// election timeout; the new leader continues; SIGCONT the old one. No
// node admits a call of the old epoch after it admitted the new one, and
// the backup completes.
func TestZombieLeaderIsFenced(t *testing.T) {
	c := startCluster(t, 3, "n", "", "", "--upload-bytes-per-second", fmt.Sprint(16<<20))
	fillRoots(t, c.agents, 64<<20)
	old := c.leader()
	other := c.follower()
	startBackupAndWaitFor(t, other, "z-1", func(op *fsm.Operation) bool { return stepRunning(op, wire.StepUpload) })
	var before fsm.Operation
	other.getJSON("/v1/operations/z-1", &before)
	oldEpoch := before.Epoch
	if err := old.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			old.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	c.waitNewLeader(old, 30*time.Second)
	time.Sleep(2 * time.Second) // the new leader works while the old one sleeps
	if err := old.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	op := other.waitOp("z-1", 3*time.Minute)
	if op.State != fsm.OpSucceeded {
		t.Fatalf("backup: %s %s", op.State, op.Error)
	}
	if op.Epoch <= oldEpoch {
		t.Fatalf("operation finished under epoch %d, not after %d", op.Epoch, oldEpoch)
	}
	for _, a := range c.agents {
		var j fenceJournal
		if code := a.getJSON("/internal/v1/fence", &j); code != 200 {
			t.Fatalf("fence journal of %s: %d", a.nodeID, code)
		}
		var highest uint64
		for _, call := range j.Admitted {
			if call.Epoch < highest {
				t.Fatalf("node %s admitted epoch %d after %d: %+v", a.nodeID, call.Epoch, highest, call)
			}
			highest = call.Epoch
		}
		if highest <= oldEpoch {
			t.Fatalf("node %s never admitted the new epoch (highest %d)", a.nodeID, highest)
		}
		t.Logf("node %s: %d calls admitted, %d stale calls refused", a.nodeID, len(j.Admitted), j.RefusedStale)
	}
}

// TestFollowerKilledMidBackup: a follower killed during the uploads makes
// the operation wait; when it comes back the backup completes. With a
// short node_timeout and the follower gone for good, the backup fails
// cleanly and releases everything.
func TestFollowerKilledMidBackup(t *testing.T) {
	c := startCluster(t, 3, "n", "", "", "--upload-bytes-per-second", fmt.Sprint(16<<20), "--node-timeout", "8s")
	fillRoots(t, c.agents, 64<<20)
	leader := c.leader()
	victim := c.follower()
	startBackupAndWaitFor(t, leader, "fk-1", func(op *fsm.Operation) bool { return stepRunning(op, wire.StepUpload) })
	victim.kill()
	time.Sleep(2 * time.Second)
	victim.launch()
	op := leader.waitOp("fk-1", 3*time.Minute)
	if op.State != fsm.OpSucceeded {
		t.Fatalf("backup with a returning follower: %s %s", op.State, op.Error)
	}
	c.waitVoters(3, 30*time.Second)
	// Now the follower dies for good during a backup (with new data to
	// upload, so the backup cannot finish without it).
	writeFile(t, filepath.Join(victim.root, "own", "more.bin"), randomBytes(rand.New(rand.NewPCG(9, 9)), 32<<20), 0o600)
	startBackupAndWaitFor(t, leader, "fk-2", func(op *fsm.Operation) bool {
		for _, st := range op.Steps {
			if st.Name == wire.StepSnapshot && st.State == fsm.StepDone {
				return true
			}
		}
		return false
	})
	victim.kill()
	op = leader.waitOp("fk-2", 3*time.Minute)
	if op.State != fsm.OpFailed {
		t.Fatalf("backup without the follower: %s, want failed", op.State)
	}
	for _, st := range op.Steps {
		if st.Name == wire.StepUnlock && st.State != fsm.StepDone {
			t.Fatalf("unlock step %s after the failure", st.State)
		}
		if st.Name == wire.StepManifest && st.State == fsm.StepDone {
			t.Fatal("a failed backup wrote its manifest")
		}
		// The dead node's release is deferred (it sweeps its snapshot when
		// back); the others release normally.
		if st.Name == wire.StepRelease && st.State != fsm.StepDone {
			t.Fatalf("release on %s: %s %s", st.Node, st.State, st.Error)
		}
	}
	if res := leader.cli("list", "--output", "json"); strings.Contains(res.stdout, op.BackupID) {
		t.Fatal("the failed backup is listed")
	}
	t.Logf("failed as expected: %s", op.Error)
}

// TestFiveNodeMembership: five agents bootstrap together; tiny backups
// measure the coordination overhead; a dead member is removed by hand, a
// member that leaves is removed by the leader, a new node (a wiped host
// under a new id) joins, and backups keep working at each size.
func TestFiveNodeMembership(t *testing.T) {
	c := startCluster(t, 5, "n", "", "", "--max-voters", "3")
	for _, a := range c.agents {
		writeFile(t, filepath.Join(a.root, "tiny.txt"), []byte("tiny "+a.nodeID), 0o644)
	}
	f := c.follower()
	f.backupWait() // warm up
	const runs = 5
	start := time.Now()
	for range runs {
		f.backupWait()
	}
	per := time.Since(start) / runs
	t.Logf("MEASURE coordination: 5-node backup of tiny data, through a follower: %s per backup (mean of %d)", per.Round(time.Millisecond), runs)
	alone := newAgent(t, agentOpts{nodeID: "solo", ip: "127.0.0.9"})
	writeFile(t, filepath.Join(alone.root, "tiny.txt"), []byte("tiny"), 0o644)
	alone.backupWait()
	start = time.Now()
	for range runs {
		alone.backupWait()
	}
	t.Logf("MEASURE coordination: 1-node backup of tiny data: %s per backup (mean of %d)", (time.Since(start) / runs).Round(time.Millisecond), runs)
	alone.stop()

	// A dead member (not the leader): removed by hand.
	dead := c.follower(f)
	dead.kill()
	live := c.follower(f, dead)
	if res := f.cli("cluster", "remove", live.nodeID); res.code == 0 || !strings.Contains(res.stderr, "alive") {
		t.Fatalf("removing a live member: exit %d %s", res.code, res.stderr)
	}
	// Gossip needs a few seconds to declare the killed node dead.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		res := f.cli("cluster", "remove", dead.nodeID)
		if res.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster remove: %s", res.stderr)
		}
	}
	c.agents = slices.DeleteFunc(c.agents, func(a *agent) bool { return a == dead })
	c.waitVoters(4, 30*time.Second)
	// A member that leaves gracefully: removed by the leader.
	leaving := c.agents[3]
	if leaving == c.leader() {
		leaving = c.agents[2]
	}
	if res := leaving.cli("cluster", "leave"); res.code != 0 {
		t.Fatalf("cluster leave: %s", res.stderr)
	}
	c.waitVoters(3, 30*time.Second)
	leaving.stop()
	var rest []*agent
	for _, a := range c.agents {
		if a != leaving {
			rest = append(rest, a)
		}
	}
	c.agents = rest
	f = c.follower()
	op := f.backupWait()
	if n := len(uploadResults(t, op)); n != 3 {
		t.Fatalf("backup after shrinking ran on %d nodes, want 3", n)
	}
	// A new host under a new id joins the running cluster; with three
	// voters already (max_voters 3) it replicates as a non-voter.
	fresh := newAgent(t, agentOpts{nodeID: "n6", ip: "127.0.0.8", repo: c.repo, keyFile: c.key, clustered: true,
		extra: []string{"--join", c.agents[0].gossip, "--max-voters", "3"}})
	writeFile(t, filepath.Join(fresh.root, "tiny.txt"), []byte("tiny n6"), 0o644)
	c.agents = append(c.agents, fresh)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var st api.ClusterStatus
		c.agents[0].getJSON("/v1/cluster", &st)
		if slices.ContainsFunc(st.Members, func(m api.Member) bool { return m.ID == "n6" && m.Suffrage == "Nonvoter" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n6 did not join as a non-voter: %+v", st.Members)
		}
	}
	op = fresh.backupWait()
	if _, ok := uploadResults(t, op)["n6"]; !ok {
		t.Fatal("the new node took no part in the backup")
	}
	var st api.ClusterStatus
	fresh.getJSON("/v1/cluster", &st)
	for _, m := range st.Members {
		if m.ID == dead.nodeID || m.ID == leaving.nodeID {
			t.Fatalf("removed member %s still listed: %+v", m.ID, m)
		}
	}
	// A voter goes: the non-voter is promoted.
	gone := c.follower(fresh)
	gone.kill()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if res := fresh.cli("cluster", "remove", gone.nodeID); res.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not remove %s", gone.nodeID)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		fresh.getJSON("/v1/cluster", &st)
		if slices.ContainsFunc(st.Members, func(m api.Member) bool { return m.ID == "n6" && m.Suffrage == "Voter" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n6 was not promoted: %+v", st.Members)
		}
	}
}

// TestDeadMemberReaped: a member dead longer than dead_node_timeout
// leaves the Raft configuration by itself, but never below
// bootstrap_expect voters.
func TestDeadMemberReaped(t *testing.T) {
	c := startCluster(t, 3, "n", "", "", "--dead-node-timeout", "2s")
	fourth := newAgent(t, agentOpts{nodeID: "n4", ip: "127.0.0.5", repo: c.repo, keyFile: c.key, clustered: true,
		extra: []string{"--join", c.agents[0].gossip, "--bootstrap-expect", "3", "--dead-node-timeout", "2s"}})
	c.agents = append(c.agents, fourth)
	c.waitVoters(4, 30*time.Second)
	first := c.follower()
	first.kill()
	c.waitVoters(3, 30*time.Second) // reaped
	second := c.follower(first)
	second.kill()
	time.Sleep(10 * time.Second) // well past the timeout and gossip's detection
	var st api.ClusterStatus
	l := c.leader()
	if l == nil {
		t.Fatal("no leader with 2 of 3 voters alive")
	}
	l.getJSON("/v1/cluster", &st)
	voters := 0
	for _, m := range st.Members {
		if m.Suffrage == "Voter" {
			voters++
		}
	}
	if voters != 3 {
		t.Fatalf("%d voters after the second death, want 3 (never below bootstrap_expect): %+v", voters, st.Members)
	}
}

// TestWipedMemberBackWithNewID: a member loses its disk and comes back on
// the same addresses under a new id. The leader removes the old id by
// itself (Raft addresses servers by address: the new process must not go
// on answering for the old member), adds the new one, and the cluster
// keeps working with every backup listed.
func TestWipedMemberBackWithNewID(t *testing.T) {
	c := startCluster(t, 3, "w", "", "")
	backup := c.agents[0].backupWait()
	victim := c.follower()
	victim.kill()
	reborn := *victim
	reborn.nodeID = victim.nodeID + "b"
	reborn.dataDir = filepath.Join(t.TempDir(), "data") // the wiped disk
	reborn.logPath = filepath.Join(t.TempDir(), "agent.log")
	reborn.launch()
	t.Cleanup(reborn.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st api.ClusterStatus
		ids := map[string]string{} // Raft members (gossip-only ones have no suffrage)
		if l := c.leader(); l != nil && l.getJSON("/v1/cluster", &st) == 200 {
			for _, m := range st.Members {
				if m.Suffrage != "" {
					ids[m.ID] = m.Suffrage
				}
			}
		}
		if _, old := ids[victim.nodeID]; !old && ids[reborn.nodeID] == "Voter" && len(ids) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("raft members %v: want the old id gone and %s a voter, without a manual removal\n%s", ids, reborn.nodeID, tail(c.leader().logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(c.leader().logs(), "removed the old member whose address a new member took over") {
		t.Fatal("the leader did not say why it removed the old member")
	}
	// The reborn node has the log: it lists the backup taken before, and a
	// new backup through it succeeds.
	var list api.BackupList
	for deadline := time.Now().Add(30 * time.Second); ; {
		if reborn.getJSON("/v1/backups", &list) == 200 && len(list.Backups) == 1 && list.Backups[0].BackupID == backup.BackupID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reborn node lists %+v, want the earlier backup %s", list.Backups, backup.BackupID)
		}
		time.Sleep(200 * time.Millisecond)
	}
	reborn.backupWait()
}

// checkClusterMetrics: after backup op (the cluster's first operation),
// every node reports the same operation and last-backup figures, taken
// from the replicated state, and a consistent view of Raft and gossip.
func checkClusterMetrics(t *testing.T, c *cluster, op *fsm.Operation) {
	t.Helper()
	var mr coord.ManifestResult
	stepResult(t, op, wire.StepManifest, &mr)
	same := []string{
		`crayfish_operations_started_total{kind="backup"}`,
		`crayfish_operations_finished_total{kind="backup",state="succeeded"}`,
		`crayfish_backup_last_success_timestamp_seconds{plugin="files"}`,
		`crayfish_backup_last_files{plugin="files"}`,
		`crayfish_backup_last_logical_bytes{plugin="files"}`,
		`crayfish_backup_last_stored_new_bytes{plugin="files"}`,
		`crayfish_backup_last_dedup_ratio{plugin="files"}`,
		`crayfish_operations_running{kind="backup"}`,
		`crayfish_node_fencing_epoch`,
		`crayfish_backups{plugin="files"}`,
	}
	// A follower may not have applied the operation's last entries yet
	// when the backup is reported done: wait until every node agrees.
	var scraped []map[string]float64
	differ := ""
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		scraped, differ = nil, ""
		for _, a := range c.agents {
			m := scrapeMetrics(t, a)
			scraped = append(scraped, m)
			for _, k := range same {
				if v, ok := m[k]; (!ok || v != scraped[0][k]) && differ == "" {
					differ = fmt.Sprintf("%s on %s: %v (present %v), on %s: %v", k, a.nodeID, v, ok, c.agents[0].nodeID, scraped[0][k])
				}
			}
		}
		if differ == "" || time.Now().After(deadline) {
			break
		}
	}
	if differ != "" {
		t.Errorf("the nodes still disagree after 10 s: %s", differ)
	}
	leaders, uploaded, misses := 0.0, 0.0, 0.0
	first := scraped[0]
	for i, a := range c.agents {
		m := scraped[i]
		leaders += m[`crayfish_raft_state{state="Leader"}`]
		uploaded += m["crayfish_uploaded_bytes_total"]
		misses += m["crayfish_hash_cache_misses_total"]
		if m["crayfish_raft_leader_present"] != 1 || m[`crayfish_gossip_members{status="alive"}`] != 3 || m["crayfish_raft_applied_index"] == 0 {
			t.Errorf("%s sees leader %v, %v alive members, applied index %v", a.nodeID, m["crayfish_raft_leader_present"],
				m[`crayfish_gossip_members{status="alive"}`], m["crayfish_raft_applied_index"])
		}
	}
	want := map[string]float64{
		`crayfish_operations_started_total{kind="backup"}`:                    1,
		`crayfish_operations_finished_total{kind="backup",state="succeeded"}`: 1,
		`crayfish_backup_last_files{plugin="files"}`:                          float64(mr.Files),
		`crayfish_backup_last_logical_bytes{plugin="files"}`:                  float64(mr.Bytes),
		`crayfish_backup_last_success_timestamp_seconds{plugin="files"}`:      float64(op.FinishedAt.UnixNano()) / 1e9,
		`crayfish_operations_running{kind="backup"}`:                          0,
	}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %v, want %v", k, first[k], v)
		}
	}
	var wantUploaded int64
	for _, r := range uploadResults(t, op) {
		wantUploaded += r.UploadedBytes
	}
	if uploaded != float64(wantUploaded) || misses == 0 {
		t.Errorf("the nodes count %v bytes uploaded (the backup's steps: %d) and %v files read to hash", uploaded, wantUploaded, misses)
	}
	if leaders != 1 || first["crayfish_backup_last_dedup_ratio{plugin=\"files\"}"] <= 1 || first["crayfish_node_fencing_epoch"] == 0 {
		t.Errorf("%v leaders; dedup ratio %v (the shared file is stored once); epoch %v", leaders,
			first[`crayfish_backup_last_dedup_ratio{plugin="files"}`], first["crayfish_node_fencing_epoch"])
	}
}
