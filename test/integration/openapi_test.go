package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

// conformance is how a request the test sends stands to the spec.
type conformance int

const (
	// conforms: a right request; the spec must accept it.
	conforms conformance = iota
	// breaksSpec: deliberately wrong in a way the spec describes (bad
	// JSON, an unknown or missing field, a non-integer); the spec must
	// reject it too, as the server does.
	breaksSpec
	// beyondSpec: wrong in a way the spec does not express (a body over
	// the size limit, a duration's syntax, a live node to remove); the
	// request is not judged, the answer is.
	beyondSpec
	// outsideSpec: a path the spec does not have (the /v1/ catch-all);
	// the answer must still be an ErrorResponse.
	outsideSpec
)

type conformanceKey struct{}

// specCheck is an http.RoundTripper that validates every request and
// every answer against the OpenAPI spec with kin-openapi, and records
// each violation as a test error naming the method, path and status.
type specCheck struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	next   http.RoundTripper

	mu                sync.Mutex
	requests, answers int                    // validated
	statuses          map[string]map[int]int // "GET /v1/backups/{id}" → status → answers
}

// bearerAuth accepts the spec's bearer scheme when the request carries a
// bearer token (the agent judges the token itself).
func bearerAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecuritySchemeName != "bearer" {
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok && strings.TrimSpace(tok) != "" {
		return nil
	}
	return in.NewError(errors.New("no bearer token"))
}

func (v *specCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	want, _ := ctx.Value(conformanceKey{}).(conformance)
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	where := req.Method + " " + req.URL.RequestURI()
	check := req.Clone(ctx)
	check.Body = io.NopCloser(bytes.NewReader(body))
	var in *openapi3filter.RequestValidationInput
	route, params, err := v.router.FindRoute(check)
	switch {
	case err != nil && want != outsideSpec:
		v.t.Errorf("%s: not in the spec: %v", where, err)
	case err == nil && want == outsideSpec:
		v.t.Errorf("%s: the spec has it (%s %s); the test thought not", where, route.Method, route.Path)
	case err == nil:
		in = &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: bearerAuth, MultiError: true}}
		err := openapi3filter.ValidateRequest(ctx, in)
		switch {
		case want == conforms && err != nil:
			v.t.Errorf("%s: the request breaks the spec: %v\n%s", where, err, tail(string(body), 300))
		case want == breaksSpec && err == nil:
			v.t.Errorf("%s: a request meant to be wrong passes the spec:\n%s", where, tail(string(body), 300))
		}
		v.mu.Lock()
		v.requests++
		v.mu.Unlock()
	}

	send := req.Clone(ctx)
	send.Body = nil
	if req.Body != nil {
		send.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := v.next.RoundTrip(send)
	if err != nil {
		return nil, err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	if err != nil {
		return nil, err
	}
	switch {
	case in != nil:
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
			Body: io.NopCloser(bytes.NewReader(answer)), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			v.t.Errorf("%s → %d: the answer breaks the spec: %v\n%s", where, resp.StatusCode, err, tail(string(answer), 600))
		}
		key := route.Method + " " + route.Path
		v.mu.Lock()
		v.answers++
		if v.statuses[key] == nil {
			v.statuses[key] = map[int]int{}
		}
		v.statuses[key][resp.StatusCode]++
		v.mu.Unlock()
	case want == outsideSpec:
		var doc any
		err := json.Unmarshal(answer, &doc)
		if err == nil {
			err = v.doc.Components.Schemas["ErrorResponse"].Value.VisitJSON(doc)
		}
		if err != nil || resp.Header.Get("Content-Type") != "application/json" {
			v.t.Errorf("%s → %d: not an ErrorResponse (%s): %v\n%s", where, resp.StatusCode, resp.Header.Get("Content-Type"), err, tail(string(answer), 600))
		}
	}
	return resp, nil
}

// specClient sends the test's requests through a specCheck.
type specClient struct {
	t           *testing.T
	check       *specCheck
	hc          *http.Client
	admin, read string // bearer tokens
}

