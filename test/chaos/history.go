package chaos

import (
	"encoding/json"
	"os"
	"sync"
	"time"
)

// Event types, as in Jepsen: an invocation, then ok (it happened), fail
// (it definitely did not happen) or info (unknown: timeout, connection
// reset).
const (
	Invoke = "invoke"
	OK     = "ok"
	Fail   = "fail"
	Info   = "info"
)

// Event is one line of the history.
type Event struct {
	Index   int             `json:"index"`
	Time    int64           `json:"time"` // harness clock, ns since the start
	Process int             `json:"process"`
	Type    string          `json:"type"`
	F       string          `json:"f"`
	Node    string          `json:"node,omitempty"`
	OpID    string          `json:"op_id,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
	Error   string          `json:"error,omitempty"`
	// Invoked is, on a completion, the index of its invocation.
	Invoked int `json:"invoked,omitempty"`
}

// History records events as JSON lines, in order.
type History struct {
	start time.Time
	mu    sync.Mutex
	evs   []Event
	out   *json.Encoder
	f     *os.File
}

// NewHistory writes to path.
func NewHistory(path string) (*History, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &History{start: time.Now(), out: json.NewEncoder(f), f: f}, nil
}

// Now is the harness clock: monotonic ns since the start.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

func (h *History) add(e Event) Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.Index = len(h.evs)
	e.Time = h.Now()
	h.evs = append(h.evs, e)
	_ = h.out.Encode(e)
	return e
}

// Invoke records an invocation.
func (h *History) Invoke(proc int, f, node, opID string, value any) Event {
	b, _ := json.Marshal(value)
	return h.add(Event{Process: proc, Type: Invoke, F: f, Node: node, OpID: opID, Value: b})
}

// Complete records the completion of inv.
func (h *History) Complete(inv Event, typ string, value any, err error) Event {
	e := Event{Process: inv.Process, Type: typ, F: inv.F, Node: inv.Node, OpID: inv.OpID, Invoked: inv.Index}
	if value != nil {
		e.Value, _ = json.Marshal(value)
	}
	if err != nil {
		e.Error = err.Error()
	}
	return h.add(e)
}

// Events returns a copy of the history.
func (h *History) Events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event{}, h.evs...)
}

// Close flushes the file.
func (h *History) Close() error { return h.f.Close() }
