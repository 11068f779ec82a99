package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/transport/forward"
)

// recordingHandler keeps the records logged through it.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		out = append(out, r.Message)
	}
	return out
}

// TestWriteError: every error kind has its status and JSON code, wrapped
// or not; only unexpected errors are logged.
func TestWriteError(t *testing.T) {
	for _, c := range []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{wire.ErrBodyTooLarge, 413, api.CodeTooLarge, false},
		{&http.MaxBytesError{Limit: 10}, 413, api.CodeTooLarge, false},
		{&fsm.BusyError{RunningID: "op-7"}, 409, api.CodeBusy, false},
		{fsm.ErrIDConflict, 409, api.CodeConflict, false},
		{wire.ErrOtherRepository, 409, api.CodeOtherRepository, false},
		// A node's refusal of a step for another repository is the
		// coordinator's bad request, not the client's conflict.
		{fmt.Errorf("%w: %w", wire.ErrBadRequest, wire.ErrOtherRepository), 400, api.CodeBadRequest, false},
		{wire.ErrBadRequest, 400, api.CodeBadRequest, false},
		{fsm.ErrInvalidCommand, 400, api.CodeBadRequest, false},
		{storage.ErrNotFound, 404, api.CodeNotFound, false},
		{fsm.ErrUnknownOperation, 404, api.CodeNotFound, false},
		{wire.ErrUnknownNode, 404, api.CodeNotFound, false},
		{wire.ErrStaleEpoch, 409, api.CodeStaleEpoch, false},
		{wire.ErrNotLeader, 503, api.CodeNoLeader, true},
		{wire.ErrUnknownOutcome, 503, api.CodeNoLeader, true},
		{forward.ErrLoop, 503, api.CodeNoLeader, true},
		{errors.New("disk on fire"), 500, api.CodeInternal, false},
	} {
		for _, err := range []error{c.err, fmt.Errorf("context: %w", c.err)} {
			logs := &recordingHandler{}
			s := &Server{log: slog.New(logs), metrics: newMetrics()}
			w := httptest.NewRecorder()
			s.writeError(w, httptest.NewRequest(http.MethodGet, "/v1/x", nil), err)
			var resp api.ErrorResponse
			if jerr := json.Unmarshal(w.Body.Bytes(), &resp); jerr != nil {
				t.Fatalf("%v: body %q: %v", err, w.Body, jerr)
			}
			if w.Code != c.status || resp.Code != c.code || resp.Error != err.Error() {
				t.Errorf("%v: %d %+v, want %d %s", err, w.Code, resp, c.status, c.code)
			}
			if got := w.Header().Get("Retry-After") != ""; got != c.retryAfter {
				t.Errorf("%v: Retry-After set %v, want %v", err, got, c.retryAfter)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("%v: content type %q", err, ct)
			}
			var busy *fsm.BusyError
			if errors.As(err, &busy) && resp.RunningOperationID != "op-7" {
				t.Errorf("%v: running operation %q, want op-7", err, resp.RunningOperationID)
			}
			if logged := len(logs.messages()) > 0; logged != (c.status == 500) {
				t.Errorf("%v: logged %v", err, logged)
			}
		}
	}
}