// newSpecClient fetches the spec agent a serves, checks it is the
// committed one and valid, and returns a client validating against it.
func newSpecClient(t *testing.T, a *agent) *specClient {
	t.Helper()
	sec := a.secure
	c := &specClient{t: t, admin: readFileString(t, sec.adminTokenFile), read: readFileString(t, sec.readTokenFile)}
	req, _ := http.NewRequest(http.MethodGet, a.url()+"/v1/openapi.json", nil)
	req.Header.Set("Authorization", "Bearer "+c.read)
	resp, err := sec.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	served, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/openapi.json: %d %v", resp.StatusCode, err)
	}
	if !bytes.Equal(served, api.OpenAPISpec) {
		t.Fatalf("the agent serves %d bytes, not the committed node/api/openapi.json (%d bytes)", len(served), len(api.OpenAPISpec))
	}
	doc, err := openapi3.NewLoader().LoadFromData(served)
	if err != nil {
		t.Fatalf("the served spec does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the served spec is not valid: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	c.check = &specCheck{t: t, doc: doc, router: router, next: sec.client.Transport, statuses: map[string]map[int]int{}}
	c.hc = &http.Client{Timeout: 90 * time.Second, Transport: c.check}
	return c
}

// send sends body (nil: none; a string: as is; else as JSON) with token
// ("": none) and returns the status and the answer.
func (c *specClient) send(a *agent, method, path string, body any, token string, spec conformance) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if s, ok := body.(string); ok {
		r = strings.NewReader(s)
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	ctx := context.WithValue(context.Background(), conformanceKey{}, spec)
	req, err := http.NewRequestWithContext(ctx, method, a.url()+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, answer
}

// ok sends a right request with the admin token and fails the test
// unless it is answered want; it decodes the answer into out (nil: not).
func (c *specClient) ok(a *agent, method, path string, body any, want int, out any) {
	c.t.Helper()
	status, answer := c.send(a, method, path, body, c.admin, conforms)
	if status != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, tail(string(answer), 600))
	}
	if out != nil {
		if err := json.Unmarshal(answer, out); err != nil {
			c.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// refused sends a request the agent must refuse with status and code.
func (c *specClient) refused(a *agent, method, path string, body any, spec conformance, status int, code string) api.ErrorResponse {
	c.t.Helper()
	got, answer := c.send(a, method, path, body, c.admin, spec)
	var e api.ErrorResponse
	_ = json.Unmarshal(answer, &e)
	if got != status || e.Code != code || e.Error == "" {
		c.t.Errorf("%s %s: %d %q, want %d %s: %s", method, path, got, e.Code, status, code, tail(string(answer), 600))
	}
	return e
}

// start starts an operation (202) and long-polls it until it ends; it
// fails the test unless it succeeded.
func (c *specClient) start(a *agent, path string, body any) *fsm.Operation {
	c.t.Helper()
	var op fsm.Operation
	c.ok(a, http.MethodPost, path, body, http.StatusAccepted, &op)
	done := c.wait(a, op.ID)
	if done.State != fsm.OpSucceeded {
		c.t.Fatalf("POST %s: operation %s %s: %s", path, op.ID, done.State, done.Error)
	}
	return done
}

// wait long-polls an operation (?wait&revision) until it ends.
func (c *specClient) wait(a *agent, id string) *fsm.Operation {
	c.t.Helper()
	var rev uint64
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); {
		var op fsm.Operation
		c.ok(a, http.MethodGet, fmt.Sprintf("/v1/operations/%s?wait=10s&revision=%d", id, rev), nil, http.StatusOK, &op)
		if op.State.Terminal() {
			return &op
		}
		rev = op.Revision
	}
	c.t.Fatalf("operation %s did not finish", id)
	return nil
}

// TestOpenAPIConformance drives every public route of a three-node
// cluster (mutual TLS, bearer tokens) with real requests, successes and
// refusals, through a RoundTripper that validates each request and each
// answer against the spec the agents serve (kin-openapi), and checks the
// statuses and error codes docs/api.md promises.
func TestOpenAPIConformance(t *testing.T) {
	sec := newSecurity(t, net.IPv4(127, 0, 12, 1), net.IPv4(127, 0, 12, 2), net.IPv4(127, 0, 12, 3))
	repo, key := initRepo(t)
	c := &cluster{t: t, repo: repo, key: key}
	// Uploads are throttled so that the first backup (12 MiB of new
	// content per node) runs for seconds: long enough to be busy. Later
	// backups find their content in the repository and are quick. The
	// retention policy is what a cleanup preview without parameters uses.
	flags := []string{"--bootstrap-expect", "3", "--node-timeout", "30s",
		"--upload-bytes-per-second", fmt.Sprint(2 << 20), "--retention-keep-last", "5"}
	for i := range 3 {
		f := flags
		if i > 0 {
			f = append([]string{"--join", c.agents[0].gossip}, flags...)
		}
		c.agents = append(c.agents, newAgent(t, agentOpts{nodeID: fmt.Sprintf("oa%d", i+1), ip: fmt.Sprintf("127.0.12.%d", i+1),
			repo: repo, keyFile: key, clustered: true, secure: sec, extra: f}))
	}
	c.waitVoters(3, 60*time.Second)
	fillRoots(t, c.agents, 32<<10)
	l, f := c.leader(), c.follower()
	sc := newSpecClient(t, f)
	sc.ok(f, "GET", "/v1/openapi.json", nil, 200, nil)
	sc.ok(f, "GET", "/v1/version", nil, 200, nil)
	var st api.ClusterStatus
	sc.ok(f, "GET", "/v1/cluster", nil, 200, &st)
	if len(st.Members) != 3 || st.LeaderID != l.nodeID || st.RepositoryID == "" {
		t.Errorf("cluster as %s sees it: %+v", f.nodeID, st)
	}
	sc.ok(l, "GET", "/v1/cluster", nil, 200, nil)

	// Before any backup.
	var backups api.BackupList
	sc.ok(f, "GET", "/v1/backups", nil, 200, &backups)
	if backups.Backups == nil || len(backups.Backups) != 0 || backups.NextCursor != "" {
		t.Errorf("backups of an empty repository: %+v", backups)
	}
	sc.refused(f, "POST", "/v1/restores", map[string]any{}, conforms, 404, "not_found") // nothing to restore
	sc.refused(f, "POST", "/v1/restores/preview", map[string]any{}, conforms, 404, "not_found")

	// A backup; while it runs (throttled), another is busy, the same id
	// is the same operation, and the id for another kind a conflict.
	var op fsm.Operation
	sc.ok(f, "POST", "/v1/backups", api.StartBackupRequest{ID: "oa-b1"}, 202, &op)
	if op.ID != "oa-b1" || op.Kind != fsm.KindBackup || op.State != fsm.OpRunning || op.BackupID == "" {
		t.Fatalf("started: %+v", op)
	}
	if e := sc.refused(f, "POST", "/v1/backups", api.StartBackupRequest{ID: "oa-b2"}, conforms, 409, "busy"); e.RunningOperationID != "oa-b1" {
		t.Errorf("busy names %q, want oa-b1", e.RunningOperationID)
	}
	var again api.StartedOperation
	sc.ok(f, "POST", "/v1/backups", api.StartBackupRequest{ID: "oa-b1"}, 200, &again)
	if !again.Existing || again.Operation == nil || again.ID != "oa-b1" {
		t.Errorf("the same id again: %+v", again)
	}
	sc.refused(f, "POST", "/v1/deletions", api.StartDeleteRequest{ID: "oa-b1", BackupIDs: []string{"x"}}, conforms, 409, "conflict")
	sc.ok(f, "GET", "/v1/operations/oa-b1?consistent=true", nil, 200, nil) // forwarded to the leader
	sc.ok(f, "GET", "/v1/operations/oa-b1", nil, 200, nil)
	b1 := sc.wait(f, "oa-b1")
	if b1.State != fsm.OpSucceeded {
		t.Fatalf("backup oa-b1: %s %s", b1.State, b1.Error)
	}
	sc.start(f, "/v1/gc", nil) // no body at all: the same as {}
	b2 := sc.start(f, "/v1/backups", map[string]any{})

	// Backups: paged, one, with and without files; refusals.
	var page1, page2 api.BackupList
	sc.ok(f, "GET", "/v1/backups?limit=1", nil, 200, &page1)
	if len(page1.Backups) != 1 || page1.Backups[0].BackupID != b2.BackupID || page1.NextCursor == "" {
		t.Fatalf("first page: %+v", page1)
	}
	sc.ok(f, "GET", "/v1/backups?limit=1&cursor="+page1.NextCursor, nil, 200, &page2)
	if len(page2.Backups) != 1 || page2.Backups[0].BackupID != b1.BackupID || page2.NextCursor != "" {
		t.Fatalf("second page: %+v", page2)
	}
	var detail api.BackupDetail
	sc.ok(f, "GET", "/v1/backups/"+b1.BackupID, nil, 200, &detail)
	if detail.Summary.BackupID != b1.BackupID || detail.Manifest == nil || len(detail.Manifest.Nodes) != 3 || detail.Manifest.Nodes[0].Files != nil {
		t.Errorf("backup %s without files: %+v", b1.BackupID, detail.Summary)
	}
	detail = api.BackupDetail{}
	sc.ok(f, "GET", "/v1/backups/"+b1.BackupID+"?files=true", nil, 200, &detail)
	if detail.Manifest == nil || len(detail.Manifest.Nodes) != 3 || len(detail.Manifest.Nodes[0].Files) == 0 {
		t.Errorf("backup %s with files: no file lists", b1.BackupID)
	}
	sc.refused(f, "GET", "/v1/backups/20260101T000000Z-abcdef", nil, conforms, 404, "not_found")
	sc.refused(f, "GET", "/v1/backups/-nope", nil, beyondSpec, 400, "bad_request")      // the spec has no id pattern
	sc.refused(f, "GET", "/v1/backups?limit=many", nil, breaksSpec, 400, "bad_request") // limit is an integer
	sc.refused(f, "GET", "/v1/backups?cursor=../x", nil, beyondSpec, 400, "bad_request")

	// Operations.
	var list api.OperationList
	sc.ok(f, "GET", "/v1/operations?limit=2", nil, 200, &list)
	if len(list.Operations) != 2 || list.Operations[0].ID != b2.ID {
		t.Errorf("operations?limit=2: %d, first %+v", len(list.Operations), list.Operations)
	}
	sc.ok(f, "GET", "/v1/operations?consistent=true", nil, 200, nil)
	sc.ok(l, "GET", "/v1/operations?consistent=true", nil, 200, nil)
	sc.refused(f, "GET", "/v1/operations?limit=-1", nil, beyondSpec, 400, "bad_request") // the spec has no minimum
	sc.refused(f, "GET", "/v1/operations/no-such-op", nil, conforms, 404, "not_found")
	sc.refused(f, "GET", "/v1/operations/oa-b1?wait=soon", nil, beyondSpec, 400, "bad_request") // wait is a string there
	sc.refused(f, "GET", "/v1/operations/oa-b1?revision=latest", nil, breaksSpec, 400, "bad_request")
	// A step's result, paged (the upload step of the first node).
	var rp api.StepResultPage
	sc.ok(f, "GET", "/v1/operations/oa-b1/steps/5/result?limit=1", nil, 200, &rp)
	if rp.OperationID != "oa-b1" || rp.Step != 5 || rp.Name == "" {
		t.Errorf("step result page: %+v", rp)
	}
	if rp.NextCursor != "" {
		sc.ok(l, "GET", "/v1/operations/oa-b1/steps/5/result?consistent=true&limit=1&cursor="+rp.NextCursor, nil, 200, nil)
	}
	sc.refused(f, "GET", "/v1/operations/oa-b1/steps/99/result", nil, conforms, 404, "not_found")
	sc.refused(f, "GET", "/v1/operations/oa-b1/steps/0/result?cursor=bogus", nil, beyondSpec, 400, "bad_request")
	sc.refused(f, "GET", "/v1/operations/oa-b1/steps/first/result", nil, breaksSpec, 400, "bad_request") // step is an integer

	// Restore preview and a restore into a target directory.
	target := filepath.Join(t.TempDir(), "{node}")
	var preview api.RestorePreview
	sc.ok(f, "POST", "/v1/restores/preview", api.StartRestoreRequest{BackupID: b1.BackupID, Target: target}, 200, &preview)
	if preview.BackupID != b1.BackupID || len(preview.Nodes) != 3 || preview.Nodes[0].Create == 0 || preview.Nodes[0].Mode != "additive" {
		t.Errorf("restore preview: %+v", preview)
	}
	sc.refused(f, "POST", "/v1/restores/preview", api.StartRestoreRequest{Target: "relative/dir"}, beyondSpec, 400, "bad_request")
	sc.start(f, "/v1/restores", api.StartRestoreRequest{ID: "oa-restore", BackupID: b1.BackupID, Target: target})
	for _, a := range c.agents {
		own := filepath.Join("own", a.nodeID+".bin")
		want, _ := os.ReadFile(filepath.Join(a.root, own))
		got, err := os.ReadFile(filepath.Join(strings.ReplaceAll(target, "{node}", a.nodeID), own))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("restored %s of %s: %v", own, a.nodeID, err)
		}
	}

	// Cleanup: preview (configured policy, given policy), then run.
	var cp api.CleanupPreview
	sc.ok(f, "GET", "/v1/cleanups/preview", nil, 200, &cp)
	if cp.Policy.KeepLast != 5 || len(cp.Decisions) != 2 {
		t.Errorf("cleanup preview with the configured policy: %+v", cp)
	}
	cp = api.CleanupPreview{}
	sc.ok(f, "GET", "/v1/cleanups/preview?keep_last=1&keep_within=1s&min_keep=1", nil, 200, &cp)
	if len(cp.Decisions) != 2 || !cp.Decisions[0].Keep || cp.Decisions[1].Keep {
		t.Errorf("cleanup preview keep_last=1: %+v", cp)
	}
	sc.refused(f, "GET", "/v1/cleanups/preview?keep_within=soon", nil, beyondSpec, 400, "bad_request")
	sc.refused(f, "GET", "/v1/cleanups/preview?keep_last=all", nil, breaksSpec, 400, "bad_request")
	sc.start(f, "/v1/cleanups", api.StartCleanupRequest{CleanupOptions: api.CleanupOptions{Policy: &storage.RetentionPolicy{KeepLast: 1}}})
	sc.refused(f, "GET", "/v1/backups/"+b1.BackupID, nil, conforms, 404, "not_found") // cleaned up

	// Verify, repair, drill.
	sc.start(f, "/v1/verifications", api.StartVerifyRequest{VerifyOptions: api.VerifyOptions{ReadDataSubset: 0.5}})
	sc.start(f, "/v1/repairs", api.StartRepairRequest{RepairOptions: api.RepairOptions{Kind: "index", DryRun: true}})
	sc.refused(f, "POST", "/v1/repairs", map[string]any{"dry_run": true}, breaksSpec, 400, "bad_request") // kind is required
	sc.refused(f, "POST", "/v1/repairs", map[string]any{"kind": "everything"}, beyondSpec, 400, "bad_request")
	sc.start(f, "/v1/drills", api.StartDrillRequest{})

	// Deletion.
	b3 := sc.start(f, "/v1/backups", api.StartBackupRequest{})
	sc.start(f, "/v1/deletions", api.StartDeleteRequest{BackupIDs: []string{b3.BackupID}})
	sc.refused(f, "POST", "/v1/deletions", map[string]any{}, breaksSpec, 400, "bad_request")                              // backup_ids is required
	sc.refused(f, "POST", "/v1/deletions", api.StartDeleteRequest{BackupIDs: []string{}}, beyondSpec, 400, "bad_request") // no minItems in the spec
	sc.refused(f, "POST", "/v1/deletions", api.StartDeleteRequest{BackupIDs: []string{"20260101T000000Z-abcdef"}}, conforms, 404, "not_found")

	// Schedules.
	schedule := map[string]any{"name": "nightly", "cron": "0 2 * * *", "time_zone": "Europe/Berlin", "kind": "verify",
		"options": map[string]any{"read_data_subset": 0.1}, "jitter": "10m"}
	var sched api.Schedule
	sc.ok(f, "POST", "/v1/schedules", schedule, 201, &sched)
	if sched.Name != "nightly" || sched.NextRun == nil || sched.Jitter != fsm.Duration(10*time.Minute) {
		t.Errorf("created schedule: %+v", sched)
	}
	sc.ok(f, "POST", "/v1/schedules", schedule, 200, nil)
	schedule["cron"] = "0 3 * * *"
	sc.refused(f, "POST", "/v1/schedules", schedule, conforms, 409, "conflict")
	sc.ok(f, "PUT", "/v1/schedules/nightly", schedule, 200, nil)
	sc.refused(f, "PUT", "/v1/schedules/other", schedule, beyondSpec, 400, "bad_request") // the body names another schedule
	var schedules api.ScheduleList
	sc.ok(l, "GET", "/v1/schedules", nil, 200, &schedules) // the leader has applied the PUT; a follower may not have yet
	if len(schedules.Schedules) != 1 || schedules.Schedules[0].Cron != "0 3 * * *" {
		t.Errorf("schedules: %+v", schedules)
	}
	sc.ok(f, "GET", "/v1/schedules/nightly", nil, 200, nil)
	sc.ok(f, "POST", "/v1/schedules/nightly/pause", nil, 200, &sched)
	if !sched.Paused {
		t.Error("paused schedule is not paused")
	}
	sc.ok(f, "POST", "/v1/schedules/nightly/resume", nil, 200, nil)
	sc.ok(f, "DELETE", "/v1/schedules/nightly", nil, 200, nil)
	// Asked of the leader: a follower may not have applied the removal yet.
	sc.refused(l, "GET", "/v1/schedules/nightly", nil, conforms, 404, "not_found")
	sc.refused(f, "POST", "/v1/schedules/nightly/pause", nil, conforms, 404, "not_found")
	sc.refused(f, "POST", "/v1/schedules/nightly/resume", nil, conforms, 404, "not_found")
	sc.refused(f, "DELETE", "/v1/schedules/nightly", nil, conforms, 404, "not_found")
	sc.refused(f, "POST", "/v1/schedules", map[string]any{"name": "x", "cron": "61 * * * *"}, beyondSpec, 400, "bad_request")
	sc.refused(f, "POST", "/v1/schedules", map[string]any{"name": "x"}, breaksSpec, 400, "bad_request") // cron is required

	// Malformed and oversized bodies, unknown endpoints.
	sc.refused(f, "POST", "/v1/backups", `{"id": `, breaksSpec, 400, "bad_request")
	sc.refused(f, "POST", "/v1/backups", `{"surprise": 1}`, breaksSpec, 400, "bad_request")
	// Trailing data is not one JSON value, but kin-openapi's decoder reads
	// the first value and ignores the rest: not judged.
	sc.refused(f, "POST", "/v1/backups", `{"id": "a"} {"id": "b"}`, beyondSpec, 400, "bad_request")
	sc.refused(f, "POST", "/v1/restores", `{"backup_id": "`+strings.Repeat("x", 2<<20)+`"}`, beyondSpec, 413, "too_large") // the spec states no size
	sc.refused(f, "GET", "/v1/nothing-here", nil, outsideSpec, 404, "not_found")

	// Tokens: none is 401, the read token reads but does not write (403).
	if status, answer := sc.send(f, "GET", "/v1/backups", nil, "", conforms); status != 401 || !strings.Contains(string(answer), `"unauthorized"`) {
		t.Errorf("no token: %d %s", status, answer)
	}
	if status, _ := sc.send(f, "GET", "/v1/backups", nil, sc.read, conforms); status != 200 {
		t.Errorf("read token reading: %d", status)
	}
	if status, answer := sc.send(f, "POST", "/v1/gc", map[string]any{}, sc.read, conforms); status != 403 || !strings.Contains(string(answer), `"forbidden"`) {
		t.Errorf("read token writing: %d %s", status, answer)
	}

	// Cluster membership, last. Removing an unknown or a live node is
	// refused. A killed agent is removed once gossip finds it dead (a
	// node that leaves is removed by the leader itself, so a remove after
	// a leave finds nothing: 404). Then the follower leaves, which leaves
	// the leader alone.
	gone := c.follower(f)
	sc.refused(f, "POST", "/v1/cluster/remove", api.RemoveNodeRequest{Node: "nobody"}, conforms, 404, "not_found")
	sc.refused(f, "POST", "/v1/cluster/remove", map[string]any{}, breaksSpec, 400, "bad_request")                         // node is required
	sc.refused(f, "POST", "/v1/cluster/remove", api.RemoveNodeRequest{Node: gone.nodeID}, beyondSpec, 400, "bad_request") // alive
	gone.kill()
	for deadline := time.Now().Add(60 * time.Second); ; {
		// 400 while gossip still holds the killed node alive.
		status, answer := sc.send(f, "POST", "/v1/cluster/remove", api.RemoveNodeRequest{Node: gone.nodeID}, sc.admin, beyondSpec)
		if status == 200 {
			var removed map[string]string
			if err := json.Unmarshal(answer, &removed); err != nil || removed["removed"] != gone.nodeID {
				t.Errorf("remove: %s", answer)
			}
			break
		}
		if status != 400 || time.Now().After(deadline) {
			t.Fatalf("removing the killed %s: %d %s", gone.nodeID, status, answer)
		}
		time.Sleep(500 * time.Millisecond)
	}
	var left map[string]string
	sc.ok(f, "POST", "/v1/cluster/leave", nil, 200, &left)
	if left["left"] != f.nodeID {
		t.Errorf("leave: %v", left)
	}

	// Every operation of the spec was answered with a success at least
	// once; the tally says which statuses each one was checked with.
	ck := sc.check
	var ops []string
	for path, item := range ck.doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(ops)
	for _, op := range ops {
		var seen []string
		success := false
		for status, n := range ck.statuses[op] {
			seen = append(seen, fmt.Sprintf("%d×%d", status, n))
			success = success || status/100 == 2
		}
		slices.Sort(seen)
		if !success {
			t.Errorf("%s was never answered with a success", op)
		}
		t.Logf("%-36s %s", op, strings.Join(seen, " "))
	}
	t.Logf("%d requests and %d answers validated against the spec (%d paths, %d operations)", ck.requests, ck.answers, ck.doc.Paths.Len(), len(ops))
}
