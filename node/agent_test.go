package node

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/node/worker"
	"github.com/crayfish-backup/crayfish/storage"
)

// TestAgentLifecycle drives one agent with an embedded repository through
// its public API: backups, listing, restores (into a target, into the
// root, a selection), previews, cleanup, delete, gc, verify, repair and
// the operation endpoints.
func TestAgentLifecycle(t *testing.T) {
	a := startAgent(t, agentOpts{})
	a.waitLeader()
	if _, err := os.Stat(filepath.Join(a.cfg.DataDir, "repository.key")); err != nil {
		t.Fatalf("the embedded repository's key file: %v", err)
	}

	// Version, health and an empty catalog.
	var v api.Version
	a.expect(http.StatusOK, http.MethodGet, "/v1/version", nil, &v)
	if v.Version != Version || !strings.HasPrefix(v.GoVersion, "go") {
		t.Errorf("version %+v", v)
	}
	if _, body := a.call(http.MethodGet, "/healthz", nil, nil); string(body) != "ok\n" {
		t.Errorf("healthz: %q", body)
	}
	var list api.BackupList
	a.expect(http.StatusOK, http.MethodGet, "/v1/backups", nil, &list)
	if list.Backups == nil || len(list.Backups) != 0 {
		t.Fatalf("empty catalog: %+v", list)
	}
	var ops api.OperationList
	a.expect(http.StatusOK, http.MethodGet, "/v1/operations", nil, &ops)
	if ops.Operations == nil || len(ops.Operations) != 0 {
		t.Fatalf("no operations yet: %s", mustJSON(t, ops))
	}

	// A backup; the same id again is the same operation.
	b1 := a.run("/v1/backups", api.StartBackupRequest{ID: "b1"})
	if b1.Kind != fsm.KindBackup || b1.BackupID == "" {
		t.Fatalf("backup %s", mustJSON(t, b1))
	}
	var again api.StartedOperation
	a.expect(http.StatusOK, http.MethodPost, "/v1/backups", `{"id":"b1"}`, &again)
	if !again.Existing || again.Operation.ID != "b1" || again.State != fsm.OpSucceeded {
		t.Errorf("a retried start: %s", mustJSON(t, again))
	}
	a.expectError(http.StatusConflict, api.CodeConflict, http.MethodPost, "/v1/gc", `{"id":"b1"}`)

	a.expect(http.StatusOK, http.MethodGet, "/v1/backups", nil, &list)
	if len(list.Backups) != 1 || list.Backups[0].BackupID != b1.BackupID || list.Backups[0].OperationID != "b1" {
		t.Fatalf("backups: %s", mustJSON(t, list))
	}
	var detail api.BackupDetail
	a.expect(http.StatusOK, http.MethodGet, "/v1/backups/"+b1.BackupID+"?files=true", nil, &detail)
	if detail.Summary.BackupID != b1.BackupID || len(detail.Manifest.Nodes) != 1 || detail.Manifest.Nodes[0].NodeID != "n1" {
		t.Fatalf("describe: %s", mustJSON(t, detail.Summary))
	}
	var paths []string
	for _, f := range detail.Manifest.Nodes[0].Files {
		paths = append(paths, f.Path)
	}
	for _, p := range []string{"a.txt", "dir/b.txt", "dir/sub/c.bin"} {
		if !slices.Contains(paths, p) {
			t.Errorf("describe ?files=true lacks %s: %v", p, paths)
		}
	}
	var plain api.BackupDetail
	a.expect(http.StatusOK, http.MethodGet, "/v1/backups/"+b1.BackupID, nil, &plain)
	if n := plain.Manifest.Nodes[0]; len(n.Files) != 0 || n.Stats != detail.Manifest.Nodes[0].Stats {
		t.Errorf("describe without files: %d files, stats %+v", len(n.Files), n.Stats)
	}
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodGet, "/v1/backups/not!an-id", nil)
	a.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodGet, "/v1/backups/"+strings.Repeat("0", len(b1.BackupID)), nil)

	// Damage the root; the preview of a restore into it counts the damage.
	writeTree(t, a.root, map[string]string{"a.txt": "changed, longer\n", "junk.txt": "junk"})
	if err := os.Remove(filepath.Join(a.root, "dir", "b.txt")); err != nil {
		t.Fatal(err)
	}
	var preview api.RestorePreview
	a.expect(http.StatusOK, http.MethodPost, "/v1/restores/preview", api.StartRestoreRequest{BackupID: b1.BackupID}, &preview)
	if len(preview.Nodes) != 1 {
		t.Fatalf("preview: %s", mustJSON(t, preview))
	}
	if p := preview.Nodes[0]; p.Node != "n1" || p.Mode != "mirror" || p.Create != 1 || p.Overwrite != 1 || p.Delete != 1 || !slices.Contains(p.DeletePaths, "junk.txt") {
		t.Errorf("preview of a restore into the damaged root: %s", mustJSON(t, p))
	}
	a.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodPost, "/v1/restores/preview", `{"backup_id":"`+strings.Repeat("0", len(b1.BackupID))+`"}`)

	// Into a target: additive, the root untouched.
	target := t.TempDir()
	writeTree(t, target, map[string]string{"keep.txt": "mine"})
	r1 := a.run("/v1/restores", api.StartRestoreRequest{ID: "r1", BackupID: b1.BackupID, Target: target})
	if r1.Kind != fsm.KindRestore || r1.BackupID != b1.BackupID {
		t.Errorf("restore %s", mustJSON(t, r1))
	}
	want := map[string]string{"keep.txt": "mine"}
	for p, c := range initialTree {
		want[p] = c
	}
	sameTree(t, "restore into a target", readTree(t, target), want)
	if got := readTree(t, a.root); got["junk.txt"] != "junk" {
		t.Errorf("a restore into a target touched the root: %v", keys(got))
	}

	// A selection, into another target; a pattern matching nothing and
	// an empty one are refused by name.
	sel := t.TempDir()
	a.run("/v1/restores", api.StartRestoreRequest{Target: sel, RestoreOptions: api.RestoreOptions{Select: []string{"dir/sub/**"}}})
	sameTree(t, "restore --select dir/sub/**", readTree(t, sel), map[string]string{"dir/sub/c.bin": initialTree["dir/sub/c.bin"]})
	if msg := a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/v1/restores",
		api.StartRestoreRequest{Target: sel, RestoreOptions: api.RestoreOptions{Select: []string{"nothing/here"}}}); !strings.Contains(msg, "nothing/here") {
		t.Errorf("a pattern matching nothing: %q does not name it", msg)
	}
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/v1/restores",
		api.StartRestoreRequest{Target: sel, RestoreOptions: api.RestoreOptions{Select: []string{""}}})
	a.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodPost, "/v1/restores", `{"backup_id":"`+strings.Repeat("0", len(b1.BackupID))+`"}`)

	// Into the root (the latest backup): the root mirrors the backup.
	a.run("/v1/restores", api.StartRestoreRequest{})
	sameTree(t, "restore into the root", readTree(t, a.root), initialTree)

	// A second backup; cleanup keeping the newest one.
	writeTree(t, a.root, map[string]string{"new.txt": "new"})
	b2 := a.run("/v1/backups", api.StartBackupRequest{})
	var cp api.CleanupPreview
	a.expect(http.StatusOK, http.MethodGet, "/v1/cleanups/preview?keep_last=1", nil, &cp)
	if cp.Policy.KeepLast != 1 || len(cp.Decisions) != 2 || !cp.Decisions[0].Keep || cp.Decisions[0].BackupID != b2.BackupID ||
		cp.Decisions[1].Keep || cp.Decisions[1].BackupID != b1.BackupID {
		t.Fatalf("cleanup preview keep_last=1: %s", mustJSON(t, cp))
	}
	a.expect(http.StatusOK, http.MethodGet, "/v1/cleanups/preview?keep_within=720h&min_keep=1", nil, &cp)
	if cp.Policy.MinKeep != 1 || len(cp.Decisions) != 2 || !cp.Decisions[0].Keep || !cp.Decisions[1].Keep {
		t.Errorf("cleanup preview keep_within=720h: %s", mustJSON(t, cp))
	}
	for _, q := range []string{"keep_last=x", "min_keep=-1", "keep_within=soon"} {
		a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodGet, "/v1/cleanups/preview?"+q, nil)
	}
	a.run("/v1/cleanups", api.StartCleanupRequest{CleanupOptions: api.CleanupOptions{Policy: &storage.RetentionPolicy{KeepLast: 1}}})
	a.expect(http.StatusOK, http.MethodGet, "/v1/backups", nil, &list)
	if len(list.Backups) != 1 || list.Backups[0].BackupID != b2.BackupID {
		t.Fatalf("after cleanup keep_last=1: %s", mustJSON(t, list))
	}

	// Repository maintenance.
	a.run("/v1/gc", api.StartGCRequest{ID: "gc1"})
	a.run("/v1/verifications", api.StartVerifyRequest{VerifyOptions: api.VerifyOptions{ReadData: true}})
	a.run("/v1/repairs", api.StartRepairRequest{RepairOptions: api.RepairOptions{Kind: "index", DryRun: true}})
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/v1/repairs", `{"kind":"everything"}`)

	// Delete the last backup.
	a.run("/v1/deletions", api.StartDeleteRequest{BackupIDs: []string{b2.BackupID}})
	a.expect(http.StatusOK, http.MethodGet, "/v1/backups", nil, &list)
	if len(list.Backups) != 0 {
		t.Fatalf("after delete: %s", mustJSON(t, list))
	}

	// The operation endpoints.
	a.expect(http.StatusOK, http.MethodGet, "/v1/operations?limit=3", nil, &ops)
	if len(ops.Operations) != 3 {
		t.Errorf("limit=3 listed %d operations", len(ops.Operations))
	}
	a.expect(http.StatusOK, http.MethodGet, "/v1/operations?limit=100000", nil, &ops)
	if len(ops.Operations) < 10 {
		t.Errorf("all operations: %d, want every one of the 10 started", len(ops.Operations))
	}
	var op fsm.Operation
	a.expect(http.StatusOK, http.MethodGet, "/v1/operations/gc1?wait=30s&revision=1", nil, &op)
	if op.ID != "gc1" || op.State != fsm.OpSucceeded {
		t.Errorf("a finished operation with wait: %s", mustJSON(t, op))
	}
	a.expect(http.StatusOK, http.MethodGet, "/v1/operations/gc1?consistent=true", nil, &op)
	a.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodGet, "/v1/operations/nope", nil)
	for _, q := range []string{"/v1/operations?limit=-2", "/v1/operations/gc1?wait=forever", "/v1/operations/gc1?wait=-1s", "/v1/operations/gc1?revision=x"} {
		a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodGet, q, nil)
	}

	// Metrics count the requests by route and the operations by outcome.
	a.expectMetrics(
		`crayfish_http_requests_total{code="202",route="POST /v1/backups"}`,
		`crayfish_http_requests_total{code="400",route="GET /v1/cleanups/preview"} 3`,
		`crayfish_operations_finished_total{kind="backup",state="succeeded"} 2`,
		`crayfish_step_duration_seconds_count{step="snapshot"}`,
	)
}

