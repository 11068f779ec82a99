package integration

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/crayfish-backup/crayfish/fsm"
)

// resizeCluster starts Cassandra nodes and one crayfish cluster of agents
// beside them (agents named prefix1, prefix2, ... on 127.0.8.<agentBase+i>),
// all on one repository; the nodes' bulk loader runs from
// scripts/cassandra.sh with each node's cassandra.yaml.
func resizeCluster(t *testing.T, nodes []cassandraNode, prefix string, agentBase int, repo, key string) []*agent {
	t.Helper()
	started := time.Now()
	for _, n := range nodes {
		n.start(t)
	}
	t.Logf("MEASURE cassandra: %d nodes up in %s", len(nodes), time.Since(started).Round(time.Second))
	var agents []*agent
	for i, n := range nodes {
		var peers []string
		for j, o := range nodes {
			if j != i {
				peers = append(peers, o.ip)
			}
		}
		extra := append(n.agentFlags(t, peers...), "--cassandra-sstableloader", n.script(t)+" sstableloader "+n.name)
		clustered := len(nodes) > 1
		if clustered {
			extra = append(extra, "--bootstrap-expect", fmt.Sprint(len(nodes)))
			if i > 0 {
				extra = append(extra, "--join", agents[0].gossip)
			}
		}
		agents = append(agents, newAgent(t, agentOpts{nodeID: fmt.Sprintf("%s%d", prefix, i+1), ip: fmt.Sprintf("127.0.8.%d", agentBase+i+1),
			repo: repo, keyFile: key, clustered: clustered, extra: extra}))
	}
	if len(agents) > 1 {
		c := &cluster{t: t, repo: repo, key: key, agents: agents}
		c.waitVoters(len(agents), 60*time.Second)
	}
	return agents
}

// stopCluster stops the agents and the Cassandra nodes.
func stopCluster(t *testing.T, nodes []cassandraNode, agents []*agent) {
	t.Helper()
	for _, a := range agents {
		a.stop()
	}
	for _, n := range nodes {
		n.stop(t)
	}
}

// TestCassandraResize restores a backup of two Cassandra nodes onto a
// cluster of three, then onto a cluster of one: the restore streams the
// backed-up SSTables into the running cluster with the bulk loader, and
// every row reads back at consistency ALL (the materialized view, which
// is not streamed, rebuilt from its base table; the secondary index
// rebuilt by the receiving nodes).
func TestCassandraResize(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Cassandra JVMs")
	}
	t.Parallel() // beside TestCassandraPITR: other addresses, JMX ports and node directories
	mk := cassandraNodes(t, "CASSANDRA_XMS=256m", "CASSANDRA_XMX=768m")
	// 127.0.7.x only (JMX on 7199 + the last octet: 7230-7250).
	old := []cassandraNode{mk("r1", "127.0.7.31", "127.0.7.31"), mk("r2", "127.0.7.32", "127.0.7.31")}
	three := []cassandraNode{mk("t1", "127.0.7.41", "127.0.7.41"), mk("t2", "127.0.7.42", "127.0.7.41"), mk("t3", "127.0.7.43", "127.0.7.41")}
	one := []cassandraNode{mk("o1", "127.0.7.51", "127.0.7.51")}

	// The backed-up cluster: two nodes, RF 2, the TestCassandra data (a
	// UDT, a secondary index, a materialized view, a clustered table, a
	// table with SSTables from before a column drop; collections, a
	// static column, a vector, an SAI index, counters and TTLs).
	repo, key := initRepo(t)
	agents := resizeCluster(t, old, "agent", 0, repo, key)
	s := cqlSession(t, old[0].ip, old[1].ip)
	loadCassandraData(t, s)
	loadLegacyData(t, s, old)
	loadProfiles(t, s, old, true)
	want := readCassandraState(t, s, ips(old)...)
	s.Close()
	t.Logf("data: %v", want)
	started := time.Now()
	backup := agents[1].backupWait()
	t.Logf("MEASURE cassandra backup of 2 nodes: %s", time.Since(started).Round(100*time.Millisecond))
	stopCluster(t, old, agents)

	restore := func(t *testing.T, a *agent, what string) {
		t.Helper()
		started := time.Now()
		res := a.cli("restore", backup.BackupID, "--wait", "--output", "json")
		took := time.Since(started).Round(100 * time.Millisecond)
		if res.code != 0 {
			t.Fatalf("restore onto %s: exit %d: %s %s\n%s", what, res.code, res.stderr, res.stdout, tail(a.logs(), 6000))
		}
		t.Logf("MEASURE cassandra restore of 2 nodes onto %s: %s", what, took)
		var op fsm.Operation
		if err := json.Unmarshal([]byte(res.stdout), &op); err == nil {
			logStepTimes(t, &op)
		}
	}

	t.Run("OntoThree", func(t *testing.T) {
		agents := resizeCluster(t, three, "big", 10, repo, key)
		defer stopCluster(t, three, agents)
		restore(t, agents[0], "3 nodes")
		s := cqlSession(t, three[0].ip, three[1].ip, three[2].ip)
		defer s.Close()
		want.check(t, readCassandraState(t, s, ips(three)...), "after the restore onto three nodes")
	})

	t.Run("OntoOne", func(t *testing.T) {
		agents := resizeCluster(t, one, "small", 20, repo, key)
		defer stopCluster(t, one, agents)
		// One node cannot hold two replicas: the operator creates the
		// keyspaces with the replication the new cluster can give (the
		// restore keeps an existing keyspace), so reads at ALL work.
		s := cqlSession(t, one[0].ip)
		defer s.Close()
		for _, q := range []string{
			`CREATE KEYSPACE ks1 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
			`CREATE KEYSPACE ks2 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
			`CREATE KEYSPACE ks3 WITH replication = {'class': 'NetworkTopologyStrategy', 'datacenter1': 1}`,
		} {
			if err := s.Query(q).Consistency(gocql.One).Exec(); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		restore(t, agents[0], "1 node")
		want.check(t, readCassandraState(t, s, ips(one)...), "after the restore onto one node")
	})
}
