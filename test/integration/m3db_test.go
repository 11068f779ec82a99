package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/m3db"
	"github.com/crayfish-backup/crayfish/m3db/m3pb"
	"github.com/crayfish-backup/crayfish/node/wire"
	m3dbtest "github.com/crayfish-backup/crayfish/test/m3db"
)

// m3Node is one m3dbnode of the test and the agent flags that drive it.
type m3Node struct {
	name, ip string
	portBase int
}

func (n m3Node) nodeHTTP() string    { return fmt.Sprintf("%s:%d", n.ip, n.portBase+2) }
func (n m3Node) clusterHTTP() string { return fmt.Sprintf("%s:%d", n.ip, n.portBase+3) }

// agentFlags configure a crayfish agent for n: its identity in the
// placement, its data dir and the script's start and stop commands.
func (n m3Node) agentFlags(h *m3dbtest.Harness, etcd string) []string {
	env := fmt.Sprintf("env CRAYFISH_M3DB_NODES=%s M3DB_PORT_BASE=%d %s", h.NodesDir, n.portBase, m3dbtest.Script())
	return []string{"--plugin", "m3db", "--m3db-etcd-endpoints", etcd,
		"--m3db-data-dir", filepath.Join(h.NodesDir, n.name, "data"),
		"--m3db-instance-id", n.name,
		"--m3db-endpoint", fmt.Sprintf("%s:%d", n.ip, n.portBase),
		"--m3db-debug-port", fmt.Sprint(n.portBase + 4),
		"--m3db-isolation-group", n.name, "--m3db-zone", "embedded",
		"--m3db-health-url", "http://" + n.nodeHTTP() + "/health",
		"--m3db-cluster-url", "http://" + n.clusterHTTP(),
		"--m3db-start-command", fmt.Sprintf("%s start %s %s", env, n.name, n.ip),
		"--m3db-stop-command", fmt.Sprintf("%s stop %s", env, n.name),
		"--m3db-start-timeout", "3m",
		"--node-timeout", "5m", "--step-attempts", "2"}
}

// m3Points are the datapoints the test wrote, by namespace and series.
type m3Points map[string]map[string][]m3dbtest.Datapoint

// writeM3 writes series*points datapoints per namespace over the last
// minutes: through the cluster API (which indexes the series; the node
// API's writes are not indexed in v1.5.0) and to every node's own API, so
// each replica surely holds each datapoint.
func writeM3(t *testing.T, nodes []m3Node, prefix string, namespaces []string, series, points int) m3Points {
	t.Helper()
	out := m3Points{}
	now := time.Now().Unix()
	for _, ns := range namespaces {
		out[ns] = map[string][]m3dbtest.Datapoint{}
		for s := range series {
			id := fmt.Sprintf("%s-%s-%02d", prefix, ns, s)
			for p := range points {
				dp := m3dbtest.Datapoint{Timestamp: now - int64(points-p)*10, Value: float64(s*1000 + p)}
				if err := m3dbtest.WriteTagged(nodes[0].clusterHTTP(), ns, id, []m3dbtest.Tag{{Name: "series", Value: id}}, dp); err != nil {
					t.Fatalf("write %s/%s through the cluster API: %v", ns, id, err)
				}
				for _, n := range nodes {
					if err := m3dbtest.WriteTagged(n.nodeHTTP(), ns, id, []m3dbtest.Tag{{Name: "series", Value: id}}, dp); err != nil {
						t.Fatalf("write %s/%s to %s: %v", ns, id, n.name, err)
					}
				}
				out[ns][id] = append(out[ns][id], dp)
			}
		}
	}
	return out
}

// checkM3 reads every recorded datapoint back through addr's cluster
// API, retrying for a while (a node just started may still connect).
func checkM3(t *testing.T, addr string, want m3Points, what string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		problem := ""
		for ns, series := range want {
			for id, dps := range series {
				got, err := m3dbtest.Fetch(addr, ns, id, dps[0].Timestamp-1, dps[len(dps)-1].Timestamp+1)
				if err != nil {
					problem = fmt.Sprintf("%s/%s: %v", ns, id, err)
				} else if !sameDatapoints(got, dps) {
					problem = fmt.Sprintf("%s/%s: %d datapoints %v, want %d", ns, id, len(got), got, len(dps))
				}
				if problem != "" {
					break
				}
			}
			if problem != "" {
				break
			}
		}
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: reading back through %s: %s", what, addr, problem)
		}
		time.Sleep(2 * time.Second)
	}
}

