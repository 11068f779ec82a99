package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func TestErrorDecoding(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantIs   error
		wantCode string
		wantMsg  string
		notIs    []error
	}{
		{
			name:   "busy",
			status: 409, body: `{"error":"another operation is running","code":"busy","running_operation_id":"op-1"}`,
			wantIs: ErrBusy, wantCode: api.CodeBusy,
			wantMsg: "another operation is running (running operation: op-1)",
			notIs:   []error{ErrConflict, ErrNotFound},
		},
		{
			name:   "conflict",
			status: 409, body: `{"error":"operation id reused","code":"conflict"}`,
			wantIs: ErrConflict, wantCode: api.CodeConflict, wantMsg: "operation id reused",
			notIs: []error{ErrBusy},
		},
		{
			name:   "not found",
			status: 404, body: `{"error":"backup \"x\" not found","code":"not_found"}`,
			wantIs: ErrNotFound, wantCode: api.CodeNotFound, wantMsg: `backup "x" not found`,
		},
		{
			name:   "no leader",
			status: 503, body: `{"error":"no leader","code":"no_leader"}`,
			wantIs: ErrNoLeader, wantCode: api.CodeNoLeader, wantMsg: "no leader",
		},
		{
			name:   "bad request",
			status: 400, body: `{"error":"unknown field \"x\"","code":"bad_request"}`,
			wantIs: ErrBadRequest, wantCode: api.CodeBadRequest, wantMsg: `unknown field "x"`,
		},
		{
			name:   "plain text 404 from a router",
			status: 404, body: "404 page not found\n",
			wantIs: ErrNotFound, wantCode: api.CodeNotFound, wantMsg: "404 page not found",
		},
		{
			name:   "empty 502",
			status: 502, body: "",
			wantCode: "", wantMsg: "HTTP 502 Bad Gateway",
			notIs: []error{ErrNoLeader, ErrInternal},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			_, err := New(srv.URL, nil).StartBackup(context.Background(), api.StartBackupRequest{ID: "b"})
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %T %v, want *APIError", err, err)
			}
			if ae.Status != tc.status || ae.Code != tc.wantCode {
				t.Errorf("status, code = %d, %q; want %d, %q", ae.Status, ae.Code, tc.status, tc.wantCode)
			}
			if ae.Error() != tc.wantMsg {
				t.Errorf("Error() = %q, want %q", ae.Error(), tc.wantMsg)
			}
			if tc.wantIs != nil && !errors.Is(fmt.Errorf("wrapped: %w", err), tc.wantIs) {
				t.Errorf("errors.Is(err, %v) = false", tc.wantIs)
			}
			for _, n := range tc.notIs {
				if errors.Is(err, n) {
					t.Errorf("errors.Is(err, %v) = true", n)
				}
			}
		})
	}
}

func TestBusyRunningOperationID(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 409, api.ErrorResponse{Error: "busy", Code: api.CodeBusy, RunningOperationID: "op-7"})
	}))
	defer srv.Close()
	_, err := New(srv.URL, nil).StartRestore(context.Background(), api.StartRestoreRequest{})
	var ae *APIError
	if !errors.As(err, &ae) || ae.RunningOperationID != "op-7" || !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %#v", err)
	}
}

