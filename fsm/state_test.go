package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func plan() []Step {
	return []Step{{Name: "snapshot", Node: "n1"}, {Name: "upload", Node: "n1"}, {Name: "manifest"}, {Name: "release", Node: "n1", Always: true}}
}

func startCmd(id string) Command {
	return Command{Type: CmdStart, Time: t0, Op: &Operation{ID: id, Kind: KindBackup, BackupID: "b-" + id, Steps: plan()}}
}

// script is a sequence of commands with the error each must produce.
type scriptStep struct {
	cmd     Command
	wantErr error
}

func run(t *testing.T, s *State, script []scriptStep) []Response {
	t.Helper()
	var out []Response
	for i, st := range script {
		resp := s.Apply(uint64(i+1), st.cmd)
		if st.wantErr == nil && resp.Err != nil {
			t.Fatalf("command %d (%s): unexpected error %v", i, st.cmd.Type, resp.Err)
		}
		if st.wantErr != nil && !errors.Is(resp.Err, st.wantErr) {
			t.Fatalf("command %d (%s): error %v, want %v", i, st.cmd.Type, resp.Err, st.wantErr)
		}
		out = append(out, resp)
	}
	return out
}

func step(typ CommandType, op string, epoch uint64, i int) Command {
	return Command{Type: typ, Time: t0.Add(time.Duration(i+1) * time.Second), OpID: op, Epoch: epoch, Step: i}
}

func fullRun(epoch uint64) []scriptStep {
	var s []scriptStep
	for i := range plan() {
		s = append(s, scriptStep{cmd: step(CmdStepStarted, "op1", epoch, i)})
		done := step(CmdStepDone, "op1", epoch, i)
		done.Result = json.RawMessage(`{"ok":true}`)
		s = append(s, scriptStep{cmd: done})
	}
	return append(s, scriptStep{cmd: Command{Type: CmdFinish, Time: t0.Add(time.Minute), OpID: "op1", Epoch: epoch}})
}

func TestHappyPath(t *testing.T) {
	s := NewState()
	script := append([]scriptStep{{cmd: Command{Type: CmdClaim, Node: "n1"}}, {cmd: startCmd("op1")}}, fullRun(1)...)
	resps := run(t, s, script)
	last := resps[len(resps)-1].Op
	if last.State != OpSucceeded || s.Active != "" {
		t.Fatalf("state %s active %q", last.State, s.Active)
	}
	if last.FinishedAt == nil || !last.FinishedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("finished at %v: must be the leader-stamped time", last.FinishedAt)
	}
	if last.Revision != uint64(len(script)) {
		t.Fatalf("revision %d, want %d", last.Revision, len(script))
	}
	for _, st := range last.Steps {
		if st.State != StepDone || st.Attempts != 1 || string(st.Result) != `{"ok":true}` {
			t.Fatalf("step %+v", st)
		}
	}
}

func TestInvalidTransitions(t *testing.T) {
	s := NewState()
	run(t, s, []scriptStep{
		{cmd: Command{Type: CmdClaim, Node: "n1"}}, // epoch 1
		{cmd: startCmd("op1")},
		{cmd: step(CmdStepStarted, "op1", 1, 1), wantErr: ErrInvalidTransition},               // out of order
		{cmd: step(CmdStepDone, "op1", 1, 0), wantErr: ErrInvalidTransition},                  // done before started
		{cmd: step(CmdStepStarted, "op1", 0, 0), wantErr: ErrStaleEpoch},                      // old coordinator
		{cmd: step(CmdStepStarted, "nope", 1, 0), wantErr: ErrUnknownOperation},               // unknown op
		{cmd: step(CmdStepStarted, "op1", 1, 9), wantErr: ErrInvalidCommand},                  // out of range
		{cmd: Command{Type: CmdFinish, OpID: "op1", Epoch: 1}, wantErr: ErrInvalidTransition}, // unfinished steps
		{cmd: step(CmdStepStarted, "op1", 1, 0)},
		{cmd: step(CmdStepDone, "op1", 1, 0)},
		{cmd: step(CmdStepDone, "op1", 1, 0), wantErr: ErrInvalidTransition}, // done twice
		{cmd: step(CmdStepProgress, "op1", 1, 0), wantErr: ErrInvalidTransition},
		{cmd: Command{Type: "bogus"}, wantErr: ErrInvalidCommand},
		{cmd: Command{Type: CmdStart, Op: &Operation{ID: "../x", Kind: KindBackup, Steps: plan()}}, wantErr: ErrInvalidCommand},
		{cmd: Command{Type: CmdStart, Op: &Operation{ID: "x", Kind: "format-disk", Steps: plan()}}, wantErr: ErrInvalidCommand},
		{cmd: Command{Type: CmdStart, Op: &Operation{ID: "x", Kind: KindBackup}}, wantErr: ErrInvalidCommand},
	})
}

