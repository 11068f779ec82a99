package coord

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

func TestBackupIDsSortInStartOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 50 {
		// Same second, later starts; op ids chosen so their hashes do not sort in order.
		ids = append(ids, newBackupID(string(rune('z'-i%26))+"op", t0.Add(time.Duration(i)*1500*time.Microsecond)))
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatalf("backup ids do not sort in start order: %v", ids)
	}
	for _, id := range ids {
		if !storage.ValidBackupID(id) {
			t.Fatalf("generated invalid backup id %q", id)
		}
	}
	if a, b := newBackupID("x", t0), newBackupID("x", t0.Add(time.Nanosecond)); a != b {
		t.Fatalf("backup id depends on more than (op id, time to the µs): %s %s", a, b)
	}
	if a, b := newBackupID("x", t0), newBackupID("y", t0); a == b {
		t.Fatalf("different operations at the same time got the same backup id %s", a)
	}
}

// TestRestoreSteps: a plugin's phases become steps of consecutive phase
// numbers inside lock ... unlock; a staged plan ends with a cleanup on
// every node, run always; an action on a node the restore does not
// involve is a planner bug, refused.
func TestRestoreSteps(t *testing.T) {
	assign := map[string]wire.RestoreInput{"n2": {SourceNode: "b2"}, "n1": {SourceNode: "b1"}}
	plan := plugin.Plan{Staged: true, Phases: []plugin.Phase{
		{Actions: []plugin.Action{{Node: "n1", Input: json.RawMessage(`{"a":1}`)}, {Node: "n2", Input: json.RawMessage(`{"a":1}`)}}},
		{Actions: []plugin.Action{{Node: "n1", Input: json.RawMessage(`{"a":2}`), Always: true}}},
	}}
	first, steps, err := restoreSteps(plan, assign)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		var in wire.RestoreInput
		_ = json.Unmarshal(s.Input, &in)
		got = append(got, fmt.Sprintf("%s:%s<-%s@%d plugin=%s cleanup=%v always=%v", s.Name, s.Node, in.SourceNode, s.Phase, in.Plugin, in.Cleanup, s.Always))
	}
	want := []string{
		"lock:<-@0 plugin= cleanup=false always=false",
		`restore:n1<-b1@4 plugin={"a":1} cleanup=false always=false`,
		`restore:n2<-b2@4 plugin={"a":1} cleanup=false always=false`,
		`restore:n1<-b1@5 plugin={"a":2} cleanup=false always=true`,
		"restore:n1<-b1@6 plugin= cleanup=true always=true",
		"restore:n2<-b2@6 plugin= cleanup=true always=true",
		"unlock:<-@0 plugin= cleanup=false always=true",
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if string(first["n2"].Plugin) != `{"a":1}` || first["n1"].SourceNode != "b1" {
		t.Errorf("first-phase inputs %+v", first)
	}
	plan.Phases[1].Actions[0].Node = "n9"
	if _, _, err := restoreSteps(plan, assign); err == nil || !strings.Contains(err.Error(), "n9") {
		t.Errorf("an action on an uninvolved node: %v", err)
	}
	if _, _, err := restoreSteps(plugin.Plan{}, assign); err == nil {
		t.Error("an empty plan accepted")
	}
}

// A repair rewrites the index and deletes packs: it must hold the
// exclusive lock, like gc, and release it whatever happens.
func TestRepairPlanIsExclusive(t *testing.T) {
	if lockKind(fsm.KindRepair) != storage.LockExclusive {
		t.Fatalf("repair takes a %s lock", lockKind(fsm.KindRepair))
	}
	p := repairPlan()
	if len(p) != 3 || p[0].Name != wire.StepLock || p[1].Name != wire.StepRepair || p[2].Name != wire.StepUnlock || !p[2].Always {
		t.Fatalf("plan %+v", p)
	}
}

// TestEarlierResults: a restore step gets the plugin results of the done
// restore steps before it, in step order, from the replicated state only.
func TestEarlierResults(t *testing.T) {
	res := func(plugin string) json.RawMessage {
		b, _ := json.Marshal(wire.RestoreResult{Plugin: json.RawMessage(plugin)})
		return b
	}
	op := &fsm.Operation{Steps: []fsm.Step{
		{Name: wire.StepLock, State: fsm.StepDone, Result: json.RawMessage(`{}`)},
		{Name: wire.StepRestore, Node: "a", State: fsm.StepDone, Result: res(`{"id":"a"}`)},
		{Name: wire.StepRestore, Node: "b", State: fsm.StepDone, Result: res(``)},             // no plugin result
		{Name: wire.StepRestore, Node: "c", State: fsm.StepFailed, Result: res(`{"id":"c"}`)}, // not done
		{Name: wire.StepRestore, Node: "d", State: fsm.StepDone, Result: res(`{"id":"d"}`)},
		{Name: wire.StepRestore, Node: "e", State: fsm.StepDone, Result: res(`{"id":"e"}`)}, // not before step 5
	}}
	got := earlierResults(op, 5)
	if len(got) != 2 || got[0].Node != "a" || string(got[0].Result) != `{"id":"a"}` || got[1].Node != "d" {
		t.Fatalf("earlierResults = %+v", got)
	}
	if len(earlierResults(op, 99)) != 3 || len(earlierResults(op, 0)) != 0 {
		t.Error("earlierResults out of range")
	}
}