func sameDatapoints(got, want []m3dbtest.Datapoint) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// waitSnapshots waits until every node's data dir holds snapshot
// filesets of every namespace (M3 writes them about a minute after the
// writes), so a backup holds the data in filesets as well as commit logs.
func waitSnapshots(t *testing.T, h *m3dbtest.Harness, nodes []m3Node, namespaces []string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for _, n := range nodes {
		for _, ns := range namespaces {
			for {
				m, _ := filepath.Glob(filepath.Join(h.NodesDir, n.name, "data", "snapshots", ns, "*", "*-checkpoint.db"))
				if len(m) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no snapshot fileset of %s on %s after 3 minutes", ns, n.name)
				}
				time.Sleep(2 * time.Second)
			}
		}
	}
}

// TestM3DB backs up a real three-node M3DB cluster (m3dbnode v1.5.0, RF 3,
// one etcd) through three crayfish agents, then restores it: in full onto
// new instance ids and new ports after wiping every node and etcd; one
// node alone while the others serve; and one namespace alone, keeping
// what the other namespace gained since. Every recorded datapoint is read
// back after each restore.
func TestM3DB(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three m3dbnode processes and an etcd")
	}
	h := m3dbtest.New(t)
	h.StartEtcd("etcd", "127.0.35.1")
	etcd := "127.0.35.1:2379"
	old := []m3Node{{"m3a", "127.0.35.2", 9000}, {"m3b", "127.0.35.3", 9000}, {"m3c", "127.0.35.4", 9000}}
	renamed := []m3Node{{"m3x", "127.0.35.2", 9100}, {"m3y", "127.0.35.3", 9100}, {"m3z", "127.0.35.4", 9100}}
	t.Cleanup(func() {
		for _, n := range renamed { // started by the agents, not the harness
			cmd := exec.Command(m3dbtest.Script(), "stop", n.name)
			cmd.Env = append(os.Environ(), "CRAYFISH_M3DB_NODES="+h.NodesDir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("stop %s: %v\n%s", n.name, err, out)
			}
		}
	})
	started := time.Now()
	for i, n := range old {
		h.StartNode(n.name, n.ip, i == 0)
	}
	namespaces := []string{"events", "metrics"}
	h.InitCluster("metrics:12h:1h", "events:24h:2h")
	t.Logf("MEASURE m3db: three nodes up and initialised in %s", time.Since(started).Round(time.Second))
	want := writeM3(t, old, "s", namespaces, 8, 20)
	waitSnapshots(t, h, old, namespaces)
	checkM3(t, old[0].clusterHTTP(), want, "before the backup")

	repo, key := initRepo(t)
	agents := make([]*agent, len(old))
	startAgents := func(nodes []m3Node) {
		for i, n := range nodes {
			extra := append([]string{"--bootstrap-expect", "3"}, n.agentFlags(h, etcd)...)
			if i > 0 {
				extra = append(extra, "--join", agents[0].gossip)
			}
			if agents[i] == nil {
				agents[i] = newAgent(t, agentOpts{nodeID: fmt.Sprintf("agent%d", i+1), ip: fmt.Sprintf("127.0.0.%d", i+2),
					repo: repo, keyFile: key, clustered: true, extra: extra})
				continue
			}
			agents[i].extra = extra
			agents[i].launch()
		}
		c := &cluster{t: t, repo: repo, key: key, agents: agents}
		c.waitVoters(3, 60*time.Second)
	}
	startAgents(old)
	a := agents[1]

	// The backup: one cut of etcd, every node's intact filesets.
	started = time.Now()
	backup := a.backupWait()
	t.Logf("MEASURE m3db backup of 3 nodes: %s", time.Since(started).Round(100*time.Millisecond))
	m := readManifest(t, a, backup.BackupID)
	if m.Plugin != m3db.Name || len(m.Nodes) != 3 {
		t.Fatalf("manifest: plugin %q, %d nodes", m.Plugin, len(m.Nodes))
	}
	for _, n := range m.Nodes {
		var meta m3db.NodeMeta
		if err := json.Unmarshal(n.Plugin, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Revision == 0 || len(meta.Instances) != 3 || len(meta.Namespaces) != 2 || meta.DataBytes["metrics"] == 0 ||
			meta.Filesets["snapshot"] == 0 || meta.SkippedTotal != 0 || meta.Shards["AVAILABLE"] == 0 {
			t.Errorf("node %s recorded %+v", n.NodeID, meta)
		}
	}
	desc := a.cli("describe", backup.BackupID)
	for _, s := range []string{"M3DB INSTANCE", "m3a", "m3c", "metrics (retention 12h0m0s, block 1h0m0s)", "AVAILABLE"} {
		if !strings.Contains(desc.stdout, s) {
			t.Errorf("describe lacks %q:\n%s%s", s, desc.stdout, desc.stderr)
		}
	}
	// A drill: every node's filesets restored into scratch space, read
	// back and checked against their digests.
	for _, r := range drillResults(t, a, backup.BackupID) {
		var check m3db.DrillResult
		if err := json.Unmarshal(r.Plugin, &check); err != nil || check.Filesets["snapshot"] == 0 {
			t.Errorf("drill of %s: plugin check %s (%v)", r.SourceNode, r.Plugin, err)
		}
	}
	// M3DB down on one node: the backup fails naming it, and no node keeps
	// a snapshot (no hard links left to pin M3's files).
	h.Stop("m3b")
	res := a.cli("backup", "--wait", "--output", "json")
	if res.code == 0 || !strings.Contains(res.stdout+res.stderr, "m3db is not available") || !strings.Contains(res.stdout+res.stderr, old[1].nodeHTTP()) {
		t.Errorf("a backup with m3b down: exit %d: %s %s", res.code, res.stderr, res.stdout)
	}
	for _, ag := range agents {
		if left, _ := os.ReadDir(filepath.Join(ag.dataDir, "snapshots")); len(left) > 0 {
			t.Errorf("%s kept snapshot %s after the failed backup", ag.nodeID, left[0].Name())
		}
	}
	h.StartNode("m3b", old[1].ip, false)
	h.WaitBootstrapped("m3b")

	// Misaimed restores are refused before anything stops.
	if code, body := a.post("/v1/restores", fmt.Sprintf(`{"backup_id":%q,"select":["nosuch"]}`, backup.BackupID)); code != 400 || !strings.Contains(fmt.Sprint(body), "nosuch") {
		t.Errorf("restore of an unknown namespace: %d %v", code, body)
	}
	for _, n := range old {
		if ok, err := m3dbtest.Bootstrapped(n.nodeHTTP()); !ok || err != nil {
			t.Fatalf("%s is down after a refused restore (%v)", n.name, err)
		}
	}

	// Full restore onto new instance ids and ports, every node and etcd wiped.
	for _, ag := range agents {
		ag.stop()
	}
	for _, n := range old {
		h.Stop(n.name)
		h.Wipe(n.name)
	}
	h.WipeEtcd("etcd")
	startAgents(renamed)
	started = time.Now()
	res = a.cli("restore", backup.BackupID, "--wait", "--output", "json")
	t.Logf("MEASURE m3db full restore of 3 nodes onto new ids and ports: %s", time.Since(started).Round(100*time.Millisecond))
	if res.code != 0 {
		t.Fatalf("full restore: exit %d: %s %s\n%s", res.code, res.stderr, res.stdout, tail(agents[0].logs(), 4000))
	}
	checkRestoreOp(t, res.stdout)
	checkPlacement(t, etcd, renamed)
	checkM3(t, renamed[0].clusterHTTP(), want, "after the full restore")

	// Single-node restore: m3y wiped and restored while m3x and m3z serve.
	h.Stop("m3y")
	h.Wipe("m3y")
	started = time.Now()
	res = a.cli("restore", backup.BackupID, "--node", "agent2", "--wait", "--output", "json")
	t.Logf("MEASURE m3db single-node restore: %s", time.Since(started).Round(100*time.Millisecond))
	if res.code != 0 {
		t.Fatalf("single-node restore: exit %d: %s %s\n%s", res.code, res.stderr, res.stdout, tail(agents[1].logs(), 4000))
	}
	checkRestoreOp(t, res.stdout)
	// Its own copy: with the other two stopped, m3y serves alone.
	h.Stop("m3x")
	h.Stop("m3z")
	checkM3(t, renamed[1].clusterHTTP(), want, "m3y alone after its restore")
	for _, n := range []m3Node{renamed[0], renamed[2]} {
		h.StartNodeOn(n.name, n.ip, n.portBase, false)
	}
	for _, n := range renamed {
		h.WaitBootstrapped(n.name)
	}

	// Namespace restore: metrics dropped from the registry, events written
	// to since; restoring metrics alone brings it back and keeps events'
	// new series.
	late := writeM3(t, renamed, "late", []string{"events"}, 3, 5)
	dropNamespace(t, etcd, "metrics")
	// The leader is killed once every node has stopped and reported its
	// identity: the new leader hands the etcd step those results from the
	// Raft log.
	if code, body := a.post("/v1/restores", fmt.Sprintf(`{"id":"m3-ns","backup_id":%q,"select":["metrics"]}`, backup.BackupID)); code != 202 {
		t.Fatalf("start the namespace restore: %d %v", code, body)
	}
	c := &cluster{t: t, repo: repo, key: key, agents: agents}
	leader := c.leader()
	if leader == nil {
		t.Fatal("no leader")
	}
	watcher := c.follower(leader)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var op fsm.Operation
		if code := watcher.getJSON("/v1/operations/m3-ns", &op); code == 200 { // a follower may not have it yet
			if op.State.Terminal() {
				t.Fatalf("the namespace restore ended before the leader was killed: %s %s", op.State, op.Error)
			}
			if stepsDone(&op, "stop") == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stop steps did not finish:\n%s", tail(leader.logs(), 3000))
		}
	}
	leader.kill()
	t.Logf("killed the leader %s after the stop phase", leader.nodeID)
	time.Sleep(2 * time.Second)
	leader.start()
	fin := watcher.waitOp("m3-ns", 5*time.Minute)
	out, _ := json.Marshal(fin)
	checkRestoreOp(t, string(out))
	if e := actionEpoch(fin, "etcd"); e <= actionEpoch(fin, "stop") {
		t.Errorf("the etcd step ran at epoch %d, the stop steps at %d: no failover in between", e, actionEpoch(fin, "stop"))
	}
	checkM3(t, renamed[2].clusterHTTP(), want, "after the namespace restore")
	checkM3(t, renamed[2].clusterHTTP(), late, "events written after the backup, after the namespace restore")
}

