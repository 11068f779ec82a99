package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
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
		"--cassandra-log-file", filepath.Join(n.dir, "logs", "system.log"),
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
	cassLegacy = 1000 // rows of ks2.legacy before its column was dropped, and after
	cassBroken = 300
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
	`CREATE TABLE ks2.legacy (id int PRIMARY KEY, name text, legacy_code text)`,
	`CREATE TABLE ks2.broken (id int PRIMARY KEY, v text)`,
	// What else a real cluster has: NetworkTopologyStrategy, collections,
	// a frozen UDT, a static column, a vector, an SAI index, other
	// compaction and compression, counters. (The vector has no SAI
	// index: Cassandra 5.0 refuses ANN indexes on several data
	// directories, and the suite's nodes have two.)
	`CREATE KEYSPACE ks3 WITH replication = {'class': 'NetworkTopologyStrategy', 'datacenter1': 2}`,
	`CREATE TYPE ks3.contact (kind text, value text)`,
	`CREATE TABLE ks3.profiles (id int, seq int, region text static, tags set<text>, scores list<int>, attrs map<text, text>,
		main frozen<contact>, emb vector<float, 4>, note text, PRIMARY KEY (id, seq))
		WITH compaction = {'class': 'LeveledCompactionStrategy'} AND compression = {'class': 'ZstdCompressor'}`,
	`CREATE INDEX profiles_note ON ks3.profiles (note) USING 'sai'`,
	`CREATE TABLE ks3.hits (page text PRIMARY KEY, n counter)`,
}

const (
	cassProfiles = 300 // partitions of ks3.profiles, three rows each
	cassPages    = 100 // counters of ks3.hits
)

