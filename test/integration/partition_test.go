package integration

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/api"
)

// envNetnsBinary carries the crayfish binary into a child test process
// that runs inside its own user and network namespace.
const envNetnsBinary = "CRAYFISH_NETNS_BINARY"

// TestPartitionLeaderFromMajority cuts the leader off from both other
// nodes with `ip rule ... prohibit` (inside a private network namespace
// made with `unshare -Urn`, so the host's network is untouched): the
// leader steps down and commits nothing, the majority elects a leader
// and completes an operation, and after the partition heals the old
// leader catches up and gossip merges again.
func TestPartitionLeaderFromMajority(t *testing.T) {
	if os.Getenv(envNetnsBinary) == "" {
		// Re-run this test alone inside a fresh namespace.
		cmd := exec.Command("unshare", "-Urn", os.Args[0], "-test.run", "^TestPartitionLeaderFromMajority$", "-test.v", "-test.timeout", "5m")
		cmd.Env = append(os.Environ(), envNetnsBinary+"="+binary)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		t.Logf("namespace run:\n%s", tail(out.String(), 6000))
		if err != nil || !strings.Contains(out.String(), "--- PASS: TestPartitionLeaderFromMajority") {
			t.Fatalf("partition test in a network namespace failed: %v", err)
		}
		return
	}
	ipCmd(t, "link", "set", "lo", "up")
	// Route loopback through rules we can cut: move the local table's rule
	// behind pref 10, where the prohibit rules go.
	ipCmd(t, "rule", "add", "pref", "100", "lookup", "local")
	ipCmd(t, "rule", "del", "pref", "0")

	c := startCluster(t, 3, "p", "", "")
	leader := c.leader()
	if leader == nil {
		t.Fatal("no leader")
	}
	var others []*agent
	for _, a := range c.agents {
		if a != leader {
			others = append(others, a)
		}
	}
	ip := func(a *agent) string { return strings.Split(a.http, ":")[0] }
	cut := func(verb string) {
		for _, o := range others {
			ipCmd(t, "rule", verb, "pref", "10", "from", ip(leader), "to", ip(o), "prohibit")
			ipCmd(t, "rule", verb, "pref", "10", "from", ip(o), "to", ip(leader), "prohibit")
		}
	}
	cut("add")
	cutAt := time.Now()
	t.Logf("cut leader %s (%s) off from %s and %s", leader.nodeID, ip(leader), others[0].nodeID, others[1].nodeID)
	partitioned := true
	defer func() {
		if partitioned {
			cut("del")
		}
	}()
	// The majority elects a new leader; the old one steps down.
	var newLeader *agent
	for deadline := time.Now().Add(30 * time.Second); newLeader == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the majority did not elect a leader")
		}
		for _, o := range others {
			var st api.ClusterStatus
			if o.getJSON("/v1/cluster", &st) == 200 && st.State == "Leader" {
				newLeader = o
			}
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var st api.ClusterStatus
		if leader.getJSON("/v1/cluster", &st) == 200 && st.State != "Leader" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cut-off leader did not step down")
		}
	}
	t.Logf("majority elected %s %s after the cut; the old leader stepped down", newLeader.nodeID, time.Since(cutAt).Round(time.Millisecond))
	var before api.ClusterStatus
	leader.getJSON("/v1/cluster", &before)
	// The minority commits nothing: a write through it fails.
	if code, body := leader.post("/v1/gc", `{"id":"gc-minority"}`); code < 500 {
		t.Fatalf("a write on the minority side answered %d %v", code, body)
	}
	// The majority continues.
	if code, body := newLeader.post("/v1/gc", `{"id":"gc-majority"}`); code != 202 {
		t.Fatalf("gc on the majority: %d %v", code, body)
	}
	if op := newLeader.waitOp("gc-majority", time.Minute); op.State != "succeeded" {
		t.Fatalf("gc on the majority: %s %s", op.State, op.Error)
	}
	var during api.ClusterStatus
	leader.getJSON("/v1/cluster", &during)
	if during.CommitIndex != before.CommitIndex {
		t.Fatalf("the minority's commit index moved from %d to %d", before.CommitIndex, during.CommitIndex)
	}
	t.Logf("minority write refused, minority commit index stayed %d; the majority completed gc-majority", during.CommitIndex)
	// Heal: the old leader catches up and gossip merges.
	cut("del")
	partitioned = false
	healedAt := time.Now()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var op struct {
			State string `json:"state"`
		}
		var st api.ClusterStatus
		caught := leader.getJSON("/v1/operations/gc-majority", &op) == 200 && op.State == "succeeded"
		merged := leader.getJSON("/v1/cluster", &st) == 200 && st.LeaderID != ""
		alive := 0
		for _, m := range st.Members {
			if m.Gossip == "alive" {
				alive++
			}
		}
		if caught && merged && alive == 3 {
			t.Logf("healed: %s caught up and sees 3 alive members %s after the rules were removed", leader.nodeID, time.Since(healedAt).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after healing: caught up %v, leader %q, %d alive", caught, st.LeaderID, alive)
		}
	}
	var op struct{}
	if code := leader.getJSON("/v1/operations/gc-minority", &op); code != 404 {
		t.Fatalf("the minority's write exists after healing (HTTP %d)", code)
	}
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
}