// TestRequests checks methods, paths, query parameters and bodies.
func TestRequests(t *testing.T) {
	type seen struct {
		method, path, query, body string
	}
	var (
		mu  sync.Mutex
		got []seen
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(b)})
		mu.Unlock()
		if r.Method == http.MethodPost && r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
		}
		switch r.URL.Path {
		case "/v1/backups":
			if r.Method == http.MethodPost {
				writeJSON(w, 202, api.Operation{ID: "op-b", Kind: fsm.KindBackup, State: fsm.OpRunning})
				return
			}
			writeJSON(w, 200, api.BackupList{NextCursor: "c2"})
		case "/v1/restores", "/v1/deletions":
			writeJSON(w, 202, api.Operation{ID: "op-x", State: fsm.OpRunning})
		case "/v1/operations":
			writeJSON(w, 200, api.OperationList{})
		case "/v1/cluster":
			writeJSON(w, 200, api.ClusterStatus{NodeID: "n1"})
		case "/v1/version":
			writeJSON(w, 200, api.Version{Version: "1.2.3"})
		default:
			if r.URL.Path == "/v1/backups/b 1" {
				writeJSON(w, 200, api.BackupDetail{})
				return
			}
			writeJSON(w, 200, api.Operation{ID: "op-1", State: fsm.OpRunning, Revision: 9})
		}
	}))
	defer srv.Close()
	c := New(srv.URL+"/", nil)
	ctx := context.Background()

	op, err := c.StartBackup(ctx, api.StartBackupRequest{ID: "nightly"})
	if err != nil || op.ID != "op-b" {
		t.Fatalf("StartBackup = %+v, %v", op, err)
	}
	if _, err := c.StartRestore(ctx, api.StartRestoreRequest{BackupID: "b1", Target: "/tmp/r"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartDelete(ctx, api.StartDeleteRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Operations(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Operation(ctx, "op-1"); err != nil {
		t.Fatal(err)
	}
	op, err = c.WaitOperation(ctx, "op-1", 7, 90*time.Second)
	if err != nil || op.Revision != 9 {
		t.Fatalf("WaitOperation = %+v, %v", op, err)
	}
	l, err := c.Backups(ctx, 3, "c1")
	if err != nil || l.NextCursor != "c2" {
		t.Fatalf("Backups = %+v, %v", l, err)
	}
	if _, err := c.Backup(ctx, "b 1", true); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Cluster(ctx); err != nil || s.NodeID != "n1" {
		t.Fatalf("Cluster = %+v, %v", s, err)
	}
	if v, err := c.Version(ctx); err != nil || v.Version != "1.2.3" {
		t.Fatalf("Version = %+v, %v", v, err)
	}

	want := []seen{
		{"POST", "/v1/backups", "", `{"id":"nightly"}`},
		{"POST", "/v1/restores", "", `{"backup_id":"b1","target":"/tmp/r"}`},
		{"POST", "/v1/deletions", "", `{"backup_ids":[]}`},
		{"GET", "/v1/operations", "limit=5", ""},
		{"GET", "/v1/operations/op-1", "", ""},
		{"GET", "/v1/operations/op-1", "revision=7&wait=1m0s", ""}, // clamped to MaxWait
		{"GET", "/v1/backups", "cursor=c1&limit=3", ""},
		{"GET", "/v1/backups/b%201", "files=true", ""},
		{"GET", "/v1/cluster", "", ""},
		{"GET", "/v1/version", "", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d requests, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// opServer fakes the long-poll contract of GET /v1/operations/{id} over a
// scripted list of revisions: each call with revision R answers the first
// state whose revision is greater than R.
type opServer struct {
	mu     sync.Mutex
	states []api.Operation
	calls  []uint64 // revision parameter of each call
	fail   int      // answer this many calls with 503 first
}

func (s *opServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rev, _ := strconv.ParseUint(r.URL.Query().Get("revision"), 10, 64)
	if r.URL.Query().Get("wait") != "30s" {
		http.Error(w, "wait = "+r.URL.Query().Get("wait"), 400)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, rev)
	if s.fail > 0 {
		s.fail--
		writeJSON(w, 503, api.ErrorResponse{Error: "no leader", Code: api.CodeNoLeader})
		return
	}
	for _, st := range s.states {
		if st.Revision > rev {
			writeJSON(w, 200, st)
			return
		}
	}
	writeJSON(w, 200, s.states[len(s.states)-1])
}

func scripted() []api.Operation {
	return []api.Operation{
		{ID: "op-1", State: fsm.OpRunning, Revision: 3, Steps: []fsm.Step{{Name: "snapshot", State: fsm.StepRunning}}},
		{ID: "op-1", State: fsm.OpRunning, Revision: 5, Steps: []fsm.Step{{Name: "snapshot", State: fsm.StepDone}}},
		{ID: "op-1", State: fsm.OpSucceeded, Revision: 8, BackupID: "b-1", Steps: []fsm.Step{{Name: "snapshot", State: fsm.StepDone}}},
	}
}

func TestWaitFinishedStopsAtTerminal(t *testing.T) {
	s := &opServer{states: scripted()}
	srv := httptest.NewServer(s)
	defer srv.Close()

	var revs []uint64
	op, err := New(srv.URL, nil).WaitFinished(context.Background(), "op-1", func(op *api.Operation) {
		revs = append(revs, op.Revision)
	})
	if err != nil {
		t.Fatal(err)
	}
	if op.State != fsm.OpSucceeded || op.BackupID != "b-1" {
		t.Fatalf("final op = %+v", op)
	}
	if fmt.Sprint(revs) != "[3 5 8]" {
		t.Errorf("onChange revisions = %v, want [3 5 8]", revs)
	}
	if fmt.Sprint(s.calls) != "[0 3 5]" {
		t.Errorf("long-poll revisions = %v, want [0 3 5] (no call after the terminal state)", s.calls)
	}
}

func TestWaitFinishedRetries503(t *testing.T) {
	s := &opServer{states: scripted(), fail: 2}
	srv := httptest.NewServer(s)
	defer srv.Close()

	start := time.Now()
	op, err := New(srv.URL, nil).WaitFinished(context.Background(), "op-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if op.State != fsm.OpSucceeded {
		t.Fatalf("state = %s", op.State)
	}
	if len(s.calls) != 5 {
		t.Errorf("calls = %v, want 2 failures then 3 polls", s.calls)
	}
	// Backoff 200ms then 400ms.
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("retried after %v, want backoff of at least 600ms", d)
	}
}

func TestWaitFinishedRetriesConnectionRefused(t *testing.T) {
	// Reserve a port, close it, and start the server there after a while:
	// an agent restarting. On a loopback address of its own: on
	// 127.0.0.1 a busy machine's other sockets may take the port
	// meanwhile.
	ln, err := net.Listen("tcp", "127.0.201.77:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	s := &opServer{states: scripted()}
	started := make(chan *http.Server, 1)
	go func() {
		time.Sleep(500 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			started <- nil
			return
		}
		hs := &http.Server{Handler: s}
		started <- hs
		hs.Serve(ln)
	}()
	defer func() {
		if hs := <-started; hs != nil {
			hs.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	op, err := New("http://"+addr, nil).WaitFinished(ctx, "op-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if op.State != fsm.OpSucceeded {
		t.Fatalf("state = %s", op.State)
	}
}

func TestWaitFinishedStopsOnPermanentError(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeJSON(w, 404, api.ErrorResponse{Error: "operation not found", Code: api.CodeNotFound})
	}))
	defer srv.Close()
	_, err := New(srv.URL, nil).WaitFinished(context.Background(), "nope", nil)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
	if calls.Load() != 1 {
		t.Errorf("calls = %d, want 1", calls.Load())
	}
}

func TestWaitFinishedContextEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 503, api.ErrorResponse{Error: "no leader", Code: api.CodeNoLeader})
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err := New(srv.URL, nil).WaitFinished(ctx, "op-1", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

// TestWaitFinishedNoTightLoop: an agent that ignores the wait and answers
// the same running state at once must not be hammered.
func TestWaitFinishedNoTightLoop(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeJSON(w, 200, api.Operation{ID: "op-1", State: fsm.OpRunning, Revision: 4})
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := New(srv.URL, nil).WaitFinished(ctx, "op-1", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if n := calls.Load(); n > 6 {
		t.Errorf("%d calls in 1s, want backoff", n)
	}
}

func TestTimeoutExtendedForLongPoll(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") != "" {
			time.Sleep(300 * time.Millisecond) // server-side wait
		}
		writeJSON(w, 200, api.Operation{ID: "op-1", State: fsm.OpRunning, Revision: 4})
	}))
	defer srv.Close()
	c := New(srv.URL, nil)
	c.Timeout = 200 * time.Millisecond
	if _, err := c.WaitOperation(context.Background(), "op-1", 4, 500*time.Millisecond); err != nil {
		t.Fatalf("long-poll within wait+timeout failed: %v", err)
	}
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(400 * time.Millisecond)
	}))
	defer srv2.Close()
	c2 := New(srv2.URL, nil)
	c2.Timeout = 100 * time.Millisecond
	_, err := c2.Version(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !IsTransient(err) {
		t.Fatalf("err = %v, want a transient deadline error", err)
	}
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&APIError{Status: 503, Code: api.CodeNoLeader}, true},
		{&APIError{Status: 502}, true},
		{&APIError{Status: 409, Code: api.CodeBusy}, false},
		{&APIError{Status: 500, Code: api.CodeInternal}, false},
		{context.Canceled, false},
		{fmt.Errorf("get: %w", io.ErrUnexpectedEOF), true},
		{errors.New("decode response: invalid character"), false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
