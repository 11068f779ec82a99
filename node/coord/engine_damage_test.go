package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/plugin/files"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// damageWorker's restore meets damage after delay, or with no damage
// returns once delay has passed unless it is cancelled first.
type damageWorker struct {
	fakeWorker
	delay     time.Duration
	damaged   bool
	cancelled chan bool // what the restore saw
}

func (w *damageWorker) Restore(ctx context.Context, ref wire.StepRef, _ wire.RestoreRequest, _ wire.ProgressFunc) (wire.RestoreResult, error) {
	w.record("restore", ref)
	select {
	case <-time.After(w.delay):
		w.cancelled <- false
	case <-ctx.Done():
		w.cancelled <- true
		return wire.RestoreResult{}, ctx.Err()
	}
	if !w.damaged {
		return wire.RestoreResult{Files: 7}, nil
	}
	res := wire.RestoreResult{Files: 5, DamagedTotal: 1, Damaged: []wire.DamagedFile{{Path: "x", ChunksTotal: 1, Chunks: []wire.DamagedChunk{{Problem: wire.DamageMissing}}}}}
	return res, wire.Permanent(wire.MarkDamaged(fmt.Errorf("%w: 1 file not restored", wire.ErrDamaged)))
}

// TestEngineDamagedRestoreLetsSiblingsFinish: a restore step that fails
// on damage does not stop the other nodes' restore steps; each damaged
// step is recorded failed with its result, the clean one done.
func TestEngineDamagedRestoreLetsSiblingsFinish(t *testing.T) {
	workers := map[string]*damageWorker{
		"a": {damaged: true, delay: 0},
		"b": {delay: 300 * time.Millisecond},
		"c": {damaged: true, delay: 50 * time.Millisecond},
	}
	for _, w := range workers {
		w.cancelled = make(chan bool, 1)
	}
	ops, store, _ := startEngineWith(t, func(n string) (wire.Worker, error) { return workers[n], nil })
	op := &fsm.Operation{ID: "r1", Kind: fsm.KindRestore, BackupID: "b1",
		Steps: filesRestoreSteps(t, "a", "b", "c")}
	done := runOp(t, ops, store, op)
	if done.State != fsm.OpFailed {
		t.Fatalf("op %s", done.State)
	}
	if <-workers["b"].cancelled {
		t.Error("the clean node's restore was cancelled by another node's damage")
	}
	for _, st := range done.Steps {
		if st.Name != wire.StepRestore {
			continue
		}
		var res wire.RestoreResult
		if err := json.Unmarshal(st.Result, &res); err != nil {
			t.Fatalf("step %s@%s (%s): result %q: %v", st.Name, st.Node, st.State, st.Result, err)
		}
		switch st.Node {
		case "b":
			if st.State != fsm.StepDone || res.Files != 7 {
				t.Errorf("clean node: %s %+v", st.State, res)
			}
		default:
			if st.State != fsm.StepFailed || res.DamagedTotal != 1 || !strings.Contains(st.Error, "damaged") || st.Attempts != 1 {
				t.Errorf("damaged node %s: %s attempts %d %q %+v", st.Node, st.State, st.Attempts, st.Error, res)
			}
		}
	}
	if last := done.Steps[len(done.Steps)-1]; last.Name != wire.StepUnlock || last.State != fsm.StepDone {
		t.Errorf("last step %s %s", last.Name, last.State)
	}
}

// filesRestoreSteps is the plan of a files restore of nodes, each from
// the backed-up node of its name.
func filesRestoreSteps(t *testing.T, nodes ...string) []fsm.Step {
	t.Helper()
	assign := map[string]wire.RestoreInput{}
	req := plugin.RestoreRequest{BackupID: "b1"}
	for _, n := range nodes {
		assign[n] = wire.RestoreInput{SourceNode: n}
		req.Nodes = append(req.Nodes, plugin.NodeAssignment{Node: n, Source: n})
	}
	plan, err := files.Driver{}.PlanRestore(req)
	if err != nil {
		t.Fatal(err)
	}
	_, steps, err := restoreSteps(plan, assign)
	if err != nil {
		t.Fatal(err)
	}
	return steps
}