// loadProfiles fills ks3: half of it flushed, then a column added, the
// rest left in memtables (the backup's snapshot flushes them); every
// third partition written with a TTL; counters incremented page-many
// times.
func loadProfiles(t *testing.T, s *gocql.Session, nodes []cassandraNode) {
	t.Helper()
	exec := func(q string, args ...any) {
		t.Helper()
		if err := s.Query(q, args...).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	type contact struct {
		Kind  string `cql:"kind"`
		Value string `cql:"value"`
	}
	row := func(i, seq int, extra string) {
		ttl := ""
		if i%3 == 0 {
			ttl = " USING TTL 86400"
		}
		// The vector is a literal: gocql v1.7 cannot marshal one.
		cols, marks := "id, seq, region, tags, scores, attrs, main, emb, note", fmt.Sprintf("?, ?, ?, ?, ?, ?, ?, [0.5, %d.5, %d.0, 1.0], ?", i, seq)
		args := []any{i, seq, fmt.Sprintf("region-%d", i%7), []string{"a", fmt.Sprint(i)}, []int{i, seq}, map[string]string{"k": fmt.Sprint(i * seq)},
			contact{"mail", fmt.Sprintf("u%d@example.com", i)}, fmt.Sprintf("note-%d-%d", i, seq)}
		if extra != "" {
			cols, marks, args = cols+", later", marks+", ?", append(args, extra)
		}
		exec(`INSERT INTO ks3.profiles (`+cols+`) VALUES (`+marks+`)`+ttl, args...)
	}
	for i := range cassProfiles / 2 {
		for seq := range 3 {
			row(i, seq, "")
		}
	}
	for p := range cassPages {
		for range p%5 + 1 {
			exec(`UPDATE ks3.hits SET n = n + ? WHERE page = ?`, int64(p), fmt.Sprintf("page-%d", p))
		}
	}
	for _, n := range nodes {
		n.run(t, "nodetool", n.name, "flush", "ks3")
	}
	exec(`ALTER TABLE ks3.profiles ADD later text`)
	for i := cassProfiles / 2; i < cassProfiles; i++ {
		for seq := range 3 {
			row(i, seq, fmt.Sprintf("later-%d", i))
		}
	}
	for p := range cassPages / 2 {
		exec(`UPDATE ks3.hits SET n = n + 1 WHERE page = ?`, fmt.Sprintf("page-%d", p))
	}
}

// loadLegacyData gives ks2.legacy SSTables that predate a column drop:
// rows with legacy_code are flushed on both nodes, legacy_code is
// dropped, added_later added, and more rows written with it (the rows of
// the first SSTables name a column the table no longer has: only the
// table's dropped-column record lets Cassandra read them). ks2.broken
// gets rows, flushed.
func loadLegacyData(t *testing.T, s *gocql.Session, nodes []cassandraNode) {
	t.Helper()
	exec := func(q string, args ...any) {
		t.Helper()
		if err := s.Query(q, args...).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i := range cassLegacy {
		exec(`INSERT INTO ks2.legacy (id, name, legacy_code) VALUES (?, ?, ?)`, i, fmt.Sprintf("old-%d", i), fmt.Sprintf("code-%d", i))
	}
	for i := range cassBroken {
		exec(`INSERT INTO ks2.broken (id, v) VALUES (?, ?)`, i, fmt.Sprintf("v-%d", i))
	}
	for _, n := range nodes {
		n.run(t, "nodetool", n.name, "flush", "ks2")
	}
	exec(`ALTER TABLE ks2.legacy DROP legacy_code`)
	exec(`ALTER TABLE ks2.legacy ADD added_later int`)
	for i := cassLegacy; i < 2*cassLegacy; i++ {
		exec(`INSERT INTO ks2.legacy (id, name, added_later) VALUES (?, ?, ?)`, i, fmt.Sprintf("new-%d", i), i*3)
	}
	for i := range 100 { // old rows updated after the drop
		exec(`UPDATE ks2.legacy SET added_later = ? WHERE id = ?`, -i, i)
	}
}

// corruptStatistics flips one byte in the middle of every Statistics.db
// of a table on a node: Cassandra then refuses the SSTable when it opens
// it (its metadata checksum fails), at import and at start-up alike.
// The running node keeps the copy it read at start.
func corruptStatistics(t *testing.T, n cassandraNode, ks, table string) {
	t.Helper()
	var files []string
	for _, d := range []string{"data1", "data2"} {
		m, _ := filepath.Glob(filepath.Join(n.dir, d, ks, table+"-*", "*-Statistics.db"))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no Statistics.db of %s.%s on %s", ks, table, n.name)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// opErrors decodes `--output json` of a failed operation and returns its
// error and every step's, one per line. Every step of the given plugin
// actions must have run to the end: a table failing on one node must not
// stop another node's load or import.
func opErrors(t *testing.T, res cliResult, completeActions ...string) string {
	t.Helper()
	var op fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &op); err != nil {
		t.Fatalf("restore output: %v: %s %s", err, res.stdout, res.stderr)
	}
	if op.State != fsm.OpFailed {
		t.Fatalf("operation %s: state %s, want failed", op.ID, op.State)
	}
	logStepTimes(t, &op)
	out := []string{op.Error}
	for _, st := range op.Steps {
		if st.Error != "" {
			out = append(out, fmt.Sprintf("%s %s: %s", st.Name, st.Node, st.Error))
		}
		if slices.Contains(completeActions, stepAction(st)) && st.State != fsm.StepDone {
			t.Errorf("step %s on %s: %s, want done", stepAction(st), st.Node, st.State)
		}
	}
	return strings.Join(out, "\n")
}

// stepAction is a restore step's plugin action ("cleanup" for the
// cleanup step, the step name for other steps).
func stepAction(st fsm.Step) string {
	var in struct {
		Plugin struct {
			Action string `json:"action"`
		} `json:"plugin"`
		Cleanup bool `json:"cleanup"`
	}
	_ = json.Unmarshal(st.Input, &in)
	switch {
	case in.Plugin.Action != "":
		return in.Plugin.Action
	case in.Cleanup:
		return "cleanup"
	}
	return st.Name
}

// logStepTimes logs how long each step of an operation took (MEASURE).
func logStepTimes(t *testing.T, op *fsm.Operation) {
	t.Helper()
	var parts []string
	for _, st := range op.Steps {
		if st.StartedAt == nil || st.FinishedAt == nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s@%s %s", stepAction(st), st.Node, st.FinishedAt.Sub(*st.StartedAt).Round(100*time.Millisecond)))
	}
	t.Logf("MEASURE steps of %s: %s", op.ID, strings.Join(parts, ", "))
}

// rowCount counts a table's rows at consistency ALL.
func rowCount(t *testing.T, s *gocql.Session, table string) int {
	t.Helper()
	var n int
	if err := s.Query("SELECT count(*) FROM " + table).Consistency(gocql.All).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
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

// cassTables are every user table of the suite, views included.
var cassTables = []string{"ks1.users", "ks1.users_by_name", "ks2.events", "ks2.legacy", "ks3.profiles", "ks3.hits"}

// pyState reads every table through the DataStax Python driver (PyPI,
// scripts/cassandra.sh pydriver) at consistency ALL: row digests, the
// SAI index's answer and how many rows still carry their TTL.
func pyState(t *testing.T, hosts ...string) cassandraState {
	t.Helper()
	out, err := exec.Command(cassandraScript(t), "pydriver").Output()
	if err != nil {
		t.Fatalf("scripts/cassandra.sh pydriver: %v", err)
	}
	args := append([]string{filepath.Join(repoRoot(t), "test", "cassandra", "pydigest.py"), "--hosts", strings.Join(hosts, ",")}, cassTables...)
	args = append(args, "--query", "sai=SELECT id, seq, note FROM ks3.profiles WHERE note = 'note-42-1'",
		"--nonnull", "ttl=SELECT id, seq, TTL(note) FROM ks3.profiles")
	cmd := exec.Command(strings.TrimSpace(string(out)), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("pydigest.py: %v\n%s", err, stderr.String())
	}
	var m map[string]string
	if err := json.Unmarshal(res, &m); err != nil {
		t.Fatalf("pydigest.py printed %q: %v", res, err)
	}
	st := cassandraState{}
	for k, v := range m {
		st["py "+k] = v
	}
	return st
}

func readCassandraState(t *testing.T, s *gocql.Session, hosts ...string) cassandraState {
	t.Helper()
	st := pyState(t, hosts...)
	for _, table := range []string{"ks1.users", "ks1.users_by_name", "ks2.events", "ks2.legacy"} {
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

// tableID reads a table's or view's id from the running schema.
func tableID(t *testing.T, s *gocql.Session, table string) string {
	t.Helper()
	ks, name, _ := strings.Cut(table, ".")
	var id gocql.UUID
	err := s.Query(`SELECT id FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?`, ks, name).Scan(&id)
	if errors.Is(err, gocql.ErrNotFound) {
		err = s.Query(`SELECT id FROM system_schema.views WHERE keyspace_name = ? AND view_name = ?`, ks, name).Scan(&id)
	}
	if err != nil {
		t.Fatalf("id of %s: %v", table, err)
	}
	return id.String()
}

// checkTableIDs: a restore recreates a table with its backed-up id where
// no table of the target has it.
func checkTableIDs(t *testing.T, s *gocql.Session, want map[string]string, tables ...string) {
	t.Helper()
	for _, tb := range tables {
		if got := tableID(t, s, tb); got != want[tb] {
			t.Errorf("%s has id %s after the restore, want the backed-up %s", tb, got, want[tb])
		}
	}
}

func ips(nodes []cassandraNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ip)
	}
	return out
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
	loadLegacyData(t, s, nodes)
	loadProfiles(t, s, nodes)
	want := readCassandraState(t, s, ips(nodes)...)
	if !strings.HasPrefix(want["ks2.legacy"], fmt.Sprintf("%d rows", 2*cassLegacy)) {
		t.Fatalf("ks2.legacy: %s", want["ks2.legacy"])
	}
	for k, v := range map[string]string{"py ks3.profiles": fmt.Sprintf("%d rows", 3*cassProfiles), "py ks3.hits": fmt.Sprintf("%d rows", cassPages),
		"py sai": "1 rows", "py ttl": fmt.Sprintf("%d rows", 3*((cassProfiles+2)/3))} {
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
		// ks3: counters incremented, profiles updated (the SAI-indexed
		// column too) and partly deleted; ks2.broken truncated.
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
		nodes[1].ip = "127.0.4.22"
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
		nodes[0].ip = "127.0.4.21"
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

// The owner the restores' data directories are given (no such user
// needs to exist: Cassandra runs as root here and reads anything).
const restoredUID, restoredGID = 4242, 4243

// giveDataDirs creates a wiped node's data directories owned by uid:gid.
func giveDataDirs(t *testing.T, n cassandraNode, uid, gid int) {
	t.Helper()
	for _, d := range []string{"data1", "data2"} {
		p := filepath.Join(n.dir, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRestoredOwner: in every named keyspace some restored file belongs
// to the data directories' owner, and no file the restore created in
// them belongs to anyone but that owner or Cassandra (root here, for
// what it wrote since: its own directories and new SSTables).
func checkRestoredOwner(t *testing.T, n cassandraNode, keyspaces ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the ownership check needs root (chown)")
	}
	for _, ks := range keyspaces {
		owned := 0
		for _, d := range []string{"data1", "data2"} {
			_ = filepath.WalkDir(filepath.Join(n.dir, d, ks), func(p string, e os.DirEntry, err error) error {
				if err != nil || e.IsDir() {
					return nil
				}
				fi, err := e.Info()
				if err != nil {
					return nil
				}
				st := fi.Sys().(*syscall.Stat_t)
				switch {
				case st.Uid == restoredUID && st.Gid == restoredGID:
					owned++
				case st.Uid != 0:
					t.Errorf("%s is owned by %d:%d", p, st.Uid, st.Gid)
				}
				return nil
			})
		}
		if owned == 0 {
			t.Errorf("%s: no restored file in keyspace %s belongs to %d:%d", n.name, ks, restoredUID, restoredGID)
		}
	}
}

// restartCassandraAgents restarts the given agents with the flags of
// their Cassandra nodes as they are now (new addresses, new seeds).
func restartCassandraAgents(t *testing.T, nodes []cassandraNode, agents []*agent, which ...int) {
	t.Helper()
	for _, i := range which {
		ag := agents[i]
		ag.stop()
		var peers []string
		for j, n := range nodes {
			if j != i {
				peers = append(peers, n.ip)
			}
		}
		extra := append([]string{"--bootstrap-expect", "2"}, nodes[i].agentFlags(t, peers...)...)
		if i > 0 {
			extra = append(extra, "--join", agents[0].gossip)
		}
		ag.extra = extra
		ag.launch()
	}
	for _, i := range which {
		agents[i].waitReady(60 * time.Second)
	}
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