func TestFinishedOperationCannotRestart(t *testing.T) {
	s := NewState()
	run(t, s, append([]scriptStep{{cmd: Command{Type: CmdClaim, Node: "n1"}}, {cmd: startCmd("op1")}}, fullRun(1)...))
	resp := s.Apply(100, step(CmdStepStarted, "op1", 1, 0))
	if !errors.Is(resp.Err, ErrInvalidTransition) {
		t.Fatalf("restart of finished op: %v", resp.Err)
	}
	// Starting the same id again returns the finished operation, unchanged.
	resp = s.Apply(101, startCmd("op1"))
	if resp.Err != nil || !resp.Existing || resp.Op.State != OpSucceeded {
		t.Fatalf("idempotent start: %+v", resp)
	}
	// The same id for a different request is a conflict.
	c := startCmd("op1")
	c.Op.Kind = KindRestore
	if resp := s.Apply(102, c); !errors.Is(resp.Err, ErrIDConflict) {
		t.Fatalf("conflicting start: %v", resp.Err)
	}
}

func TestBusyAndIdempotentStart(t *testing.T) {
	s := NewState()
	resps := run(t, s, []scriptStep{
		{cmd: Command{Type: CmdClaim, Node: "n1"}},
		{cmd: startCmd("op1")},
		{cmd: startCmd("op1")},
		{cmd: startCmd("op2"), wantErr: ErrBusy},
	})
	if !resps[2].Existing || resps[2].Op.ID != "op1" {
		t.Fatalf("second start of op1: %+v", resps[2])
	}
	var busy *BusyError
	if !errors.As(resps[3].Err, &busy) || busy.RunningID != "op1" {
		t.Fatalf("busy error %v", resps[3].Err)
	}
	if len(s.Ops) != 1 {
		t.Fatalf("%d ops, want 1", len(s.Ops))
	}
}

func TestFailureSkipsToAlwaysSteps(t *testing.T) {
	s := NewState()
	fail := step(CmdStepFailed, "op1", 1, 0)
	fail.Error = "root missing"
	resps := run(t, s, []scriptStep{
		{cmd: Command{Type: CmdClaim, Node: "n1"}},
		{cmd: startCmd("op1")},
		{cmd: step(CmdStepStarted, "op1", 1, 0)},
		{cmd: fail},
		{cmd: step(CmdStepStarted, "op1", 1, 1), wantErr: ErrInvalidTransition}, // skipped
		{cmd: step(CmdStepStarted, "op1", 1, 3)},                                // release always runs
		{cmd: step(CmdStepDone, "op1", 1, 3)},
		{cmd: Command{Type: CmdFinish, OpID: "op1", Epoch: 1}},
	})
	op := resps[len(resps)-1].Op
	want := []StepState{StepFailed, StepSkipped, StepSkipped, StepDone}
	for i, st := range op.Steps {
		if st.State != want[i] {
			t.Fatalf("step %d: %s, want %s", i, st.State, want[i])
		}
	}
	if op.State != OpFailed || op.Error != "step snapshot: root missing" {
		t.Fatalf("op %s %q", op.State, op.Error)
	}
}

