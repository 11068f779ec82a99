package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

// rssMiB reads a process's resident set size.
func rssMiB(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// endlessString is an endless JSON string value, never held in memory:
// a decoder must read on to find its end.
type endlessString struct{}

func (endlessString) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// postSized sends n bytes to url: with a Content-Length, or chunked.
func postSized(t *testing.T, url string, n int64, chunked bool) (int, api.ErrorResponse) {
	t.Helper()
	prefix := `{"id":"`
	body := io.MultiReader(strings.NewReader(prefix), io.LimitReader(endlessString{}, n-int64(len(prefix))))
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if chunked {
		req.ContentLength = -1
	} else {
		req.ContentLength = n
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s (%d bytes): %v", url, n, err)
	}
	defer resp.Body.Close()
	var e api.ErrorResponse
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

// TestOversizedBodies: bodies over an endpoint's limit get 413 at once,
// on the public and the internal API, also through a follower (never a
// retryable 503), and the agents' memory stays flat.
func TestOversizedBodies(t *testing.T) {
	c := startCluster(t, 3, "o", "", "")
	leader, follower := c.leader(), c.follower()
	before := map[string]float64{leader.nodeID: rssMiB(t, leader.cmd.Process.Pid), follower.nodeID: rssMiB(t, follower.cmd.Process.Pid)}
	cases := []struct {
		a       *agent
		path    string
		n       int64
		chunked bool
	}{
		{leader, "/v1/backups", 100 << 20, false},
		{follower, "/v1/backups", 100 << 20, false}, // forwarded route
		{follower, "/v1/restores", 5 << 20, true},   // forwarded, no length
		{leader, "/v1/restores/preview", 2 << 20, true},
		{follower, "/internal/v1/jobs", 100 << 20, false},
		{leader, "/internal/v1/jobs", 80 << 20, true},
		{leader, "/internal/v1/fence", 2 << 20, false},
		{follower, "/internal/v1/restore-preview", 2 << 20, true},
	}
	var sent int64
	for round := range 5 {
		for _, tc := range cases {
			code, e := postSized(t, tc.a.url()+tc.path, tc.n, tc.chunked)
			sent += tc.n
			if code != http.StatusRequestEntityTooLarge || e.Code != api.CodeTooLarge {
				t.Fatalf("round %d: POST %s on %s with %d bytes (chunked %v): %d %+v, want 413 too_large", round, tc.path, tc.a.nodeID, tc.n, tc.chunked, code, e)
			}
		}
	}
	for _, a := range []*agent{leader, follower} {
		after := rssMiB(t, a.cmd.Process.Pid)
		t.Logf("MEASURE %s RSS before %.1f MiB, after %d oversized requests (%d MiB offered to the cluster) %.1f MiB", a.nodeID, before[a.nodeID], 5*len(cases), sent>>20, after)
		if after-before[a.nodeID] > 64 {
			t.Errorf("%s grew by %.0f MiB under oversized requests", a.nodeID, after-before[a.nodeID])
		}
	}
	// The cluster is unharmed: a backup through the follower succeeds.
	follower.backupWait()
}

// TestReusedOperationID: a request reusing a finished operation's id
// starts nothing and says so (API: 200 with existing; CLI: stderr).
func TestReusedOperationID(t *testing.T) {
	a := newAgent(t, agentOpts{})
	writeFile(t, filepath.Join(a.root, "f.txt"), []byte("x"), 0o644)
	first := a.backupWait("--id", "nightly")
	res := a.cli("backup", "--id", "nightly", "--wait", "--output", "json")
	if res.code != 0 || !strings.Contains(res.stderr, "operation nightly already finished at") || !strings.Contains(res.stderr, "not started again") {
		t.Fatalf("second backup --id nightly: exit %d, stderr %q", res.code, res.stderr)
	}
	var again fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &again); err != nil || again.BackupID != first.BackupID {
		t.Fatalf("second run returned %+v (%v), want the first backup %s", again, err, first.BackupID)
	}
	code, body := a.post("/v1/backups", `{"id":"nightly"}`)
	if code != 200 || body["existing"] != true || body["backup_id"] != first.BackupID {
		t.Fatalf("POST /v1/backups with a used id: %d %v", code, body)
	}
	code, body = a.post("/v1/backups", `{"id":"nightly-2"}`)
	if code != 202 || body["existing"] != nil {
		t.Fatalf("a new id: %d %v", code, body)
	}
	a.waitOp("nightly-2", time.Minute)
}

// TestInsecureBindRefused: an agent listening on every interface with
// neither tokens nor mutual TLS refuses to start, naming the setting,
// unless --insecure.
func TestInsecureBindRefused(t *testing.T) {
	repo, key := initRepo(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	httpAddr := "0.0.0.0:" + strings.Split(freeAddrOn(t, "127.0.0.1"), ":")[1]
	args := []string{"agent", "--node-id", "open", "--data-dir", filepath.Join(dir, "data"), "--root", root,
		"--repository", repo, "--key-file", key, "--http-addr", httpAddr,
		"--raft-addr", freeAddrOn(t, "127.0.0.1"), "--gossip-addr", freeAddrOn(t, "127.0.0.1")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "http_addr "+httpAddr) || !strings.Contains(string(out), "--insecure") {
		t.Fatalf("agent on %s without tokens: %v\n%s", httpAddr, err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "raft")); err == nil {
		t.Fatal("the refused agent created its Raft state")
	}
	// With --insecure the operator means it: the agent starts and serves.
	a := newAgent(t, agentOpts{nodeID: "open", repo: repo, keyFile: key, root: root, extra: []string{"--insecure"}})
	a.stop()
	a.http = httpAddr
	a.start()
	var v map[string]any
	if code := a.getJSON("/v1/version", &v); code != 200 {
		t.Fatalf("insecure agent answers %d", code)
	}
}

// TestRestingMemoryWithPassword: the scrypt work memory of a password
// repository goes back to the OS after unlocking.
func TestRestingMemoryWithPassword(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, []byte("correct horse battery staple\n"), 0o600)
	url := "file://" + filepath.Join(dir, "repository")
	if out, err := exec.Command(binary, "init", "--repository", url, "--password-file", pw).CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	withPassword := newAgent(t, agentOpts{nodeID: "pw", repo: url, extra: []string{"--password-file", pw}, keyFile: ""})
	withKey := newAgent(t, agentOpts{nodeID: "kf"})
	time.Sleep(2 * time.Second) // at rest
	p, k := rssMiB(t, withPassword.cmd.Process.Pid), rssMiB(t, withKey.cmd.Process.Pid)
	t.Logf("MEASURE RSS at rest: password repository %.1f MiB, key-file repository %.1f MiB", p, k)
	if p-k > 60 { // scrypt's 128 MiB of work memory kept mapped would show
		t.Errorf("a password repository costs %.0f MiB more at rest", p-k)
	}
}

// TestOtherRepositoryNotAdmitted: a node that writes to another
// repository is not admitted to Raft (cluster status and the leader's log
// name it and both ids), and a member restarted with another repository
// refuses the coordinator's steps instead of writing into it.
func TestOtherRepositoryNotAdmitted(t *testing.T) {
	c := startCluster(t, 2, "r", "", "")
	for _, a := range c.agents {
		writeFile(t, filepath.Join(a.root, a.nodeID+".txt"), []byte(a.nodeID), 0o644)
	}
	otherRepo, otherKey := initRepo(t)
	stranger := newAgent(t, agentOpts{nodeID: "r3", ip: "127.0.0.4", repo: otherRepo, keyFile: otherKey, clustered: true,
		extra: []string{"--join", c.agents[0].gossip, "--bootstrap-expect", "2"}})
	leader := c.leader()
	var st api.ClusterStatus
	deadline := time.Now().Add(30 * time.Second)
	for {
		if leader.getJSON("/v1/cluster", &st) == 200 && st.RepositoryID != "" {
			seen := false
			for _, m := range st.Members {
				seen = seen || m.ID == "r3" && m.Gossip == "alive"
			}
			if seen && strings.Contains(leader.logs(), "not admitting a node that uses another repository") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stranger was not seen and refused in time: %+v\n%s", st, tail(leader.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a few reconcile passes
	leader.getJSON("/v1/cluster", &st)
	for _, m := range st.Members {
		if m.ID == "r3" && (m.Suffrage != "" || !m.OtherRepository || m.RepositoryID == st.RepositoryID || m.RepositoryID == "") {
			t.Fatalf("stranger member %+v (cluster repository %s)", m, st.RepositoryID)
		}
	}
	logs := leader.logs()
	if !strings.Contains(logs, "node=r3") || !strings.Contains(logs, st.RepositoryID) {
		t.Fatalf("the leader's log does not name the node and both ids:\n%s", tail(logs, 3000))
	}
	if res := leader.cli("cluster"); !strings.Contains(res.stdout, "NOT ADMITTED: r3 writes to repository") {
		t.Fatalf("crayfish cluster does not name the stranger:\n%s", res.stdout)
	}
	op := c.follower().backupWait()
	if len(op.Steps) == 0 || strings.Contains(fmt.Sprint(op.Steps), "r3") {
		t.Fatalf("the backup involved the stranger: %+v", op.Steps)
	}
	stranger.stop()

	// A member restarted with another repository refuses its steps.
	victim := c.follower()
	victim.stop()
	victim.repo, victim.keyFile = otherRepo, otherKey
	victim.launch()
	c.waitVoters(2, 30*time.Second)
	leader = c.leader()
	deadline = time.Now().Add(30 * time.Second)
	for mismatch := false; !mismatch; {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted member's repository never showed: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
		leader.getJSON("/v1/cluster", &st)
		for _, m := range st.Members {
			mismatch = mismatch || m.ID == victim.nodeID && m.OtherRepository && m.Suffrage == "Voter"
		}
	}
	before := countObjects(t, otherRepo)
	backups := opCount(t, leader, fsm.KindBackup)
	res := leader.cli("backup", "--wait", "--output", "json")
	if res.code == 0 || !strings.Contains(res.stderr, "node "+victim.nodeID+" writes to repository") {
		t.Fatalf("backup with a member on another repository: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if after := opCount(t, leader, fsm.KindBackup); after != backups {
		t.Fatal("the refused backup started an operation")
	}
	// Were it started anyway (gossip not yet updated), the member refuses
	// its step itself: a coordinator's step names its repository.
	code, body := victim.post("/internal/v1/jobs", `{"ref":{"op_id":"x","epoch":999999,"step":1,"repo":"`+st.RepositoryID+`"},"name":"snapshot"}`)
	if code != 400 || !strings.Contains(fmt.Sprint(body["error"]), "another repository") {
		t.Fatalf("a step for the cluster's repository on the member: %d %v", code, body)
	}
	if after := countObjects(t, otherRepo); after != before {
		t.Fatalf("the member wrote %d objects into the other repository", after-before)
	}
}

// TestDataDirOnOtherFilesystemWarns: an agent told to hard-link whose data
// dir cannot hard-link the root's files says so at start, naming the cost.
func TestDataDirOnOtherFilesystemWarns(t *testing.T) {
	root, err := os.MkdirTemp("/dev/shm", "crayfish-root-")
	if err != nil {
		t.Fatalf("a tmpfs root for the test: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	a := newAgent(t, agentOpts{root: root, extra: []string{"--hard-link"}})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.logs(), "data_dir is on another filesystem than root") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning for a data dir on another filesystem:\n%s", a.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(a.logs(), "full copy") {
		t.Fatal("the warning does not name the cost")
	}
	same := newAgent(t, agentOpts{nodeID: "same"})
	time.Sleep(500 * time.Millisecond)
	if strings.Contains(same.logs(), "another filesystem") {
		t.Fatal("warned for a data dir on the root's filesystem")
	}
}
