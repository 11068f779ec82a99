package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/crayfish-backup/crayfish/node/wire"
)

// TestCassandraPITR restores two Cassandra nodes to a point in time:
// backup B0, writes, updates and deletes before T and after T, enough
// filler that the commit-log segments holding T close and are archived,
// shipped by the agents as log archives (backup B1 finished after T but
// before they closed), then both nodes wiped and `restore --to-time T`:
// exactly the rows as of T, replayed from the shipped segments. Before
// the disaster, a table restore to T of one table, in the running
// cluster (pitrTables), and a single-node restore of p2 to T
// (pitrSingleNode). Restores to a time that no backup or no archive
// reaches are refused with 400.
func TestCassandraPITR(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Cassandra JVMs")
	}
	t.Parallel() // beside TestCassandraResize: other addresses, JMX ports and node directories
	mk := cassandraNodes(t, "CASSANDRA_XMS=256m", "CASSANDRA_XMX=768m")
	nodes := []cassandraNode{mk("p1", "127.0.9.11", "127.0.9.11"), mk("p2", "127.0.9.12", "127.0.9.11")}

	// The agents first: with archiving on they write each node's
	// conf/commitlog_archiving.properties, which Cassandra reads at start.
	repo, key := initRepo(t)
	var agents []*agent
	for i, n := range nodes {
		if err := os.MkdirAll(filepath.Join(n.dir, "conf"), 0o755); err != nil {
			t.Fatal(err)
		}
		peer := nodes[1-i].ip
		extra := append(n.agentFlags(t, peer), "--cassandra-commitlog-archive", "--log-ship-interval", "2s",
			"--cassandra-commitlog-archiving-file", filepath.Join(n.dir, "conf", "commitlog_archiving.properties"),
			"--bootstrap-expect", "2")
		if i > 0 {
			extra = append(extra, "--join", agents[0].gossip)
		}
		agents = append(agents, newAgent(t, agentOpts{nodeID: fmt.Sprintf("pitr%d", i+1), ip: fmt.Sprintf("127.0.9.%d", i+1),
			repo: repo, keyFile: key, clustered: true, extra: extra}))
	}
	(&cluster{t: t, repo: repo, key: key, agents: agents}).waitVoters(2, 60*time.Second)
	for _, n := range nodes {
		props := readFileString(t, filepath.Join(n.dir, "conf", "commitlog_archiving.properties")) + "\n"
		if !strings.Contains(props, " cassandra-archive-segment ") || !strings.Contains(props, "restore_point_in_time=\n") {
			t.Fatalf("%s: commitlog_archiving.properties:\n%s", n.name, props)
		}
	}
	started := time.Now()
	for _, n := range nodes {
		n.start(t)
	}
	t.Logf("MEASURE cassandra: 2 nodes up in %s", time.Since(started).Round(time.Second))
	spool := func(a *agent) string { return filepath.Join(a.dataDir, "plugin", "cassandra", "commitlog") }

	s := cqlSession(t, nodes[0].ip, nodes[1].ip)
	for _, q := range []string{
		`CREATE KEYSPACE pitr WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}`,
		`CREATE TABLE pitr.kv (id int PRIMARY KEY, v text, n int)`,
		`CREATE TABLE pitr.filler (id int PRIMARY KEY, payload blob)`,
		`CREATE TABLE pitr.other (id int PRIMARY KEY, v text)`,
	} {
		if err := s.Query(q).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	write := func(q string, args ...any) {
		t.Helper()
		if err := s.Query(q, args...).Consistency(gocql.All).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i := range 200 {
		write(`INSERT INTO pitr.kv (id, v, n) VALUES (?, ?, ?)`, i, "b0", i)
		write(`INSERT INTO pitr.other (id, v) VALUES (?, ?)`, i, "b0")
	}
	b0 := agents[0].backupWait()

	// Before T: new rows, updates and deletes of backed-up rows.
	for i := 200; i < 300; i++ {
		write(`INSERT INTO pitr.kv (id, v, n) VALUES (?, ?, ?)`, i, "beforeT", i)
	}
	for i := range 50 {
		write(`UPDATE pitr.kv SET v = ? WHERE id = ?`, "updatedBeforeT", i)
	}
	for i := 50; i < 70; i++ {
		write(`DELETE FROM pitr.kv WHERE id = ?`, i)
	}
	time.Sleep(time.Second)
	at := time.Now().UTC()
	wantRows, want := tableDigest(t, s, "pitr.kv")
	otherRowsT, otherT := tableDigest(t, s, "pitr.other")
	// And as a client we did not write reads them (the Python driver).
	pyT := pyDigest(t, []string{nodes[0].ip, nodes[1].ip}, "pitr.kv", "pitr.other")
	time.Sleep(time.Second)

	// After T: new rows, updates and deletes of rows from before B0 and
	// from between B0 and T.
	for i := 300; i < 400; i++ {
		write(`INSERT INTO pitr.kv (id, v, n) VALUES (?, ?, ?)`, i, "afterT", i)
	}
	for i := 100; i < 150; i++ {
		write(`UPDATE pitr.kv SET v = ? WHERE id = ?`, "updatedAfterT", i)
	}
	for i := 150; i < 170; i++ {
		write(`DELETE FROM pitr.kv WHERE id = ?`, i)
	}
	for i := 200; i < 220; i++ {
		write(`UPDATE pitr.kv SET v = ?, n = ? WHERE id = ?`, "updatedAfterT", -i, i)
	}
	for i := 220; i < 230; i++ {
		write(`DELETE FROM pitr.kv WHERE id = ?`, i)
	}
	// A table the table restore leaves alone: its writes after T stay.
	for i := 100; i < 300; i++ {
		write(`INSERT INTO pitr.other (id, v) VALUES (?, ?)`, i, "afterT")
	}
	if n, d := tableDigest(t, s, "pitr.kv"); d == want {
		t.Fatalf("the writes after T changed nothing (%d rows)", n)
	}
	// B1 finishes after T but before the segments holding T close: the
	// restore must take them from the log archives the agents ship.
	b1 := agents[0].backupWait()

	// Filler until the segment holding T has closed and been archived on
	// both nodes (8 MiB segments; every row goes to both nodes).
	payload := make([]byte, 16<<10)
	filled, fillStart := 0, time.Now()
	closedAfter := func(a *agent) bool {
		es, _ := os.ReadDir(spool(a))
		for _, e := range es {
			if info, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "CommitLog-") && !info.ModTime().Before(at) {
				return true
			}
		}
		return false
	}
	for !(closedAfter(agents[0]) && closedAfter(agents[1])) {
		if filled > 6000 {
			t.Fatalf("no segment closed after T in the spools after %d filler rows", filled)
		}
		for range 100 {
			if err := s.Query(`INSERT INTO pitr.filler (id, payload) VALUES (?, ?)`, filled, payload).Consistency(gocql.All).Exec(); err != nil {
				t.Fatal(err)
			}
			filled++
		}
		time.Sleep(200 * time.Millisecond) // archiving runs after the segment closes
	}
	t.Logf("MEASURE filler: %d rows of 16 KiB (%d MiB, RF 2) in %s until the segments holding T closed on both nodes",
		filled, filled*16/1024, time.Since(fillStart).Round(100*time.Millisecond))
	s.Close()
	shippedAt := time.Now()
	for _, a := range agents {
		waitShipped(t, a, shippedAt)
	}
	t.Logf("MEASURE log shipping: the segments holding T shipped on both nodes %s after they closed", time.Since(shippedAt).Round(100*time.Millisecond))

	refused := func(what, body, wantText string) {
		t.Helper()
		code, res := agents[1].post("/v1/restores", body)
		if code != 400 || !strings.Contains(fmt.Sprint(res), wantText) {
			t.Fatalf("%s: %d %v, want 400 saying %q", what, code, res, wantText)
		}
		t.Logf("%s refused: %v", what, res["error"])
	}
	rfc := func(x time.Time) string { return x.UTC().Format(time.RFC3339Nano) }
	refused("a time before any backup", fmt.Sprintf(`{"to_time": %q}`, rfc(b0.CreatedAt.Add(-time.Hour))), "no backup of this cluster finished")
	refused("a time beyond the archive", fmt.Sprintf(`{"to_time": %q}`, rfc(time.Now().Add(time.Minute))), "take a backup after")
	refused("a backup finished after the time", fmt.Sprintf(`{"to_time": %q, "backup_id": %q}`, rfc(at), b1.BackupID), "after the time to restore to")

	pitrTables(t, agents[0], nodes, at, b0.BackupID, wantRows, want, pyT["py pitr.kv"])
	pitrSingleNode(t, agents[1], nodes, at, map[string]tableState{
		"pitr.kv": {wantRows, want}, "pitr.other": {otherRowsT, otherT}, "pitr.filler": {0, ""}})

	// Disaster: both nodes lose everything; the agents keep running.
	for _, n := range nodes {
		n.stop(t)
		n.wipe(t)
	}
	op, took := agents[0].restoreOp(t, "--to-time", rfc(at))
	if op.BackupID != b0.BackupID {
		t.Errorf("restore to T started from backup %s, want B0 %s", op.BackupID, b0.BackupID)
	}
	fromLogs := map[string]bool{}
	for _, st := range op.Steps {
		var in wire.RestoreInput
		if stepAction(st) == "segments" && json.Unmarshal(st.Input, &in) == nil && in.LogArchive != "" {
			fromLogs[st.Node] = true
		}
	}
	if len(fromLogs) != len(nodes) {
		t.Errorf("segments staged from log archives on %v, want every node (B1 closed before the segments holding T)", fromLogs)
	}
	t.Logf("MEASURE cassandra restore of 2 nodes to a time: %s", took)
	logStepTimes(t, op)
	for _, st := range op.Steps {
		var rr wire.RestoreResult
		_ = json.Unmarshal(st.Result, &rr)
		switch stepAction(st) {
		case "segments":
			t.Logf("MEASURE segment stage on %s: %d files, %.1f MiB downloaded (%.1f MiB kept) in %s", st.Node, rr.Downloaded+rr.Kept,
				float64(rr.DownloadedBytes)/(1<<20), float64(rr.KeptBytes)/(1<<20), st.FinishedAt.Sub(*st.StartedAt).Round(time.Millisecond))
		case "load":
			r := replayOf(t, st)
			rate := float64(r.Segments) / max(float64(r.Millis)/1000, 0.001)
			t.Logf("MEASURE replay on %s: %d of %d staged segments, %d mutations in %d ms (%.1f segments/s); warnings %v",
				st.Node, r.Segments, r.Staged, r.Mutations, r.Millis, rate, r.Warnings)
		}
	}

	s = cqlSession(t, nodes[0].ip, nodes[1].ip)
	defer s.Close()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		err := s.Query(`SELECT id FROM pitr.kv LIMIT 1`).Consistency(gocql.All).Exec()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reads at ALL still fail 90 s after the restore: %v", err)
		}
	}
	gotRows, got := tableDigest(t, s, "pitr.kv")
	if got != want || gotRows != wantRows {
		t.Errorf("pitr.kv after the restore to T: %d rows %s, want %d rows %s", gotRows, got, wantRows, want)
	}
	if gotRows, got := tableDigest(t, s, "pitr.other"); got != otherT || gotRows != otherRowsT {
		t.Errorf("pitr.other after the restore to T: %d rows %s, want %d rows %s", gotRows, got, otherRowsT, otherT)
	}
	if py := pyDigest(t, []string{nodes[0].ip, nodes[1].ip}, "pitr.kv", "pitr.other"); !maps.Equal(py, pyT) {
		t.Errorf("the Python driver reads after the restore to T %v, at T it read %v", py, pyT)
	}
	check := func(id int, wantV string) {
		t.Helper()
		var v string
		err := s.Query(`SELECT v FROM pitr.kv WHERE id = ?`, id).Consistency(gocql.All).Scan(&v)
		switch {
		case wantV == "" && err != gocql.ErrNotFound:
			t.Errorf("row %d: %q %v, want none", id, v, err)
		case wantV != "" && (err != nil || v != wantV):
			t.Errorf("row %d: %q %v, want %q", id, v, err, wantV)
		}
	}
	check(0, "updatedBeforeT")
	check(60, "")
	check(120, "b0")
	check(160, "b0")
	check(210, "beforeT")
	check(225, "beforeT")
	check(350, "")
	if n := rowCount(t, s, "pitr.filler"); n != 0 {
		t.Errorf("pitr.filler holds %d rows written after T", n)
	}
	for _, n := range nodes {
		props := readFileString(t, filepath.Join(n.dir, "conf", "commitlog_archiving.properties")) + "\n"
		if !strings.Contains(props, "restore_point_in_time=\n") {
			t.Errorf("%s: the restore keys stayed after the restore:\n%s", n.name, props)
		}
	}
}

// waitShipped waits until agent a shipped every closed log file that
// waited at after: a successful round since, and nothing waiting.
func waitShipped(t *testing.T, a *agent, after time.Time) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := scrapeMetrics(t, a)
		if m["crayfish_log_shipping_enabled"] != 1 {
			t.Fatalf("agent %s does not ship logs: %v", a.nodeID, m)
		}
		if m["crayfish_log_shipping_last_success_timestamp_seconds"] >= float64(after.UnixNano())/1e9 && m["crayfish_log_shipping_lag_seconds"] == 0 {
			t.Logf("agent %s shipped %v files (%v bytes) in %v archives, %v failed rounds", a.nodeID, m["crayfish_log_shipping_files_total"],
				m["crayfish_log_shipping_bytes_total"], m["crayfish_log_shipping_archives_total"], m["crayfish_log_shipping_failures_total"])
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s shipped nothing since %s within 60 s: %v\n%s", a.nodeID, after.Format(time.RFC3339), m, tail(a.logs(), 3000))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