func TestNewEpochFencesOldCoordinatorAndResumes(t *testing.T) {
	s := NewState()
	run(t, s, []scriptStep{
		{cmd: Command{Type: CmdClaim, Node: "n1"}}, // epoch 1
		{cmd: startCmd("op1")},
		{cmd: step(CmdStepStarted, "op1", 1, 0)},
		{cmd: step(CmdStepDone, "op1", 1, 0)},
		{cmd: step(CmdStepStarted, "op1", 1, 1)},
		{cmd: Command{Type: CmdClaim, Node: "n2"}}, // epoch 6: new coordinator
		{cmd: step(CmdStepDone, "op1", 1, 1), wantErr: ErrStaleEpoch},
		{cmd: step(CmdStepStarted, "op1", 6, 1)}, // re-attempt of the running step
	})
	op := s.Ops["op1"]
	if op.NextStep() != 1 || op.Steps[1].Attempts != 2 || op.Steps[0].Attempts != 1 || op.Steps[1].Epoch != 6 {
		t.Fatalf("resume state: next %d steps %+v", op.NextStep(), op.Steps[:2])
	}
}

// TestDeterminism applies one log to two states and compares them.
func TestDeterminism(t *testing.T) {
	script := append([]scriptStep{{cmd: Command{Type: CmdClaim, Node: "n1"}}, {cmd: startCmd("op1")}}, fullRun(1)...)
	script = append(script, scriptStep{cmd: Command{Type: CmdNotified, OpID: "op1", Epoch: 1}},
		scriptStep{cmd: scheduleCmd(true, "@every 1h")}, scriptStep{cmd: slotCmd(1, t0.Add(time.Hour), "op1")})
	a, b := NewState(), NewState()
	run(t, a, script)
	run(t, b, script)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Fatalf("states differ:\n%s\n%s", ja, jb)
	}
}

func TestPruneKeepsBoundedHistory(t *testing.T) {
	s := NewState()
	s.Apply(1, Command{Type: CmdClaim, Node: "n1"})
	idx := uint64(2)
	for i := 0; i < MaxFinishedOps+5; i++ {
		id := fmt.Sprintf("op%04d", i)
		c := Command{Type: CmdStart, Op: &Operation{ID: id, Kind: KindDelete, Steps: []Step{{Name: "delete"}}}}
		if r := s.Apply(idx, c); r.Err != nil {
			t.Fatal(r.Err)
		}
		s.Apply(idx+1, Command{Type: CmdStepStarted, OpID: id, Epoch: 1})
		s.Apply(idx+2, Command{Type: CmdStepDone, OpID: id, Epoch: 1})
		if r := s.Apply(idx+3, Command{Type: CmdFinish, OpID: id, Epoch: 1}); r.Err != nil {
			t.Fatal(r.Err)
		}
		idx += 4
	}
	if len(s.Ops) != MaxFinishedOps || len(s.Order) != MaxFinishedOps {
		t.Fatalf("kept %d ops / %d order, want %d", len(s.Ops), len(s.Order), MaxFinishedOps)
	}
	// The totals outlive pruning.
	tot := s.Totals.Clone()
	if n := uint64(MaxFinishedOps + 5); tot.Started[KindDelete] != n || tot.Finished["delete/succeeded"] != n {
		t.Fatalf("totals %+v, want %d started and succeeded", tot, n)
	}
	if last := tot.LastSucceeded[KindDelete]; last == nil || last.ID != fmt.Sprintf("op%04d", MaxFinishedOps+4) {
		t.Fatalf("last succeeded %+v", last)
	}
}

