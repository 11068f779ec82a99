package coord

import (
	"encoding/json"
	"errors"
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

// TestMapNodesReshape: for a driver that reshapes, nothing left over is
// refused: current nodes without a counterpart are Clear, backed-up nodes
// without a current one come back unplaced, in backup order; a single
// node without a counterpart is Clear for the driver to refuse. Other
// drivers keep today's refusals (TestMapRestore).
func TestMapNodesReshape(t *testing.T) {
	cur := []NodeInfo{{"a", ""}, {"n2", ""}, {"n3", ""}}
	bak := []NodeInfo{{"a", ""}, {"old2", ""}, {"old3", ""}, {"old4", ""}}
	// Three nodes' backup onto one: two unplaced.
	got, unplaced, err := mapNodes(cur[:1], bak[:3], nil, false, "", true)
	if err != nil || len(got) != 1 || got["a"].SourceNode != "a" || !slices.Equal(unplaced, []string{"old2", "old3"}) {
		t.Fatalf("three onto one: %v %v %v", got, unplaced, err)
	}
	// Two nodes' backup onto three: the third is Clear, without clear_unmapped.
	got, unplaced, err = mapNodes(cur, []NodeInfo{{"old1", ""}, {"old2", ""}}, nil, false, "", true)
	if err != nil || len(unplaced) != 0 || got["a"].SourceNode != "old1" || got["n2"].SourceNode != "old2" || !got["n3"].Clear {
		t.Fatalf("two onto three: %v %v %v", got, unplaced, err)
	}
	// An explicit mapping still decides first; the rest is unplaced.
	got, unplaced, err = mapNodes(cur[:2], bak, map[string]string{"n2": "old4"}, false, "", true)
	if err != nil || got["n2"].SourceNode != "old4" || got["a"].SourceNode != "a" || !slices.Equal(unplaced, []string{"old2", "old3"}) {
		t.Fatalf("mapping with unplaced: %v %v %v", got, unplaced, err)
	}
	// One node without a counterpart: Clear (the driver refuses it).
	got, unplaced, err = mapNodes(cur, bak[1:2], nil, false, "n3", true)
	if err != nil || len(got) != 1 || !got["n3"].Clear || unplaced != nil {
		t.Fatalf("--node n3: %v %v %v", got, unplaced, err)
	}
	// Bad mappings are refused all the same.
	if _, _, err := mapNodes(cur, bak, map[string]string{"a": "zz"}, false, "", true); !errors.Is(err, wire.ErrBadRequest) {
		t.Errorf("mapping to an unknown node: %v", err)
	}
	// Without reshape, the same leftovers are refused.
	if _, _, err := mapNodes(cur[:1], bak[:3], nil, false, "", false); !errors.Is(err, wire.ErrBadRequest) {
		t.Errorf("unplaced without reshape: %v", err)
	}
	if _, _, err := mapNodes(cur, []NodeInfo{{"old1", ""}}, nil, false, "", false); !errors.Is(err, wire.ErrBadRequest) {
		t.Errorf("unmapped current node without reshape: %v", err)
	}
}

// TestRestoreStepsSource: an action's Source replaces the node's
// assignment for that step (a Clear node included); a Source that is not
// a node of the backup is refused before anything starts.
func TestRestoreStepsSource(t *testing.T) {
	assign := map[string]wire.RestoreInput{"n1": {SourceNode: "b1"}, "n2": {Clear: true}}
	plan := plugin.Plan{Staged: true, Phases: []plugin.Phase{
		{Actions: []plugin.Action{{Node: "n1", Source: "b1"}, {Node: "n2", Source: "b2"}}},
		{Actions: []plugin.Action{{Node: "n1", Source: "b3"}}},
		{Actions: []plugin.Action{{Node: "n1"}, {Node: "n2"}}},
	}}
	backup := []NodeInfo{{"b1", ""}, {"b2", ""}, {"b3", ""}}
	if err := checkActionSources(plan, backup, nil); err != nil {
		t.Fatal(err)
	}
	_, steps, err := restoreSteps(plan, assign)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		if s.Name != wire.StepRestore {
			continue
		}
		var in wire.RestoreInput
		_ = json.Unmarshal(s.Input, &in)
		got = append(got, fmt.Sprintf("%s<-%s@%d clear=%v cleanup=%v", s.Node, in.SourceNode, s.Phase, in.Clear, in.Cleanup))
	}
	want := []string{
		"n1<-b1@4 clear=false cleanup=false",
		"n2<-b2@4 clear=false cleanup=false",
		"n1<-b3@5 clear=false cleanup=false",
		"n1<-b1@6 clear=false cleanup=false",
		"n2<-@6 clear=true cleanup=false",
		"n1<-b1@7 clear=false cleanup=true",
		"n2<-@7 clear=false cleanup=true",
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	plan.Phases[1].Actions[0].Source = "b9"
	if err := checkActionSources(plan, backup, nil); err == nil || !strings.Contains(err.Error(), "b9") {
		t.Errorf("a source outside the backup: %v", err)
	}
}
