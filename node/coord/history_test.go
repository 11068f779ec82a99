package coord

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

func TestHistoryProblemsNameLostBackups(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	backup := func(id, bid string, m int, st fsm.OpState) *fsm.Operation {
		fin := at(m + 1)
		return &fsm.Operation{ID: id, Kind: fsm.KindBackup, BackupID: bid, State: st, CreatedAt: at(m), FinishedAt: &fin}
	}
	forgot, _ := json.Marshal(ForgetResult{Deleted: []string{"b-forgotten"}})
	ops := []*fsm.Operation{ // newest first, as Operations returns them
		backup("op-new", "b-new-lost", 90, fsm.OpSucceeded),
		{ID: "op-cleanup-failed", Kind: fsm.KindCleanup, State: fsm.OpFailed, CreatedAt: at(80),
			Steps: []fsm.Step{{Name: wire.StepLock, State: fsm.StepDone}, {Name: wire.StepForget, State: fsm.StepFailed}}},
		backup("op-unsure", "b-unsure", 70, fsm.OpSucceeded),
		{ID: "op-cleanup", Kind: fsm.KindCleanup, State: fsm.OpSucceeded, CreatedAt: at(60),
			Steps: []fsm.Step{{Name: wire.StepForget, State: fsm.StepDone, Result: forgot}}},
		{ID: "op-cleanup-never", Kind: fsm.KindCleanup, State: fsm.OpFailed, CreatedAt: at(55),
			Steps: []fsm.Step{{Name: wire.StepLock, State: fsm.StepFailed}, {Name: wire.StepForget, State: fsm.StepSkipped}}},
		{ID: "op-delete", Kind: fsm.KindDelete, State: fsm.OpFailed, CreatedAt: at(50), Params: fsm.Params{BackupIDs: []string{"b-deleted"}}},
		backup("op-failed", "b-failed", 40, fsm.OpFailed),
		backup("op-present", "b-present", 30, fsm.OpSucceeded),
		backup("op-deleted", "b-deleted", 20, fsm.OpSucceeded),
		backup("op-forgotten", "b-forgotten", 10, fsm.OpSucceeded),
	}
	probs := historyProblems(ops, []string{"b-present"})
	if len(probs) != 1 {
		t.Fatalf("problems %+v, want only b-new-lost", probs)
	}
	p := probs[0]
	if p.Kind != ProblemLostSnapshot || p.Object != "snapshots/b-new-lost" || !slices.Equal(p.Backups, []string{"b-new-lost"}) ||
		!strings.Contains(p.Detail, "op-new") {
		t.Errorf("problem %+v", p)
	}

	// Without the failed cleanup, the backup before it is reported too.
	probs = historyProblems(slices.Delete(slices.Clone(ops), 1, 2), []string{"b-present"})
	var got []string
	for _, p := range probs {
		got = append(got, p.Backups[0])
	}
	if !slices.Equal(got, []string{"b-new-lost", "b-unsure"}) {
		t.Errorf("lost %v, want b-new-lost and b-unsure", got)
	}
}

// TestHistoryCountsRepairForget: backups a repair of snapshots forgot are
// removed, not lost; a dry run removes nothing.
func TestHistoryCountsRepairForget(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rep, _ := json.Marshal(storage.RepairReport{Kind: "snapshots", Snapshots: &storage.RepairSnapshotsReport{Forgotten: []string{"b-gone"}}})
	dry, _ := json.Marshal(storage.RepairReport{Kind: "snapshots", DryRun: true, Snapshots: &storage.RepairSnapshotsReport{}})
	ops := []*fsm.Operation{
		{ID: "op-repair", Kind: fsm.KindRepair, State: fsm.OpSucceeded, CreatedAt: t0.Add(time.Hour),
			Steps: []fsm.Step{{Name: wire.StepRepair, State: fsm.StepDone, Result: rep}}},
		{ID: "op-dry", Kind: fsm.KindRepair, State: fsm.OpSucceeded, CreatedAt: t0.Add(30 * time.Minute),
			Steps: []fsm.Step{{Name: wire.StepRepair, State: fsm.StepDone, Result: dry}}},
		{ID: "op-b2", Kind: fsm.KindBackup, BackupID: "b-lost", State: fsm.OpSucceeded, CreatedAt: t0.Add(time.Minute)},
		{ID: "op-b1", Kind: fsm.KindBackup, BackupID: "b-gone", State: fsm.OpSucceeded, CreatedAt: t0},
	}
	probs := historyProblems(ops, nil)
	if len(probs) != 1 || probs[0].Backups[0] != "b-lost" {
		t.Fatalf("problems %+v, want only b-lost", probs)
	}
}