// TestAgentInternalAPI: the node-to-node endpoints of a lone agent.
func TestAgentInternalAPI(t *testing.T) {
	a := startAgent(t, agentOpts{})
	a.waitLeader()
	b := a.run("/v1/backups", api.StartBackupRequest{ID: "b1"})

	// The local steps went through the job table and the fence.
	var journal worker.FenceJournal
	a.expect(http.StatusOK, http.MethodGet, "/internal/v1/fence", nil, &journal)
	// The first admission is the coordinator's own epoch (fenceAll).
	if len(journal.Admitted) < 2 || journal.Admitted[0].OpID != "-" || journal.Admitted[1].OpID != "b1" || journal.RefusedStale != 0 {
		t.Fatalf("fence journal: %s", mustJSON(t, journal))
	}
	var audit []worker.JobInterval
	a.expect(http.StatusOK, http.MethodGet, "/internal/v1/jobs", nil, &audit)
	if len(audit) == 0 {
		t.Fatal("no job in the audit after a backup")
	}
	snap := slices.IndexFunc(b.Steps, func(s fsm.Step) bool { return s.Name == wire.StepSnapshot })
	epoch := strconv.FormatUint(b.Epoch, 10)
	var st wire.JobStatus
	a.expect(http.StatusOK, http.MethodGet, "/internal/v1/jobs/b1/"+strconv.Itoa(snap)+"?epoch="+epoch+"&wait=1s", nil, &st)
	if st.State != wire.JobDone || len(st.Result) == 0 {
		t.Errorf("snapshot job: %s", mustJSON(t, st))
	}
	a.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodGet, "/internal/v1/jobs/other/0?epoch="+epoch, nil)
	for _, p := range []string{"/internal/v1/jobs/b1/x?epoch=1", "/internal/v1/jobs/b1/0?epoch=x", "/internal/v1/jobs/b1/0?epoch=1&wait=x"} {
		a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodGet, p, nil)
	}

	// Raft state: a member of its own one-node cluster.
	var rs raftStateReply
	a.expect(http.StatusOK, http.MethodGet, "/internal/v1/raft-state", nil, &rs)
	if !rs.HasState || len(rs.Servers) != 1 || rs.Servers[0].ID != "n1" || rs.Servers[0].Address != a.cfg.RaftAddr {
		t.Errorf("raft state: %+v", rs)
	}

	// A node's own restore preview.
	var np api.NodeRestorePreview
	a.expect(http.StatusOK, http.MethodPost, "/internal/v1/restore-preview",
		wire.PreviewRequest{Restore: wire.RestoreRequest{BackupID: b.BackupID, Target: t.TempDir()}}, &np)
	if np.Create != int64(len(initialTree)) || np.Mode != "additive" || !np.Fits {
		t.Errorf("node preview into an empty target: %s", mustJSON(t, np))
	}

	// Step starts: a step without a name, one for another repository.
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/internal/v1/jobs", `{"ref":{"op_id":"x","epoch":1,"step":0}}`)
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/internal/v1/jobs",
		wire.StepRequest{Ref: wire.StepRef{OpID: "x", Epoch: b.Epoch, Step: 0, Repo: "another"}, Name: wire.StepRelease})
	a.expect(http.StatusOK, http.MethodPost, "/internal/v1/jobs",
		wire.StepRequest{Ref: wire.StepRef{OpID: "x", Epoch: b.Epoch, Step: 0}, Name: wire.StepRelease}, &st)
	a.expect(http.StatusOK, http.MethodGet, "/internal/v1/jobs/x/0?epoch="+epoch+"&wait=10s", nil, &st)
	if st.State != wire.JobDone {
		t.Errorf("release of an unknown operation: %s", mustJSON(t, st))
	}

	// A new coordinator's epoch is admitted; an older one is stale from
	// then on.
	var fr FenceRequest
	a.expect(http.StatusOK, http.MethodPost, "/internal/v1/fence", FenceRequest{Epoch: b.Epoch + 10}, &fr)
	if fr.Epoch != b.Epoch+10 {
		t.Errorf("fence answered %d, want %d", fr.Epoch, b.Epoch+10)
	}
	a.expectError(http.StatusConflict, api.CodeStaleEpoch, http.MethodPost, "/internal/v1/fence", FenceRequest{Epoch: b.Epoch})
	a.expectError(http.StatusConflict, api.CodeStaleEpoch, http.MethodGet, "/internal/v1/jobs/b1/0?epoch="+epoch, nil)
	a.expect(http.StatusOK, http.MethodGet, "/internal/v1/fence", nil, &journal)
	if journal.RefusedStale != 2 {
		t.Errorf("refused stale calls: %d, want 2", journal.RefusedStale)
	}

	// Membership by hand: what is missing, and the node itself.
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/v1/cluster/remove", `{}`)
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/v1/cluster/remove", `{"node":"n1"}`)
	a.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodPost, "/v1/cluster/remove", `{"node":"ghost"}`)
}

// TestFailedBackup: a backup of a root that is gone fails with the
// snapshot step's error; the failure is counted and the catalog stays
// empty.
func TestFailedBackup(t *testing.T) {
	a := startAgent(t, agentOpts{})
	a.waitLeader()
	if err := os.RemoveAll(a.root); err != nil {
		t.Fatal(err)
	}
	op := a.waitOp(a.start("/v1/backups", api.StartBackupRequest{ID: "doomed"}).ID)
	if op.State != fsm.OpFailed || !strings.Contains(op.Error, wire.StepSnapshot) {
		t.Fatalf("a backup of a missing root: %s %q", op.State, op.Error)
	}
	var list api.BackupList
	a.expect(http.StatusOK, http.MethodGet, "/v1/backups", nil, &list)
	if len(list.Backups) != 0 {
		t.Errorf("a failed backup is listed: %s", mustJSON(t, list))
	}
	a.expectMetrics(`crayfish_step_attempt_failures_total{reason="failed",step="snapshot"}`, `crayfish_operations_finished_total{kind="backup",state="failed"} 1`)
}
