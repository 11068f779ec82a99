package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// TestCleanupOfManyBackupsFitsTheLog: a retention decision over 25,000
// backups that drops all but 1,000 makes a cleanup whose start command
// fits a Raft entry (the full decisions did not at 10,000: 1,087,463
// bytes), deletes the oldest maxForget first, counts the rest, and
// records a result within the budget while the history still learns of
// every backup it deleted.
func TestCleanupOfManyBackupsFitsTheLog(t *testing.T) {
	const total, keep = 25_000, 1_000
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var decisions []storage.Decision // newest first, as ApplyRetention
	repo := &memManifests{m: map[string]*storage.Manifest{}}
	for i := total - 1; i >= 0; i-- {
		id := newBackupID(fmt.Sprintf("op-%d", i), t0.Add(time.Duration(i)*time.Second))
		decisions = append(decisions, storage.Decision{BackupID: id, Keep: i >= total-keep, Reasons: []string{"last 1000"}})
		repo.m[id] = &storage.Manifest{BackupID: id}
	}
	full, _ := json.Marshal(decisions)
	if len(full) < fsm.MaxEntryBytes {
		t.Fatalf("the full decisions are %d bytes: the test no longer shows the limit", len(full))
	}
	plan := cleanupPlan(newForgetInput(storage.RetentionPolicy{KeepLast: keep}, decisions))
	if plan[1].Name != wire.StepForget {
		t.Fatalf("cleanup plan %+v: step 1 is not the forget step", plan)
	}
	op := &fsm.Operation{ID: "cleanup-1", Kind: fsm.KindCleanup, Steps: plan, CreatedAt: t0}
	b, err := fsm.Command{Type: fsm.CmdStart, Time: t0, OpID: op.ID, Op: op}.Encode()
	if err != nil {
		t.Fatalf("start command: %v", err)
	}
	t.Logf("start command of a cleanup dropping %d of %d backups: %d bytes", total-keep, total, len(b))
	var in ForgetInput
	if err := json.Unmarshal(plan[1].Input, &in); err != nil {
		t.Fatal(err)
	}
	oldest := decisions[len(decisions)-1].BackupID
	if len(in.Drop) != maxForget || in.Drop[0] != oldest || in.Kept != keep || in.Remaining != total-keep-maxForget {
		t.Fatalf("input: %d dropped (first %s, want %s), kept %d, remaining %d", len(in.Drop), in.Drop[0], oldest, in.Kept, in.Remaining)
	}
	if !slices.IsSorted(in.Drop) {
		t.Fatal("drop list not oldest first")
	}

	e := &Engine{repo: repo}
	res, err := e.forget(context.Background(), op, plan[1])
	if err != nil {
		t.Fatal(err)
	}
	if res.DeletedTotal != maxForget || res.Kept != keep || res.Remaining != total-keep-maxForget || len(res.Deleted) == 0 || len(res.Deleted) >= maxForget {
		t.Fatalf("result: deleted %d listed of %d, kept %d, remaining %d", len(res.Deleted), res.DeletedTotal, res.Kept, res.Remaining)
	}
	if left := len(repo.m); left != total-maxForget {
		t.Fatalf("%d backups left, want %d", left, total-maxForget)
	}
	raw, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recordable(plan[1], raw, nil); err != nil {
		t.Fatalf("result of %d bytes not recordable: %v", len(raw), err)
	}

	// The history excuses every deleted backup, not only those listed.
	plan[1].State, plan[1].Result = fsm.StepDone, raw
	done := &fsm.Operation{ID: op.ID, Kind: fsm.KindCleanup, State: fsm.OpSucceeded, Steps: plan, CreatedAt: t0.Add(time.Duration(total) * time.Second)}
	last := in.Drop[len(in.Drop)-1]
	backupOp := &fsm.Operation{ID: "op-last", Kind: fsm.KindBackup, BackupID: last, State: fsm.OpSucceeded, CreatedAt: t0}
	if probs := historyProblems([]*fsm.Operation{done, backupOp}, nil); len(probs) != 0 {
		t.Fatalf("a backup the cleanup deleted (not in its cut result) is reported lost: %+v", probs)
	}
}
