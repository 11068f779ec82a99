package integration

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// pitrTables restores one table, pitr.kv, to the time at in the running
// cluster: staged from B0 and the shipped segments, truncated, imported,
// then each node in turn drained and restarted to replay the table's
// archived mutations up to at. pitr.kv must then hold exactly the rows as
// of at (wantRows, want; wantPy as the Python driver read it), while the tables it did not restore keep
// everything written after at (pitr.other, pitr.filler).
func pitrTables(t *testing.T, a *agent, nodes []cassandraNode, at time.Time, b0 string, wantRows int, want, wantPy string) {
	t.Helper()
	s := cqlSession(t, nodes[0].ip, nodes[1].ip)
	otherRows, other := tableDigest(t, s, "pitr.other")
	fillerRows := rowCount(t, s, "pitr.filler")
	s.Close()
	if fillerRows == 0 || otherRows != 300 {
		t.Fatalf("before the table restore: %d filler rows, %d rows in pitr.other", fillerRows, otherRows)
	}

	op, took := a.restoreOp(t, "--to-time", at.UTC().Format(time.RFC3339Nano), "--tables", "pitr.kv")
	if op.BackupID != b0 {
		t.Errorf("the table restore to T started from backup %s, want B0 %s", op.BackupID, b0)
	}
	t.Logf("MEASURE cassandra table restore to a time (1 table, 2 nodes, rolling replay): %s", took)
	logStepTimes(t, op)
	replayed := 0
	for _, st := range op.Steps {
		if stepAction(st) != "replay" {
			continue
		}
		r := replayOf(t, st)
		replayed++
		t.Logf("MEASURE table replay on %s: %d segments, %d mutations in %d ms; warnings %v", st.Node, r.Segments, r.Mutations, r.Millis, r.Warnings)
	}
	if replayed != len(nodes) {
		t.Fatalf("%d replay steps, want one per node", replayed)
	}

	s = cqlSession(t, nodes[0].ip, nodes[1].ip)
	defer s.Close()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		if err := s.Query(`SELECT id FROM pitr.kv LIMIT 1`).Consistency(gocql.All).Exec(); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("reads at ALL still fail 90 s after the table restore: %v", err)
		}
	}
	if gotRows, got := tableDigest(t, s, "pitr.kv"); got != want || gotRows != wantRows {
		t.Errorf("pitr.kv after the table restore to T: %d rows %s, want %d rows %s", gotRows, got, wantRows, want)
	}
	if py := pyDigest(t, []string{nodes[0].ip, nodes[1].ip}, "pitr.kv")["py pitr.kv"]; py != wantPy {
		t.Errorf("the Python driver reads pitr.kv after the table restore to T as %s, at T as %s", py, wantPy)
	}
	if gotRows, got := tableDigest(t, s, "pitr.other"); got != other || gotRows != otherRows {
		t.Errorf("pitr.other, not restored, changed: %d rows %s, want %d rows %s", gotRows, got, otherRows, other)
	}
	if n := rowCount(t, s, "pitr.filler"); n != fillerRows {
		t.Errorf("pitr.filler, not restored, holds %d rows, want %d", n, fillerRows)
	}
	for _, n := range nodes {
		props := readFileString(t, filepath.Join(n.dir, "conf", "commitlog_archiving.properties")) + "\n"
		if !strings.Contains(props, "restore_point_in_time=\n") {
			t.Errorf("%s: the restore keys stayed after the table restore:\n%s", n.name, props)
		}
	}
}

// tableState is a table's row count and digest (tableDigest; "" for no
// row).
type tableState struct {
	rows   int
	digest string
}

// pitrSingleNode restores node p2 alone to the time at (its own backup
// and shipped segments, replayed at its start) while p1 runs, then stops
// p1 so that every read is p2's own, at consistency ONE: each table as
// of at (want), not as the cluster holds it now. (Its replicas would
// bring it forward again; the test wipes both nodes next.)
func pitrSingleNode(t *testing.T, a *agent, nodes []cassandraNode, at time.Time, want map[string]tableState) {
	t.Helper()
	op, took := a.restoreOp(t, "--to-time", at.UTC().Format(time.RFC3339Nano), "--node", "pitr2")
	t.Logf("MEASURE cassandra single-node restore to a time: %s", took)
	logStepTimes(t, op)
	for _, st := range op.Steps {
		if stepAction(st) != "node" {
			continue
		}
		if st.Node != "pitr2" {
			t.Fatalf("a node step on %s, not on the restored pitr2", st.Node)
		}
		r := replayOf(t, st)
		t.Logf("MEASURE single-node replay on %s: %d segments, %d mutations", st.Node, r.Segments, r.Mutations)
	}
	nodes[0].stop(t)
	s := cqlSession(t, nodes[1].ip)
	defer s.Close()
	for table, w := range want {
		rows, digest := tableDigestAt(t, s, table, gocql.One)
		if rows != w.rows || (w.rows > 0 && digest != w.digest) {
			t.Errorf("%s on p2 after its restore to T: %d rows %s, want %d rows %s", table, rows, digest, w.rows, w.digest)
		}
	}
}

// replay is what a restore step's plugin result says Cassandra replayed
// (cassandra.Replay).
type replay struct {
	Segments  int      `json:"segments"`
	Staged    int      `json:"staged"`
	Mutations int64    `json:"mutations"`
	Millis    int64    `json:"replay_ms"`
	Warnings  []string `json:"warnings"`
}

// replayOf reads step st's replay; one that replayed no segment fails
// the test.
func replayOf(t *testing.T, st fsm.Step) replay {
	t.Helper()
	var rr wire.RestoreResult
	var r replay
	err := json.Unmarshal(st.Result, &rr)
	if err == nil {
		err = json.Unmarshal(rr.Plugin, &r)
	}
	if err != nil || r.Segments == 0 {
		t.Fatalf("%s on %s replayed nothing: %s (%v)", stepAction(st), st.Node, rr.Plugin, err)
	}
	return r
}