// TestRequestBodies: body limits, strict JSON and unknown routes, through
// a running agent.
func TestRequestBodies(t *testing.T) {
	a := startAgent(t, agentOpts{})
	a.waitLeader()
	big := strings.Repeat("x", 2<<20)

	// Over the limit with a length: refused before it is read.
	a.expectError(http.StatusRequestEntityTooLarge, api.CodeTooLarge, http.MethodPost, "/v1/backups", `{"id":"`+big+`"}`)
	// Without a length (chunked): cut off at the limit.
	req, err := http.NewRequest(http.MethodPost, a.base+"/v1/backups", io.NopCloser(strings.NewReader(`{"id":"`+big+`"}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e api.ErrorResponse
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != http.StatusRequestEntityTooLarge || e.Code != api.CodeTooLarge {
		t.Errorf("a chunked body over the limit: %d %+v", resp.StatusCode, e)
	}
	// A step start may be larger (the dedup skip list), not unbounded.
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/internal/v1/jobs", `{"junk":"`+big+`"}`)
	a.expectError(http.StatusRequestEntityTooLarge, api.CodeTooLarge, http.MethodPost, "/internal/v1/jobs", `{"junk":"`+big+big+big+`"}`)

	// Strict JSON.
	for _, body := range []string{`{`, `{"id":7}`, `{"idd":"x"}`, `{"id":"a"} {"id":"b"}`, `[]`} {
		msg := a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, "/v1/gc", body)
		if !strings.Contains(msg, "request body") {
			t.Errorf("%s: %q does not say the body is at fault", body, msg)
		}
	}
	for _, path := range []string{"/v1/backups", "/v1/restores", "/v1/restores/preview", "/v1/deletions", "/v1/cleanups",
		"/v1/verifications", "/v1/repairs", "/v1/cluster/remove", "/internal/v1/fence", "/internal/v1/restore-preview"} {
		a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodPost, path, `{"unknown_field":1}`)
	}
	// No body at all is the zero request.
	op := a.start("/v1/gc", nil)
	a.waitOp(op.ID)

	// Unknown routes under /v1 answer JSON that names them.
	for _, p := range []string{"/v1/nothing", "/v1/backups/a/b"} {
		if msg := a.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodGet, p, nil); !strings.Contains(msg, p) {
			t.Errorf("%s: %q", p, msg)
		}
	}
	a.expectError(http.StatusNotFound, api.CodeNotFound, http.MethodDelete, "/v1/backups", nil)
	if code, _ := a.call(http.MethodGet, "/nothing", nil, nil); code != http.StatusNotFound {
		t.Errorf("GET /nothing: %d", code)
	}
	if code, _ := a.call(http.MethodGet, "/debug/pprof/", nil, nil); code != http.StatusNotFound {
		t.Errorf("pprof is served without debug_pprof: %d", code)
	}
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodGet, "/v1/backups?limit=x", nil)
	a.expectError(http.StatusBadRequest, api.CodeBadRequest, http.MethodGet, "/v1/backups?cursor=../x", nil)
	var list api.BackupList
	a.expect(http.StatusOK, http.MethodGet, "/v1/backups?limit=1", nil, &list)
}

// TestServerWithoutCluster: the cluster endpoints of a server that runs
// none refuse as bad requests; profiles are served when asked for.
func TestServerWithoutCluster(t *testing.T) {
	a := startAgent(t, agentOpts{})
	a.waitLeader()
	s := &Server{store: a.agent.store, log: quietLog(), metrics: newMetrics(), pprof: true}
	h := s.Handler()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/internal/v1/jobs", `{"name":"release"}`},
		{"GET", "/internal/v1/jobs/op/0?epoch=1", ""},
		{"GET", "/internal/v1/jobs", ""},
		{"GET", "/internal/v1/fence", ""},
		{"POST", "/internal/v1/fence", `{"epoch":1}`},
		{"POST", "/internal/v1/restore-preview", `{}`},
		{"POST", "/v1/cluster/remove", `{"node":"x"}`},
		{"POST", "/v1/cluster/leave", ``},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		var e api.ErrorResponse
		_ = json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != http.StatusBadRequest || !strings.Contains(e.Error, "runs no cluster") {
			t.Errorf("%s %s: %d %s", c.method, c.path, w.Code, w.Body)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "goroutine") {
		t.Errorf("pprof index: %d", w.Code)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/internal/v1/raft-state", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"has_state": true`) {
		t.Errorf("raft-state: %d %s", w.Code, w.Body)
	}
}

// TestTokens: with api_token_file every call but /healthz needs the
// token.
func TestTokens(t *testing.T) {
	const token = "s3cret-token-of-enough-length"
	a := startAgent(t, agentOpts{token: token})
	a.waitLeader()
	var v api.Version
	a.expect(http.StatusOK, http.MethodGet, "/v1/version", nil, &v)
	a.run("/v1/backups", api.StartBackupRequest{})

	a.token = ""
	for _, c := range []struct{ method, path string }{{"GET", "/v1/version"}, {"POST", "/v1/backups"}, {"GET", "/internal/v1/fence"}, {"GET", "/metrics"}} {
		a.expectError(http.StatusUnauthorized, "unauthorized", c.method, c.path, nil)
	}
	if code, body := a.call(http.MethodGet, "/healthz", nil, nil); code != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("healthz without a token: %d %q", code, body)
	}
	a.token = "wrong-token-of-enough-length"
	a.expectError(http.StatusUnauthorized, "unauthorized", http.MethodGet, "/v1/backups", nil)
}