// m3Action is the M3DB action of a restore step ("" for others).
func m3Action(s fsm.Step) string {
	var in wire.RestoreInput
	var act m3db.Action
	if json.Unmarshal(s.Input, &in) != nil || json.Unmarshal(in.Plugin, &act) != nil {
		return ""
	}
	return act.Do
}

// stepsDone counts op's done restore steps of an M3DB action.
func stepsDone(op *fsm.Operation, action string) int {
	n := 0
	for _, s := range op.Steps {
		if s.State == fsm.StepDone && m3Action(s) == action {
			n++
		}
	}
	return n
}

// actionEpoch is the highest epoch a step of the action ran at.
func actionEpoch(op *fsm.Operation, action string) uint64 {
	var e uint64
	for _, s := range op.Steps {
		if m3Action(s) == action {
			e = max(e, s.Epoch)
		}
	}
	return e
}

// checkRestoreOp checks a finished restore: succeeded, every check step
// read datapoints back.
func checkRestoreOp(t *testing.T, out string) {
	t.Helper()
	var op fsm.Operation
	if err := json.Unmarshal([]byte(out), &op); err != nil {
		t.Fatalf("restore --output json: %v\n%s", err, out)
	}
	if op.State != fsm.OpSucceeded {
		t.Fatalf("restore %s: %s: %s", op.ID, op.State, op.Error)
	}
	checks := 0
	for _, s := range op.Steps {
		if m3Action(s) != "check" {
			continue
		}
		checks++
		var res wire.RestoreResult
		var got struct {
			Namespaces map[string]struct{ Series, Datapoints int }
		}
		if err := json.Unmarshal(s.Result, &res); err != nil || json.Unmarshal(res.Plugin, &got) != nil || len(got.Namespaces) == 0 {
			t.Errorf("check step on %s read nothing back: %s", s.Node, s.Result)
		}
		for ns, c := range got.Namespaces {
			if c.Series == 0 || c.Datapoints == 0 {
				t.Errorf("check step on %s: namespace %s: %+v", s.Node, ns, c)
			}
		}
		t.Logf("check on %s: %+v", s.Node, got.Namespaces)
	}
	if checks == 0 {
		t.Errorf("restore %s has no check step", op.ID)
	}
}

