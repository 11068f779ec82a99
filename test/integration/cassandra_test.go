package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/crayfish-backup/crayfish/cassandra"
	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

// The Cassandra suite runs two real Apache Cassandra nodes (5.0, from the
// Maven Central jars, started by scripts/cassandra.sh) beside two crayfish
// agents with the cassandra plugin. Two nodes, not three: each JVM takes
// ~1 GB and a core while starting, and the machine has two.
//
// It runs after the other packages (scripts/test.sh): Cassandra's start-up
// would starve the timing-sensitive cluster tests.

// cassandraNode is one Cassandra node run by scripts/cassandra.sh.
type cassandraNode struct {
	name, ip, seeds string
	dir             string // node directory (data1, data2, commitlog, ...)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func cassandraScript(t *testing.T) string {
	return filepath.Join(repoRoot(t), "scripts", "cassandra.sh")
}

func (n cassandraNode) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(cassandraScript(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cassandra.sh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (n cassandraNode) start(t *testing.T) { n.run(t, "start", n.name, n.ip, n.seeds) }
func (n cassandraNode) stop(t *testing.T)  { n.run(t, "stop", n.name) }

// wipe deletes every file the node keeps (it must be stopped).
func (n cassandraNode) wipe(t *testing.T) {
	t.Helper()
	for _, d := range []string{"data1", "data2", "commitlog", "saved_caches", "hints"} {
		if err := os.RemoveAll(filepath.Join(n.dir, d)); err != nil {
			t.Fatal(err)
		}
	}
}

// agentFlags configure a crayfish agent for this node; peers are the
// other nodes' addresses (contact points while this one is down).
func (n cassandraNode) agentFlags(t *testing.T, peers ...string) []string {
	s := cassandraScript(t)
	return []string{"--plugin", "cassandra", "--cassandra-hosts", strings.Join(append([]string{n.ip}, peers...), ","),
		"--cassandra-data-dirs", filepath.Join(n.dir, "data1") + "," + filepath.Join(n.dir, "data2"),
		"--cassandra-commitlog-dir", filepath.Join(n.dir, "commitlog"),
		"--cassandra-saved-caches-dir", filepath.Join(n.dir, "saved_caches"),
		"--cassandra-hints-dir", filepath.Join(n.dir, "hints"),
		"--cassandra-nodetool", s + " nodetool " + n.name,
		"--cassandra-start-command", fmt.Sprintf("%s start %s %s %s", s, n.name, n.ip, n.seeds),
		"--cassandra-stop-command", fmt.Sprintf("%s stop %s", s, n.name),
		"--node-timeout", "5m", "--step-attempts", "2"}
}

func (n cassandraNode) snapshots(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, d := range []string{"data1", "data2"} {
		m, _ := filepath.Glob(filepath.Join(n.dir, d, "*", "*", "snapshots", "*"))
		out = append(out, m...)
	}
	return out
}

// cqlSession connects to the given nodes (all replicas for CL ALL).
func cqlSession(t *testing.T, hosts ...string) *gocql.Session {
	t.Helper()
	c := gocql.NewCluster(hosts...)
	c.ProtoVersion = 4
	c.Timeout = 30 * time.Second
	c.ConnectTimeout = 30 * time.Second
	c.Consistency = gocql.All
	var s *gocql.Session
	var err error
	for range 30 {
		if s, err = c.CreateSession(); err == nil {
			return s
		}
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("CQL %v: %v", hosts, err)
	return nil
}

const (
	cassUsers  = 2000
	cassEvents = 2000
)

// cassandraSchema creates two keyspaces replicated on both nodes: a UDT,
// a table using it with a secondary index and a materialized view, and a
// clustered table.
var cassandraSchema = []string{
	`CREATE KEYSPACE ks1 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}`,
	`CREATE TYPE ks1.addr (street text, zip int)`,
	`CREATE TABLE ks1.users (id int PRIMARY KEY, name text, email text, home frozen<addr>, score bigint)`,
	`CREATE INDEX users_email ON ks1.users (email)`,
	`CREATE MATERIALIZED VIEW ks1.users_by_name AS SELECT * FROM ks1.users WHERE name IS NOT NULL AND id IS NOT NULL PRIMARY KEY (name, id)`,
	`CREATE KEYSPACE ks2 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}`,
	`CREATE TABLE ks2.events (day text, seq int, payload blob, PRIMARY KEY (day, seq))`,
}

func loadCassandraData(t *testing.T, s *gocql.Session) {
	t.Helper()
	for _, q := range cassandraSchema {
		if err := s.Query(q).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	type addr struct {
		Street string `cql:"street"`
		Zip    int    `cql:"zip"`
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var err error
				if i < cassUsers {
					err = s.Query(`INSERT INTO ks1.users (id, name, email, home, score) VALUES (?, ?, ?, ?, ?)`,
						i, fmt.Sprintf("name-%d", i), fmt.Sprintf("user%d@example.com", i), addr{fmt.Sprintf("%d Main St", i), 10000 + i}, int64(i)*7919).Exec()
				} else {
					j := i - cassUsers
					payload := sha256.Sum256([]byte(fmt.Sprint(j)))
					err = s.Query(`INSERT INTO ks2.events (day, seq, payload) VALUES (?, ?, ?)`,
						fmt.Sprintf("day-%02d", j%20), j, payload[:]).Exec()
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range cassUsers + cassEvents {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("insert: %v", err)
	default:
	}
}

// tableDigest reads every row of a table at consistency ALL and returns
// the row count and a digest of the sorted rows.
func tableDigest(t *testing.T, s *gocql.Session, table string) (int, string) {
	t.Helper()
	iter := s.Query("SELECT * FROM " + table).Consistency(gocql.All).PageSize(500).Iter()
	var rows []string
	for {
		m := map[string]any{}
		if !iter.MapScan(m) {
			break
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var sb strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&sb, "%s=%v;", k, m[k])
		}
		rows = append(rows, sb.String())
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	slices.Sort(rows)
	h := sha256.New()
	for _, r := range rows {
		h.Write([]byte(r))
		h.Write([]byte{'\n'})
	}
	return len(rows), hex.EncodeToString(h.Sum(nil))
}

type cassandraState map[string]string

// waitAllReplicas waits until reads at consistency ALL succeed: a node
// that has just (re)started answers CQL a few seconds before its peers'
// gossip marks it up.
func waitAllReplicas(t *testing.T, s *gocql.Session) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := s.Query(`SELECT id FROM ks1.users LIMIT 1`).Consistency(gocql.All).Exec()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reads at ALL still fail 90 s after the restore: %v", err)
		}
		time.Sleep(time.Second)
	}
}

func readCassandraState(t *testing.T, s *gocql.Session) cassandraState {
	t.Helper()
	st := cassandraState{}
	for _, table := range []string{"ks1.users", "ks1.users_by_name", "ks2.events"} {
		n, d := tableDigest(t, s, table)
		st[table] = fmt.Sprintf("%d rows %s", n, d)
	}
	// The secondary index answers, too.
	var id int
	if err := s.Query(`SELECT id FROM ks1.users WHERE email = ?`, "user42@example.com").Consistency(gocql.All).Scan(&id); err != nil || id != 42 {
		st["index"] = fmt.Sprintf("index lookup: id %d, err %v", id, err)
	} else {
		st["index"] = "ok"
	}
	return st
}

func (want cassandraState) check(t *testing.T, got cassandraState, what string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s is %q, want %q", what, k, got[k], v)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// hostID asks the node at host itself (no other host may answer).
func hostID(t *testing.T, host string) string {
	t.Helper()
	c := gocql.NewCluster(host)
	c.ProtoVersion = 4
	c.Timeout = 30 * time.Second
	c.DisableInitialHostLookup = true
	c.HostFilter = gocql.WhiteListHostFilter(host)
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("CQL %s: %v", host, err)
	}
	defer s.Close()
	var id gocql.UUID
	if err := s.Query(`SELECT host_id FROM system.local`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func TestCassandra(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two Cassandra JVMs")
	}
	nodesDir := t.TempDir()
	t.Setenv("CRAYFISH_CASSANDRA_NODES", nodesDir) // scripts/cassandra.sh, for us and the agents
	t.Setenv("CASSANDRA_RING_DELAY_MS", "5000")
	nodes := []cassandraNode{
		{name: "c1", ip: "127.0.4.11", seeds: "127.0.4.11"},
		{name: "c2", ip: "127.0.4.12", seeds: "127.0.4.11"},
	}
	for i := range nodes {
		nodes[i].dir = filepath.Join(nodesDir, nodes[i].name)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			_ = exec.Command(cassandraScript(t), "stop", n.name).Run()
		}
	})
	started := time.Now()
	for _, n := range nodes {
		n.start(t)
	}
	t.Logf("MEASURE cassandra: two nodes up in %s", time.Since(started).Round(time.Second))
	s := cqlSession(t, nodes[0].ip, nodes[1].ip)
	defer s.Close()
	loadCassandraData(t, s)
	want := readCassandraState(t, s)
	t.Logf("data: %v", want)
	hostIDs := []string{hostID(t, nodes[0].ip), hostID(t, nodes[1].ip)}

	// Two agents, one beside each Cassandra node.
	repo, key := initRepo(t)
	var agents []*agent
	for i, n := range nodes {
		extra := append([]string{"--bootstrap-expect", "2"}, n.agentFlags(t, nodes[1-i].ip)...)
		if i > 0 {
			extra = append(extra, "--join", agents[0].gossip)
		}
		agents = append(agents, newAgent(t, agentOpts{nodeID: fmt.Sprintf("agent%d", i+1), ip: fmt.Sprintf("127.0.0.%d", i+2),
			repo: repo, keyFile: key, clustered: true, extra: extra}))
	}
	c := &cluster{t: t, repo: repo, key: key, agents: agents}
	c.waitVoters(2, 60*time.Second)
	a := agents[1] // requests go through a follower or the leader alike

	started = time.Now()
	backup := a.backupWait()
	t.Logf("MEASURE cassandra backup of 2 nodes: %s", time.Since(started).Round(100*time.Millisecond))
	m := readManifest(t, a, backup.BackupID)
	if m.Plugin != cassandra.Name || len(m.Nodes) != 2 {
		t.Fatalf("manifest: plugin %q, %d nodes", m.Plugin, len(m.Nodes))
	}
	for _, n := range m.Nodes {
		i := slices.IndexFunc(agents, func(a *agent) bool { return a.nodeID == n.NodeID })
		if i < 0 {
			t.Fatalf("manifest names node %s", n.NodeID)
		}
		meta, err := cassandra.ParseNodeMeta(n.Plugin)
		if err != nil {
			t.Fatal(err)
		}
		if meta.HostID != hostIDs[i] || len(meta.Tokens) != 16 || !slices.Contains(meta.Tables, "ks1.users_by_name") || !slices.Contains(meta.Tables, "ks2.events") {
			t.Fatalf("node %s meta: host %s (want %s), %d tokens, tables %v", n.NodeID, meta.HostID, hostIDs[i], len(meta.Tokens), meta.Tables)
		}
	}
	for _, n := range nodes {
		if snaps := n.snapshots(t); len(snaps) != 0 {
			t.Fatalf("the backup left Cassandra snapshots behind: %v", snaps[:min(3, len(snaps))])
		}
	}

	t.Run("UnknownTableRefused", func(t *testing.T) {
		code, body := a.post("/v1/restores", fmt.Sprintf(`{"backup_id": %q, "tables": ["ks1.users", "ks9.nope"]}`, backup.BackupID))
		if code != 400 || !strings.Contains(fmt.Sprint(body), "ks9.nope") {
			t.Fatalf("restore of an unknown table: %d %v", code, body)
		}
	})

	t.Run("TableRestore", func(t *testing.T) {
		// A dropped table comes back, and a damaged one (rows deleted and
		// changed after the backup) is put back as it was, with its
		// secondary index and its materialized view.
		if err := s.Query(`DROP TABLE ks2.events`).Exec(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200; i++ {
			if err := s.Query(`DELETE FROM ks1.users WHERE id = ?`, i).Exec(); err != nil {
				t.Fatal(err)
			}
			if err := s.Query(`UPDATE ks1.users SET name = ? WHERE id = ?`, "renamed", 1000+i).Exec(); err != nil {
				t.Fatal(err)
			}
		}
		started := time.Now()
		res := a.cli("restore", backup.BackupID, "--tables", "ks2.events,ks1.users", "--wait")
		if res.code != 0 {
			t.Fatalf("table restore: exit %d: %s %s\n%s", res.code, res.stderr, res.stdout, tail(a.logs(), 4000))
		}
		t.Logf("MEASURE cassandra table restore: %s", time.Since(started).Round(100*time.Millisecond))
		want.check(t, readCassandraState(t, s), "after the table restore")
	})

	t.Run("SingleNodeRestore", func(t *testing.T) {
		// Node c2 loses everything; it comes back from the backup with its
		// host id and tokens while c1 keeps serving.
		nodes[1].stop(t)
		nodes[1].wipe(t)
		started := time.Now()
		res := a.cli("restore", backup.BackupID, "--node", "agent2", "--wait")
		if res.code != 0 {
			t.Fatalf("node restore: exit %d: %s %s\n%s", res.code, res.stderr, res.stdout, tail(agents[1].logs(), 4000))
		}
		t.Logf("MEASURE cassandra single-node restore: %s", time.Since(started).Round(100*time.Millisecond))
		if got := hostID(t, nodes[1].ip); got != hostIDs[1] {
			t.Fatalf("restored node is host %s, want %s", got, hostIDs[1])
		}
		s2 := cqlSession(t, nodes[0].ip, nodes[1].ip)
		defer s2.Close()
		waitAllReplicas(t, s2)
		want.check(t, readCassandraState(t, s2), "after the single-node restore")
	})

	t.Run("FullRestore", func(t *testing.T) {
		s.Close()
		for _, n := range nodes {
			n.stop(t)
			n.wipe(t)
		}
		started := time.Now()
		res := a.cli("restore", backup.BackupID, "--wait")
		if res.code != 0 {
			t.Fatalf("full restore: exit %d: %s %s\n%s\n%s", res.code, res.stderr, res.stdout, tail(agents[0].logs(), 3000), tail(agents[1].logs(), 3000))
		}
		t.Logf("MEASURE cassandra full restore of 2 nodes: %s", time.Since(started).Round(100*time.Millisecond))
		s3 := cqlSession(t, nodes[0].ip, nodes[1].ip)
		defer s3.Close()
		waitAllReplicas(t, s3)
		want.check(t, readCassandraState(t, s3), "after the full restore")
	})

	t.Run("CassandraDownFailsBackup", func(t *testing.T) {
		nodes[1].stop(t)
		res := a.cli("backup", "--wait", "--output", "json")
		if res.code == 0 {
			t.Fatalf("backup with a Cassandra node down succeeded: %s", res.stdout)
		}
		var op fsm.Operation
		if err := json.Unmarshal([]byte(res.stdout), &op); err != nil {
			t.Fatalf("backup output: %v: %s %s", err, res.stdout, res.stderr)
		}
		if op.State != fsm.OpFailed || !strings.Contains(op.Error, "cassandra is not available") {
			t.Fatalf("backup with Cassandra down: state %s, error %q", op.State, op.Error)
		}
		for _, n := range nodes {
			if snaps := n.snapshots(t); len(snaps) != 0 {
				t.Fatalf("the failed backup left snapshots on %s: %v", n.name, snaps[:min(3, len(snaps))])
			}
		}
	})
}

// readManifest reads a backup's manifest through the agent.
func readManifest(t *testing.T, a *agent, backupID string) *storage.Manifest {
	t.Helper()
	var d api.BackupDetail
	if code := a.getJSON("/v1/backups/"+backupID, &d); code != 200 || d.Manifest == nil {
		t.Fatalf("describe %s: status %d", backupID, code)
	}
	return d.Manifest
}
