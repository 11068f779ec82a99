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
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

// cassandraNode is one Cassandra node run by scripts/cassandra.sh.
type cassandraNode struct {
	name, ip, seeds string
	dir             string // node directory (data1, data2, commitlog, ...)
	// env is what scripts/cassandra.sh gets for this node, from the test
	// and from the agents (env(1) before each command): not the test
	// process's environment, so tests with their own nodes can run side
	// by side.
	env []string
}

// cassandraNodes prepares a test's Cassandra nodes and returns how to
// name one: their directory (CRAYFISH_CASSANDRA_NODES), a shorter ring
// delay and env (VAR=value) for scripts/cassandra.sh, and a cleanup that
// stops every node it named.
func cassandraNodes(t *testing.T, env ...string) func(name, ip, seeds string) cassandraNode {
	t.Helper()
	dir := t.TempDir()
	env = append([]string{"CRAYFISH_CASSANDRA_NODES=" + dir, "CASSANDRA_RING_DELAY_MS=5000"}, env...)
	var names []string
	t.Cleanup(func() {
		for _, n := range names {
			cmd := exec.Command(cassandraScript(t), "stop", n)
			cmd.Env = append(os.Environ(), env...)
			_ = cmd.Run()
		}
	})
	return func(name, ip, seeds string) cassandraNode {
		names = append(names, name)
		return cassandraNode{name: name, ip: ip, seeds: seeds, dir: filepath.Join(dir, name), env: env}
	}
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
	cmd.Env = append(os.Environ(), n.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cassandra.sh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (n cassandraNode) start(t *testing.T) { n.run(t, "start", n.name, n.ip, n.seeds) }

func (n cassandraNode) stop(t *testing.T) { n.run(t, "stop", n.name) }

// wipe deletes every file the node keeps (it must be stopped).
func (n cassandraNode) wipe(t *testing.T) {
	t.Helper()
	for _, d := range []string{"data1", "data2", "commitlog", "saved_caches", "hints"} {
		if err := os.RemoveAll(filepath.Join(n.dir, d)); err != nil {
			t.Fatal(err)
		}
	}
}

// script is the node's scripts/cassandra.sh command for an agent: run
// through env(1) with the node's environment.
func (n cassandraNode) script(t *testing.T) string {
	return strings.Join(append(append([]string{"env"}, n.env...), cassandraScript(t)), " ")
}

// agentFlags configure a crayfish agent for this node; peers are the
// other nodes' addresses (contact points while this one is down).
func (n cassandraNode) agentFlags(t *testing.T, peers ...string) []string {
	s := n.script(t)
	return append([]string{"--plugin", "cassandra", "--cassandra-hosts", strings.Join(append([]string{n.ip}, peers...), ","),
		"--cassandra-data-dirs", filepath.Join(n.dir, "data1") + "," + filepath.Join(n.dir, "data2"),
		"--cassandra-commitlog-dir", filepath.Join(n.dir, "commitlog"),
		"--cassandra-saved-caches-dir", filepath.Join(n.dir, "saved_caches"),
		"--cassandra-hints-dir", filepath.Join(n.dir, "hints"),
		"--cassandra-nodetool", s + " nodetool " + n.name,
		"--cassandra-start-command", fmt.Sprintf("%s start %s %s %s", s, n.name, n.ip, n.seeds),
		"--cassandra-stop-command", fmt.Sprintf("%s stop %s", s, n.name),
		"--cassandra-log-file", filepath.Join(n.dir, "logs", "system.log"),
		"--node-timeout", "5m", "--step-attempts", "2"}, cqlClient.agentFlags()...)
}

// cqlClientConfig is how the suite's clients (gocql, the Python driver,
// the agents) reach Cassandra: with a password and over TLS, or plainly.
type cqlClientConfig struct {
	user, password, passwordFile string
	caFile                       string
}

// cqlClient is the running suite's (suites run one at a time).
var cqlClient cqlClientConfig

func (c cqlClientConfig) agentFlags() []string {
	var out []string
	if c.user != "" {
		out = append(out, "--cassandra-username", c.user, "--cassandra-password-file", c.passwordFile)
	}
	if c.caFile != "" {
		out = append(out, "--cassandra-tls-ca-file", c.caFile)
	}
	return out
}

func (c cqlClientConfig) apply(cl *gocql.ClusterConfig) {
	if c.user != "" {
		cl.Authenticator = gocql.PasswordAuthenticator{Username: c.user, Password: c.password}
	}
	if c.caFile != "" {
		cl.SslOpts = &gocql.SslOptions{CaPath: c.caFile, EnableHostVerification: true}
	}
}

func (c cqlClientConfig) pyArgs() []string {
	var out []string
	if c.user != "" {
		out = append(out, "--user", c.user, "--password", c.password)
	}
	if c.caFile != "" {
		out = append(out, "--ca", c.caFile)
	}
	return out
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
	cqlClient.apply(c)
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

// restoreOp runs `crayfish restore ARGS --wait --output json` through
// agent a and returns the finished operation and how long it took; a
// failed restore fails the test with the agent's log.
func (a *agent) restoreOp(t *testing.T, args ...string) (*fsm.Operation, time.Duration) {
	t.Helper()
	started := time.Now()
	res := a.cli(append(append([]string{"restore"}, args...), "--wait", "--output", "json")...)
	took := time.Since(started).Round(100 * time.Millisecond)
	if res.code != 0 {
		t.Fatalf("restore %v: exit %d: %s %s\n%s", args, res.code, res.stderr, res.stdout, tail(a.logs(), 6000))
	}
	var op fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &op); err != nil {
		t.Fatal(err)
	}
	return &op, took
}

// tableDigest reads every row of a table at consistency ALL and returns
// the row count and a digest of the sorted rows.
func tableDigest(t *testing.T, s *gocql.Session, table string) (int, string) {
	t.Helper()
	return tableDigestAt(t, s, table, gocql.All)
}

// tableDigestAt is tableDigest read at consistency c.
func tableDigestAt(t *testing.T, s *gocql.Session, table string, c gocql.Consistency) (int, string) {
	t.Helper()
	iter := s.Query("SELECT * FROM " + table).Consistency(c).PageSize(500).Iter()
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

// pyState reads every table through the DataStax Python driver (PyPI,
// scripts/cassandra.sh pydriver) at consistency ALL: row digests, the
// index on note's answer (SAI on 5.0) and how many rows still carry their TTL.
func pyState(t *testing.T, hosts ...string) cassandraState {
	t.Helper()
	args := append(slices.Clone(cassTables), "--query", "index=SELECT id, seq, note FROM ks3.profiles WHERE note = 'note-42-1'",
		"--nonnull", "ttl=SELECT id, seq, TTL(note) FROM ks3.profiles")
	return pyDigest(t, hosts, args...)
}

// pyDigest runs test/cassandra/pydigest.py (the Python driver, at
// consistency ALL) on hosts with args (tables, --query, --nonnull): each
// digest under "py <name>".
func pyDigest(t *testing.T, hosts []string, pyArgs ...string) cassandraState {
	t.Helper()
	out, err := exec.Command(cassandraScript(t), "pydriver").Output()
	if err != nil {
		t.Fatalf("scripts/cassandra.sh pydriver: %v", err)
	}
	args := append([]string{filepath.Join(repoRoot(t), "test", "cassandra", "pydigest.py"), "--hosts", strings.Join(hosts, ",")}, cqlClient.pyArgs()...)
	args = append(args, pyArgs...)
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

// release is the Cassandra version the session's node runs.
func release(t *testing.T, s *gocql.Session) string {
	t.Helper()
	var v string
	if err := s.Query(`SELECT release_version FROM system.local`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// hostID asks the node at host itself (no other host may answer).
func hostID(t *testing.T, host string) string {
	t.Helper()
	c := gocql.NewCluster(host)
	c.ProtoVersion = 4
	c.Timeout = 30 * time.Second
	c.DisableInitialHostLookup = true
	c.HostFilter = gocql.WhiteListHostFilter(host)
	cqlClient.apply(c)
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