// checkPlacement reads the placement from etcd: exactly the nodes, each
// with its new endpoint and debug port.
func checkPlacement(t *testing.T, etcd string, nodes []m3Node) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(context.Background(), m3pb.PlacementKey("default_env", "m3db"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("placement: %v", err)
	}
	p, err := m3pb.UnmarshalPlacement(resp.Kvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.GetInstances()) != len(nodes) {
		t.Fatalf("restored placement has %d instances", len(p.GetInstances()))
	}
	for _, n := range nodes {
		in := p.GetInstances()[n.name]
		if in == nil || in.GetEndpoint() != fmt.Sprintf("%s:%d", n.ip, n.portBase) || in.GetPort() != uint32(n.portBase) ||
			in.GetMetadata().GetDebugPort() != uint32(n.portBase+4) || len(in.GetShards()) == 0 {
			t.Errorf("restored placement instance %s: %v", n.name, in)
		}
		for _, s := range in.GetShards() {
			if src := s.GetSourceId(); src != "" && p.GetInstances()[src] == nil {
				t.Errorf("instance %s shard %d: source %s is not in the placement", n.name, s.GetId(), src)
			}
		}
	}
}

// dropNamespace removes a namespace from the registry in etcd, as an
// operator's mistake would.
func dropNamespace(t *testing.T, etcd, ns string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	key := m3pb.NamespacesKey("default_env")
	resp, err := cli.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("registry: %v", err)
	}
	r, err := m3pb.UnmarshalRegistry(resp.Kvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	delete(r.Namespaces, ns)
	b, err := m3pb.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(context.Background(), key, string(b)); err != nil {
		t.Fatal(err)
	}
}
