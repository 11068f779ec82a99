package integration

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
)

// TestBackupOfMissingRoot fails with an error naming the root and writes
// nothing to the repository.
func TestBackupOfMissingRoot(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "does-not-exist")
	a := newAgent(t, agentOpts{root: missing})
	res := a.cli("backup", "--wait")
	if res.code == 0 {
		t.Fatalf("backup of a missing root succeeded: %s", res.stdout)
	}
	if !strings.Contains(res.stderr, missing) {
		t.Fatalf("error does not name the missing root %s: %q", missing, res.stderr)
	}
	if n := countObjects(t, a.repo); n != 0 {
		t.Fatalf("%d objects written for a failed backup", n)
	}
	// The failed operation released the lock: status shows it failed and
	// the snapshot step failed once (a missing root is not retried).
	var list struct{ Operations []*fsm.Operation }
	a.getJSON("/v1/operations", &list)
	if len(list.Operations) != 1 || list.Operations[0].State != fsm.OpFailed || list.Operations[0].Steps[0].Attempts != 1 {
		t.Fatalf("operations: %+v", list.Operations)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("backup created the missing root: %v", err)
	}
}

// TestRequestErrors checks status codes and error bodies for bad requests,
// unknown ids and a busy cluster.
func TestRequestErrors(t *testing.T) {
	a := newAgent(t, agentOpts{extra: []string{"--upload-bytes-per-second", fmt.Sprint(1 << 20)}})
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 5 {
		writeFile(t, filepath.Join(a.root, fmt.Sprintf("f%d", i)), randomBytes(r, 1<<20), 0o644)
	}

	cases := []struct {
		path, body string
		status     int
		code       string
	}{
		{"/v1/backups", `{not json`, 400, "bad_request"},
		{"/v1/backups", `{"idd":"typo"}`, 400, "bad_request"},
		{"/v1/backups", `{"id":"../../etc"}`, 400, "bad_request"},
		{"/v1/backups", `{"id":"a"} {"id":"b"}`, 400, "bad_request"},
		{"/v1/restores", `{"backup_id":"20260101T000000Z-abcdef"}`, 404, "not_found"},
		{"/v1/restores", `{"backup_id":"../x"}`, 400, "bad_request"},
		{"/v1/restores", `{}`, 404, "not_found"}, // no backup yet
		{"/v1/restores", `{"target":"relative/dir"}`, 400, "bad_request"},
		{"/v1/deletions", `{"backup_ids":[]}`, 400, "bad_request"},
		{"/v1/deletions", `{"backup_ids":["nope"]}`, 404, "not_found"},
	}
	for _, c := range cases {
		status, body := a.post(c.path, c.body)
		if status != c.status || body["code"] != c.code || body["error"] == "" {
			t.Errorf("POST %s %s: %d %v, want %d %s", c.path, c.body, status, body, c.status, c.code)
		}
	}
	for _, p := range []string{"/v1/operations/nope", "/v1/backups/nope", "/v1/nothing-here"} {
		var body map[string]any
		if code := a.getJSON(p, &body); code != 404 || body["code"] != "not_found" {
			t.Errorf("GET %s: %d %v", p, code, body)
		}
	}
	if res := a.cli("restore", "20260101T000000Z-abcdef", "--wait"); res.code == 0 || !strings.Contains(res.stderr, "not found") {
		t.Errorf("CLI restore of unknown id: exit %d stderr %q", res.code, res.stderr)
	}

	// A slow backup holds the cluster lock: a second one gets 409 naming it.
	status, body := a.post("/v1/backups", `{"id":"slow-one"}`)
	if status != 202 {
		t.Fatalf("start: %d %v", status, body)
	}
	status, body = a.post("/v1/backups", `{"id":"second"}`)
	if status != 409 || body["code"] != "busy" || body["running_operation_id"] != "slow-one" {
		t.Fatalf("second backup while one runs: %d %v", status, body)
	}
	res := a.cli("backup")
	if res.code == 0 || !strings.Contains(res.stderr, "slow-one") {
		t.Fatalf("CLI backup while busy: exit %d %q", res.code, res.stderr)
	}
	// The same id again is the same operation (idempotent), 200 not 202.
	status, body = a.post("/v1/backups", `{"id":"slow-one"}`)
	if status != 200 || body["id"] != "slow-one" {
		t.Fatalf("repeat of slow-one: %d %v", status, body)
	}
	// The same id for another kind of request is a conflict.
	status, body = a.post("/v1/deletions", `{"id":"slow-one","backup_ids":["x"]}`)
	if status != 409 || body["code"] != "conflict" {
		t.Fatalf("reuse of id for a delete: %d %v", status, body)
	}

	// Long-poll: returns early when the operation changes, not after the wait.
	op := a.operation("slow-one")
	start := time.Now()
	resp, err := http.Get(fmt.Sprintf("%s/v1/operations/slow-one?wait=50s&revision=%d", a.url(), op.Revision))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || time.Since(start) > 45*time.Second {
		t.Fatalf("long-poll: %d after %v", resp.StatusCode, time.Since(start))
	}
	if done := a.waitOp("slow-one", time.Minute); done.State != fsm.OpSucceeded {
		t.Fatalf("slow backup: %s %s", done.State, done.Error)
	}
	var bad map[string]any
	if code := a.getJSON("/v1/operations/slow-one?wait=forever", &bad); code != 400 {
		t.Fatalf("bad wait: %d", code)
	}
}

// TestConfigErrors: unknown YAML keys are rejected by name.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "crayfish.yaml")
	if err := os.WriteFile(cfg, []byte("node_id: n1\nroot: /tmp\nrepositry: file:///tmp/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "agent", "--config", cfg, "--data-dir", filepath.Join(dir, "d")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "repositry") {
		t.Fatalf("unknown key accepted or not named: %v %s", err, out)
	}
	// Env vars configure too: a bad log level from the environment is named.
	cmd := exec.Command(binary, "agent", "--root", filepath.Join(dir, "root"), "--data-dir", filepath.Join(dir, "d"))
	cmd.Env = append(os.Environ(), "CRAYFISH_LOG_LEVEL=loud")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loud") {
		t.Fatalf("bad env value accepted: %v %s", err, out)
	}
}

// TestNice: the agent lowers its CPU priority when asked.
func TestNice(t *testing.T) {
	a := newAgent(t, agentOpts{extra: []string{"--nice", "7"}})
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", a.cmd.Process.Pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of the agent: %v", err)
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", a.cmd.Process.Pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		// Field 19 is the nice value; fields after the ")" of the name.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if fields[16] != "7" {
			t.Fatalf("thread %s has nice %s, want 7", task.Name(), fields[16])
		}
	}
	// The agent still works.
	writeFile(t, filepath.Join(a.root, "f"), []byte("x"), 0o644)
	a.backupWait()
}
