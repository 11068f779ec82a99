package fsm

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Machine adapts State to raft.FSM and lets readers watch for changes.
type Machine struct {
	mu      sync.RWMutex
	st      *State
	changed chan struct{} // closed and replaced on every change
}

// NewMachine returns a Machine with an empty state.
func NewMachine() *Machine {
	return &Machine{st: NewState(), changed: make(chan struct{})}
}

var _ raft.FSM = (*Machine)(nil)

// Apply implements raft.FSM. It returns a Response.
func (m *Machine) Apply(l *raft.Log) any {
	cmd, err := DecodeCommand(l.Data)
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.notifyLocked()
	if err != nil {
		m.st.AppliedIndex = l.Index
		return Response{Err: err}
	}
	return m.st.Apply(l.Index, cmd)
}

func (m *Machine) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of state.
func (m *Machine) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed
}

// Snapshot implements raft.FSM: the state is serialized at once (Apply is
// paused meanwhile), so Persist can run concurrently with later Applies.
func (m *Machine) Snapshot() (raft.FSMSnapshot, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, err := json.Marshal(m.st)
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return snapshot(b), nil
}

// Restore implements raft.FSM. It is all or nothing: the new state is
// decoded aside and swapped in only when complete.
func (m *Machine) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st := NewState()
	if err := json.NewDecoder(rc).Decode(st); err != nil {
		return fmt.Errorf("fsm restore: %w", err)
	}
	if st.Ops == nil {
		st.Ops = map[string]*Operation{}
	}
	if err := st.checkRestored(); err != nil {
		return fmt.Errorf("fsm restore: %w", err)
	}
	st.Totals.fillMaps()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = st
	m.notifyLocked()
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}

// Operation returns a copy of the operation with id, or nil.
func (m *Machine) Operation(id string) *Operation {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Ops[id].Clone()
}

// Operations returns copies of the newest operations first, at most limit (all if limit <= 0).
func (m *Machine) Operations(limit int) []*Operation {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*Operation
	for i := len(m.st.Order) - 1; i >= 0; i-- {
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, m.st.Ops[m.st.Order[i]].Clone())
	}
	return out
}

// Active returns a copy of the operation holding the cluster lock, or nil.
func (m *Machine) Active() *Operation {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.st.Active == "" {
		return nil
	}
	return m.st.Ops[m.st.Active].Clone()
}

// Totals returns a copy of the counts over the whole log (zero when no
// operation ever ran).
func (m *Machine) Totals() Totals {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Totals.Clone()
}

// Epoch returns the current coordinator epoch and its holder.
func (m *Machine) Epoch() (uint64, string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Epoch, m.st.Coordinator
}

// LatestTime returns the latest time a command carried.
func (m *Machine) LatestTime() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.LatestTime
}

// AppliedIndex returns the index of the last applied log entry.
func (m *Machine) AppliedIndex() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.AppliedIndex
}

// Schedules returns copies of the schedules, by name.
func (m *Machine) Schedules() map[string]*Schedule {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]*Schedule, len(m.st.Schedules))
	for name, sc := range m.st.Schedules {
		out[name] = sc.Clone()
	}
	return out
}

// Schedule returns a copy of the schedule name, or nil.
func (m *Machine) Schedule(name string) *Schedule {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Schedules[name].Clone()
}

// Unnotified returns copies of the finished operations whose completion
// was not delivered yet, oldest first.
func (m *Machine) Unnotified() []*Operation {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*Operation
	for _, id := range m.st.Order {
		if op := m.st.Ops[id]; op.State.Terminal() && !op.Notified {
			out = append(out, op.Clone())
		}
	}
	return out
}

// checkRestored refuses a decoded snapshot that no sequence of commands
// can produce and that Apply or a reader would trip over: a null
// operation or schedule (a nil dereference on the next command naming
// it), one stored under another id, an operation the order lists twice
// or not at all, or an active operation that does not exist or has
// finished (the cluster lock would be held for ever: every start answers
// busy, and nothing can finish it).
func (st *State) checkRestored() error {
	listed := make(map[string]bool, len(st.Order))
	for _, id := range st.Order {
		if st.Ops[id] == nil {
			return fmt.Errorf("order lists unknown operation %q", id)
		}
		if listed[id] {
			return fmt.Errorf("order lists operation %q twice", id)
		}
		listed[id] = true
	}
	for id, op := range st.Ops {
		switch {
		case op == nil:
			return fmt.Errorf("operation %q is null", id)
		case op.ID != id:
			return fmt.Errorf("operation %q is stored under %q", op.ID, id)
		case !listed[id]:
			return fmt.Errorf("operation %q is not in the order", id)
		}
	}
	if st.Active != "" && (st.Ops[st.Active] == nil || st.Ops[st.Active].State.Terminal()) {
		return fmt.Errorf("the active operation %q is not a running operation", st.Active)
	}
	for name, sc := range st.Schedules {
		if sc == nil || sc.Name != name {
			return fmt.Errorf("schedule %q is null or stored under another name", name)
		}
	}
	return nil
}

// fillMaps makes the nil maps of restored totals empty: Apply writes into
// them. A snapshot taken before a map was added to Totals (last_finished
// and last_succeeded came after started and finished) lacks it, and the
// first operation to finish after the upgrade would panic every node's
// FSM.
func (t *Totals) fillMaps() {
	if t == nil {
		return
	}
	if t.Started == nil {
		t.Started = map[OpKind]uint64{}
	}
	if t.Finished == nil {
		t.Finished = map[string]uint64{}
	}
	if t.StepAttemptsFailed == nil {
		t.StepAttemptsFailed = map[string]uint64{}
	}
	if t.LastSucceeded == nil {
		t.LastSucceeded = map[OpKind]*Operation{}
	}
	if t.LastFinished == nil {
		t.LastFinished = map[OpKind]*Operation{}
	}
}
