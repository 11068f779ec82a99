package coord

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// ProblemLostSnapshot is the verify problem of a backup the operation
// history says was committed, and nothing in the history removed, whose
// snapshot object the repository no longer has: the backup vanished.
const ProblemLostSnapshot = "lost-snapshot"

// historyProblems compares the backups the repository lists (present)
// with the operation history ops: every backup operation that succeeded,
// whose backup no delete or cleanup in the history removed and whose
// snapshot is gone is a problem naming the backup and the operation.
//
// The check covers the history the cluster holds (the FSM keeps the
// newest fsm.MaxFinishedOps finished operations). It is conservative
// where the history cannot say what was deleted: a delete operation
// counts as removing every backup it names, whatever its outcome, and a
// cleanup whose forget step ended without a recorded result (it failed
// part way) may have removed any backup older than it.
func historyProblems(ops []*fsm.Operation, present []string) []storage.Problem {
	have := make(map[string]bool, len(present))
	for _, id := range present {
		have[id] = true
	}
	removed := map[string]bool{}
	var unsureBefore time.Time // backups older than this may have been forgotten unrecorded
	for _, op := range ops {
		switch op.Kind {
		case fsm.KindDelete:
			for _, id := range op.Params.BackupIDs {
				removed[id] = true
			}
		case fsm.KindRepair:
			// repair snapshots --forget deletes the snapshots of backups
			// whose content is gone; its report names them.
			for _, st := range op.Steps {
				if st.Name != wire.StepRepair {
					continue
				}
				var rep storage.RepairReport
				switch {
				case st.State == fsm.StepDone && json.Unmarshal(st.Result, &rep) == nil:
					if rep.Snapshots != nil {
						for _, id := range rep.Snapshots.Forgotten {
							removed[id] = true
						}
					}
				case st.State == fsm.StepPending || st.State == fsm.StepSkipped:
				default:
					if repairMayForget(op) && op.CreatedAt.After(unsureBefore) {
						unsureBefore = op.CreatedAt
					}
				}
			}
		case fsm.KindCleanup:
			for _, st := range op.Steps {
				if st.Name != wire.StepForget {
					continue
				}
				var fr ForgetResult
				var in ForgetInput
				switch {
				case st.State == fsm.StepDone && len(st.Input) > 0 && json.Unmarshal(st.Input, &in) == nil:
					// A done step deleted every backup its plan drops (the
					// result lists only the first).
					for _, id := range in.drops() {
						removed[id] = true
					}
				case st.State == fsm.StepDone && json.Unmarshal(st.Result, &fr) == nil:
					for _, id := range fr.Deleted {
						removed[id] = true
					}
				case st.State == fsm.StepPending || st.State == fsm.StepSkipped:
					// It never ran: it deleted nothing.
				default:
					if op.CreatedAt.After(unsureBefore) {
						unsureBefore = op.CreatedAt
					}
				}
			}
		}
	}
	var out []storage.Problem
	for _, op := range ops {
		if op.Kind != fsm.KindBackup || op.State != fsm.OpSucceeded || op.BackupID == "" {
			continue
		}
		if have[op.BackupID] || removed[op.BackupID] || op.CreatedAt.Before(unsureBefore) {
			continue
		}
		finished := "-"
		if op.FinishedAt != nil {
			finished = op.FinishedAt.UTC().Format(time.RFC3339)
		}
		out = append(out, storage.Problem{
			Object: "snapshots/" + op.BackupID, Kind: ProblemLostSnapshot, Backups: []string{op.BackupID},
			Detail: fmt.Sprintf("backup %s, committed by operation %s at %s and removed by no delete or cleanup in the history, has no snapshot in the repository",
				op.BackupID, op.ID, finished),
		})
	}
	return out
}

// repairMayForget reports whether a repair operation could have deleted
// snapshots: a repair of snapshots with forget that is not a dry run.
func repairMayForget(op *fsm.Operation) bool {
	var o api.RepairOptions
	if json.Unmarshal(op.Params.Options, &o) != nil {
		return true // unknown: assume the worst, report nothing it covers
	}
	return o.Kind == "snapshots" && o.Forget && !o.DryRun
}
