package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

// fakeAgent serves a scripted operation over the long-poll contract, and
// records the requests it got.
type fakeAgent struct {
	mu       sync.Mutex
	states   []api.Operation // successive states of the started operation
	busy     bool
	requests []string
	bodies   []string
	pages    map[string]api.BackupList // by cursor
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.bodies = append(f.bodies, string(b))
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.Method == http.MethodPost && f.busy:
		reply(409, api.ErrorResponse{Error: "another operation is running", Code: api.CodeBusy, RunningOperationID: "op-0"})
	case r.Method == http.MethodPost:
		reply(202, f.states[0])
	case r.URL.Path == "/v1/backups":
		reply(200, f.pages[r.URL.Query().Get("cursor")])
	case r.URL.Path == "/v1/version":
		reply(200, api.Version{Version: "1.0.0", GoVersion: "go1.26"})
	case strings.HasPrefix(r.URL.Path, "/v1/operations/op-1"):
		rev, _ := strconv.ParseUint(r.URL.Query().Get("revision"), 10, 64)
		for _, st := range f.states {
			if st.Revision > rev {
				reply(200, st)
				return
			}
		}
		reply(200, f.states[len(f.states)-1])
	default:
		reply(404, api.ErrorResponse{Error: "not found: " + r.URL.Path, Code: api.CodeNotFound})
	}
}

func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func backupStates(final fsm.OpState) []api.Operation {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	op := func(rev uint64, state fsm.OpState, s1, s2 fsm.StepState) api.Operation {
		o := api.Operation{ID: "op-1", Kind: fsm.KindBackup, State: state, Revision: rev, CreatedAt: t0,
			Steps: []fsm.Step{
				{Name: "snapshot", Node: "n1", State: s1, Attempts: 1},
				{Name: "commit", State: s2},
			}}
		if state == fsm.OpSucceeded {
			o.BackupID = "b-20240501"
		}
		if state == fsm.OpFailed {
			o.Error = "snapshot on n1: disk full"
		}
		return o
	}
	last := fsm.StepDone
	if final == fsm.OpFailed {
		last = fsm.StepSkipped
	}
	return []api.Operation{
		op(3, fsm.OpRunning, fsm.StepRunning, fsm.StepPending),
		op(5, fsm.OpRunning, fsm.StepDone, fsm.StepRunning),
		op(8, final, fsm.StepDone, last),
	}
}

func TestBackupWaitJSON(t *testing.T) {
	f := &fakeAgent{states: backupStates(fsm.OpSucceeded)}
	srv := httptest.NewServer(f)
	defer srv.Close()

	code, out, errOut := runCLI(t, nil, "--url", srv.URL, "--output", "json", "backup", "--id", "nightly", "--wait")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var op api.Operation
	if err := dec.Decode(&op); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if op.State != fsm.OpSucceeded || op.BackupID != "b-20240501" {
		t.Errorf("op = %+v", op)
	}
	if dec.More() {
		t.Errorf("more than one JSON document on stdout:\n%s", out)
	}
	if errOut != "" {
		t.Errorf("stderr = %q, want nothing in json mode", errOut)
	}
	if f.bodies[0] != `{"id":"nightly"}` {
		t.Errorf("start body = %s", f.bodies[0])
	}
}