// TestTotalsCountFailedAttempts: a step started again counts its
// earlier attempt as failed, a final failure counts too, and the failed
// operation is counted by outcome and is no last success.
func TestTotalsCountFailedAttempts(t *testing.T) {
	s := NewState()
	s.Apply(1, Command{Type: CmdClaim, Node: "n1"})
	c := Command{Type: CmdStart, Op: &Operation{ID: "b1", Kind: KindBackup, Steps: []Step{{Name: "snapshot"}, {Name: "upload"}}}}
	for i, cmd := range []Command{c,
		{Type: CmdStepStarted, OpID: "b1", Epoch: 1, Step: 0},
		{Type: CmdStepStarted, OpID: "b1", Epoch: 1, Step: 0}, // a retry
		{Type: CmdStepDone, OpID: "b1", Epoch: 1, Step: 0},
		{Type: CmdStepStarted, OpID: "b1", Epoch: 1, Step: 1},
		{Type: CmdStepFailed, OpID: "b1", Epoch: 1, Step: 1, Error: "disk full"},
		{Type: CmdFinish, OpID: "b1", Epoch: 1},
	} {
		if r := s.Apply(uint64(i+2), cmd); r.Err != nil {
			t.Fatalf("%d: %v", i, r.Err)
		}
	}
	tot := s.Totals.Clone()
	if tot.StepAttemptsFailed["snapshot/retried"] != 1 || tot.StepAttemptsFailed["upload/failed"] != 1 || tot.Finished["backup/failed"] != 1 ||
		tot.Started[KindBackup] != 1 || tot.LastSucceeded[KindBackup] != nil || tot.LastFinished[KindBackup].ID != "b1" {
		t.Fatalf("totals %+v", tot)
	}
}

func TestMachineSnapshotRestore(t *testing.T) {
	m := NewMachine()
	script := append([]scriptStep{{cmd: Command{Type: CmdClaim, Node: "n1"}}, {cmd: startCmd("op1")}}, fullRun(1)[:3]...)
	for i, st := range script {
		b, _ := st.cmd.Encode()
		if r := m.Apply(&raft.Log{Index: uint64(i + 1), Data: b}).(Response); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	m2 := NewMachine()
	changed := m2.Changed()
	if err := m2.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("restore did not notify watchers")
	}
	if !reflect.DeepEqual(m.Operation("op1"), m2.Operation("op1")) || m2.Active().ID != "op1" {
		t.Fatalf("restored op differs:\n%+v\n%+v", m.Operation("op1"), m2.Operation("op1"))
	}
	if e1, _ := m.Epoch(); e1 != 1 {
		t.Fatalf("epoch %d", e1)
	}
	if e2, c := m2.Epoch(); e2 != 1 || c != "n1" || m2.AppliedIndex() != m.AppliedIndex() {
		t.Fatalf("restored epoch %d %q applied %d", e2, c, m2.AppliedIndex())
	}
	// A damaged snapshot leaves the previous state in place.
	if err := m2.Restore(io.NopCloser(bytes.NewReader([]byte(`{"ops":`)))); err == nil {
		t.Fatal("truncated snapshot restored without error")
	}
	if m2.Operation("op1") == nil {
		t.Fatal("failed restore wiped the state")
	}
}

func TestMachineRejectsGarbageEntry(t *testing.T) {
	m := NewMachine()
	r := m.Apply(&raft.Log{Index: 1, Data: []byte("not json")}).(Response)
	if !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("garbage entry: %v", r.Err)
	}
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

