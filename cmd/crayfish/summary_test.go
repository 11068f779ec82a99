package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

func raw(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpSummary: a finished operation says what it did, from its steps'
// results.
func TestOpSummary(t *testing.T) {
	done := func(name string, res any) fsm.Step {
		return fsm.Step{Name: name, State: fsm.StepDone, Result: raw(t, res)}
	}
	for _, c := range []struct {
		what string
		op   api.Operation
		want string
	}{
		{"backup", api.Operation{Kind: fsm.KindBackup, Steps: []fsm.Step{
			done(wire.StepUpload, wire.UploadResult{UploadedBytes: 3 << 20, StoredBytes: 1 << 20}),
			done(wire.StepUpload, wire.UploadResult{UploadedBytes: 1 << 20, StoredBytes: 1 << 20}),
			done(wire.StepManifest, map[string]any{"files": 12, "bytes": 10 << 20})}},
			"12 files, 10 MiB; uploaded 4 MiB new from 2 nodes (stored 2 MiB)"},
		{"cleanup", api.Operation{Kind: fsm.KindCleanup, Steps: []fsm.Step{
			done(wire.StepForget, map[string]any{"deleted": []string{"b1", "b2", "b3", "b4"}, "deleted_log_archives": []string{"l1"}}),
			done(wire.StepGC, storage.GCReport{BytesFreed: 5 << 20, PacksDeleted: 2, PacksRepacked: 1, LiveBlobs: 40, DeadBlobs: 9})}},
			"forgot 4 backups (b1, b2, b3, ...); deleted 1 log archives; freed 5 MiB (2 packs deleted, 1 repacked; 40 live blobs, 9 dead)"},
		{"verify with problems", api.Operation{Kind: fsm.KindVerify, Steps: []fsm.Step{
			{Name: wire.StepVerify, State: fsm.StepFailed, Result: raw(t, storage.VerifyReport{Snapshots: 3, LogArchives: 1, Packs: 5, Blobs: 50,
				PacksRead: 5, BytesRead: 2048, Problems: []storage.Problem{{Kind: storage.ProblemMissing}}})}}},
			"checked 3 backups, 1 log archives, 5 packs, 50 blobs; read 5 packs (2 KiB); found 1 problems"},
		{"drill", api.Operation{Kind: fsm.KindDrill, BackupID: "b1", Steps: []fsm.Step{
			done(wire.StepDrill, wire.RestoreResult{Verified: 10, VerifiedBytes: 3 << 20}),
			done(wire.StepDrill, wire.RestoreResult{Verified: 5, VerifiedBytes: 1 << 20})}},
			"restored and read back 15 files, 4 MiB, of 2 nodes of backup b1: equal to the backup"},
		{"nothing recorded", api.Operation{Kind: fsm.KindDelete, Steps: []fsm.Step{{Name: wire.StepDelete, State: fsm.StepRunning}}}, ""},
	} {
		if got := opSummary(&c.op); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.what, got, c.want)
		}
	}
}

// TestStepName: plugin restore steps by their action.
func TestStepName(t *testing.T) {
	for in, want := range map[string]string{
		`{"plugin":{"action":"load"},"source_node":"n1"}`: "restore:load",
		`{"cleanup":true}`:     "restore:cleanup",
		`{"source_node":"n1"}`: "restore",
		`not json`:             "restore",
	} {
		if got := stepName(fsm.Step{Name: wire.StepRestore, Input: json.RawMessage(in)}); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
	if got := stepName(fsm.Step{Name: wire.StepDrill, Input: json.RawMessage(`{"source_node":"old2"}`)}); got != "drill:old2" {
		t.Errorf("drill step: %q", got)
	}
	if got := stepLabel(6, 12, fsm.Step{Name: wire.StepRestore, Node: "n2", Input: json.RawMessage(`{"plugin":{"action":"load"}}`)}); !strings.Contains(got, "step 7/12 restore:load@n2") {
		t.Errorf("label %q", got)
	}
}