func TestBackupWaitTextFailure(t *testing.T) {
	f := &fakeAgent{states: backupStates(fsm.OpFailed)}
	srv := httptest.NewServer(f)
	defer srv.Close()

	code, out, errOut := runCLI(t, nil, "--url", srv.URL, "backup", "--wait")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.HasSuffix(errOut, "error: snapshot on n1: disk full\n") {
		t.Errorf("stderr does not end with the op error:\n%s", errOut)
	}
	for _, want := range []string{"step 1/2 snapshot@n1: running", "step 1/2 snapshot@n1: done", "step 2/2 commit: skipped", "operation op-1 failed"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if !strings.Contains(out, "State:      failed") {
		t.Errorf("stdout lacks the final state:\n%s", out)
	}
}

func TestStartWithoutWait(t *testing.T) {
	f := &fakeAgent{states: backupStates(fsm.OpSucceeded)}
	srv := httptest.NewServer(f)
	defer srv.Close()

	code, out, _ := runCLI(t, nil, "--url", srv.URL, "restore", "b-1", "--target", "/tmp/r")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"Operation:  op-1", "State:      running", "crayfish status op-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	// The client fixes the operation id before sending, so retries are idempotent.
	if !regexp.MustCompile(`^\{"id":"restore-[0-9a-f]{8}","backup_id":"b-1","target":"/tmp/r"\}$`).MatchString(f.bodies[0]) {
		t.Errorf("body = %s", f.bodies[0])
	}
	if len(f.requests) != 1 {
		t.Errorf("requests = %v, want only the start", f.requests)
	}
}

func TestBusy(t *testing.T) {
	srv := httptest.NewServer(&fakeAgent{busy: true})
	defer srv.Close()
	code, out, errOut := runCLI(t, nil, "--url", srv.URL, "-o", "json", "delete", "b1", "b2")
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if errOut != "error: another operation is running (running operation: op-0)\n" {
		t.Errorf("stderr = %q", errOut)
	}
}

func TestNotFound(t *testing.T) {
	srv := httptest.NewServer(&fakeAgent{})
	defer srv.Close()
	code, _, errOut := runCLI(t, nil, "--url", srv.URL, "describe", "nope")
	if code != 1 || !strings.HasPrefix(errOut, "error: not found: /v1/backups/nope") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestListAllFollowsCursors(t *testing.T) {
	f := &fakeAgent{pages: map[string]api.BackupList{
		"":   {Backups: []storage.Summary{{BackupID: "b3"}, {BackupID: "b2"}}, NextCursor: "c1"},
		"c1": {Backups: []storage.Summary{{BackupID: "b1"}}},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	code, out, errOut := runCLI(t, nil, "--url", srv.URL, "-o", "json", "list", "--all", "--limit", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var l api.BackupList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Backups) != 3 || l.Backups[2].BackupID != "b1" || l.NextCursor != "" {
		t.Errorf("list = %+v", l)
	}
	want := []string{"GET /v1/backups?limit=2", "GET /v1/backups?cursor=c1&limit=2"}
	if strings.Join(f.requests, "|") != strings.Join(want, "|") {
		t.Errorf("requests = %v, want %v", f.requests, want)
	}

	// Without --all: one page and a hint.
	code, out, _ = runCLI(t, nil, "--url", srv.URL, "list")
	if code != 0 || !strings.Contains(out, "b2") || strings.Contains(out, "b1 ") || !strings.Contains(out, "--cursor c1") {
		t.Errorf("exit %d, text list:\n%s", code, out)
	}
}

func TestURLFromEnv(t *testing.T) {
	srv := httptest.NewServer(&fakeAgent{})
	defer srv.Close()
	env := map[string]string{envURL: srv.URL}
	code, out, errOut := runCLI(t, env, "version")
	if code != 0 || !strings.Contains(out, "Agent:   1.0.0") || !strings.Contains(out, "Client:  dev") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The flag beats the environment.
	code, _, errOut = runCLI(t, env, "--url", deadURL(t), "version")
	if code != 1 || !strings.Contains(errOut, "cannot reach the agent") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestVersionUnreachable(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "--url", deadURL(t), "-o", "json", "version")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var v versions
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Client.Version != "dev" || v.Agent != nil {
		t.Errorf("stdout %q (%v)", out, err)
	}
	if !strings.HasPrefix(errOut, "error: ") {
		t.Errorf("stderr = %q", errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--output", "yaml", "status"},
		{"status", "--bogus"},
		{"describe"},
		{"delete"},
		{"status", "a", "b"},
		{"frobnicate"},
		{"list", "--limit", "-1"},
		{"--timeout", "x", "list"},
		{"--url", "ftp://h", "list"},
	} {
		code, out, errOut := runCLI(t, nil, args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errOut)
		}
		if out != "" || !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("%q: stdout %q, stderr %q", args, out, errOut)
		}
	}
}

// deadURL is the URL of a port nothing listens on.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}