// TestPhases: steps of one phase start side by side, the next phase waits
// for all of them, and a failure skips its running siblings (whose late
// results are refused) but not the Always steps.
func TestPhases(t *testing.T) {
	s := NewState()
	steps := []Step{{Name: "snapshot", Node: "a", Phase: 1}, {Name: "snapshot", Node: "b", Phase: 1}, {Name: "snapshot", Node: "c", Phase: 1},
		{Name: "manifest"}, {Name: "release", Node: "a", Phase: 2, Always: true}, {Name: "release", Node: "b", Phase: 2, Always: true}}
	start := Command{Type: CmdStart, Time: t0, Op: &Operation{ID: "op1", Kind: KindBackup, BackupID: "b", Steps: steps}}
	failed := step(CmdStepFailed, "op1", 2, 1)
	failed.Error = "disk full"
	run(t, s, []scriptStep{
		{cmd: start},
		{cmd: Command{Type: CmdClaim, Time: t0, Node: "a"}},
		{cmd: step(CmdStepStarted, "op1", 2, 0)},
		{cmd: step(CmdStepStarted, "op1", 2, 2)},
		{cmd: step(CmdStepStarted, "op1", 2, 3), wantErr: ErrInvalidTransition}, // next phase must wait
		{cmd: step(CmdStepStarted, "op1", 2, 1)},
		{cmd: step(CmdStepDone, "op1", 2, 0)},
		{cmd: failed},
		{cmd: step(CmdStepDone, "op1", 2, 2), wantErr: ErrInvalidTransition}, // skipped sibling
		{cmd: step(CmdStepStarted, "op1", 2, 4)},
		{cmd: step(CmdStepStarted, "op1", 2, 5)},
		{cmd: step(CmdStepDone, "op1", 2, 5)},
		{cmd: step(CmdStepDone, "op1", 2, 4)},
		{cmd: Command{Type: CmdFinish, Time: t0, OpID: "op1", Epoch: 2}},
	})
	op := s.Ops["op1"]
	want := []StepState{StepDone, StepFailed, StepSkipped, StepSkipped, StepDone, StepDone}
	for i, st := range op.Steps {
		if st.State != want[i] {
			t.Errorf("step %d: %s, want %s", i, st.State, want[i])
		}
	}
	if op.State != OpFailed {
		t.Errorf("op state %s", op.State)
	}
}

// Several failures of one phase recorded with KeepRunning (restore steps
// that met damage, recorded once all had ended) each keep their error and
// result; the later steps are still skipped.
func TestKeepRunningRecordsEachSiblingFailure(t *testing.T) {
	s := NewState()
	steps := []Step{{Name: "restore", Node: "a", Phase: 1}, {Name: "restore", Node: "b", Phase: 1}, {Name: "restore", Node: "c", Phase: 1},
		{Name: "manifest"}, {Name: "unlock", Always: true}}
	start := Command{Type: CmdStart, Time: t0, Op: &Operation{ID: "op1", Kind: KindRestore, BackupID: "b", Steps: steps}}
	failA := step(CmdStepFailed, "op1", 2, 0)
	failA.Error, failA.Result, failA.KeepRunning = "damaged a", json.RawMessage(`{"damaged_total":1}`), true
	failC := step(CmdStepFailed, "op1", 2, 2)
	failC.Error, failC.Result, failC.KeepRunning = "damaged c", json.RawMessage(`{"damaged_total":2}`), true
	run(t, s, []scriptStep{
		{cmd: start},
		{cmd: Command{Type: CmdClaim, Time: t0, Node: "a"}},
		{cmd: step(CmdStepStarted, "op1", 2, 0)},
		{cmd: step(CmdStepStarted, "op1", 2, 1)},
		{cmd: step(CmdStepStarted, "op1", 2, 2)},
		{cmd: step(CmdStepDone, "op1", 2, 1)},
		{cmd: failA},
		{cmd: failC}, // not skipped by a's failure
		{cmd: step(CmdStepStarted, "op1", 2, 4)},
		{cmd: step(CmdStepDone, "op1", 2, 4)},
		{cmd: Command{Type: CmdFinish, Time: t0, OpID: "op1", Epoch: 2}},
	})
	op := s.Ops["op1"]
	want := []StepState{StepFailed, StepDone, StepFailed, StepSkipped, StepDone}
	for i, st := range op.Steps {
		if st.State != want[i] {
			t.Errorf("step %d: %s, want %s", i, st.State, want[i])
		}
	}
	if string(op.Steps[2].Result) != `{"damaged_total":2}` || op.Steps[2].Error != "damaged c" {
		t.Errorf("step 2 result %s error %q", op.Steps[2].Result, op.Steps[2].Error)
	}
	if op.State != OpFailed {
		t.Errorf("op state %s", op.State)
	}
}
