package integration

import (
	"crypto/hmac"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/coord"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// hookReceiver is a webhook endpoint: it answers the first POST to each
// path with a 500, every later one with a 204, and records them all.
type hookReceiver struct {
	url    string
	secret []byte
	mu     sync.Mutex
	calls  []hookCall
	failed map[string]bool // paths whose first POST was refused
}

type hookCall struct {
	path, delivery, event string
	status                int
	signed                bool // the signature matched the body
	body                  coord.Completion
}

func newHookReceiver(t *testing.T, secret []byte) *hookReceiver {
	t.Helper()
	h := &hookReceiver{secret: secret, failed: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h.url = "http://" + ln.Addr().String()
	return h
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c := hookCall{path: r.URL.Path, delivery: r.Header.Get(coord.HeaderDelivery), event: r.Header.Get(coord.HeaderEvent)}
	c.signed = hmac.Equal([]byte(r.Header.Get(coord.HeaderSignature)), []byte(coord.Sign(h.secret, b)))
	_ = json.Unmarshal(b, &c.body)
	h.mu.Lock()
	defer h.mu.Unlock()
	c.status = http.StatusNoContent
	if !h.failed[c.path] {
		h.failed[c.path] = true
		c.status = http.StatusInternalServerError
	}
	h.calls = append(h.calls, c)
	w.WriteHeader(c.status)
}

// delivered returns the calls answered 2xx, by path and operation.
func (h *hookReceiver) delivered() map[string][]hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]hookCall{}
	for _, c := range h.calls {
		if c.status/100 == 2 {
			out[c.path+" "+c.delivery] = append(out[c.path+" "+c.delivery], c)
		}
	}
	return out
}

// TestDrillAndWebhooks: a drill restores every node of the latest backup
// into scratch space, reads every byte back, leaves nothing behind and
// sets the drill metric; a damaged pack makes the next drill fail. Every
// operation's completion reaches the configured URL, and its own
// callback URL, once each, signed, although the first POST to each is
// refused.
func TestDrillAndWebhooks(t *testing.T) {
	secret := []byte("hook secret")
	secretFile := filepath.Join(t.TempDir(), "notify.secret")
	writeFile(t, secretFile, append(secret, '\n'), 0o600)
	hooks := newHookReceiver(t, secret)
	c := startCluster(t, 3, "drl", "", "", "--notify-urls", hooks.url+"/all", "--notify-secret-file", secretFile)
	fillRoots(t, c.agents, 256<<10)
	backup := c.follower().backupWait("--callback-url", hooks.url+"/cb")

	res := c.follower().cli("drill", "--wait", "--id", "drill-1", "--callback-url", hooks.url+"/cb")
	if res.code != 0 {
		t.Fatalf("drill: code %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	drill := c.leader().waitOp("drill-1", time.Minute)
	snaps := map[string]wire.SnapshotResult{}
	for _, st := range backup.Steps {
		var r wire.SnapshotResult
		if st.Name == wire.StepSnapshot && json.Unmarshal(st.Result, &r) == nil {
			snaps[st.Node] = r
		}
	}
	drilled := map[string]bool{}
	for _, st := range drill.Steps {
		if st.Name != wire.StepDrill {
			continue
		}
		var r wire.RestoreResult
		if err := json.Unmarshal(st.Result, &r); err != nil {
			t.Fatal(err)
		}
		want := snaps[r.SourceNode]
		if r.Verified != want.Files || r.VerifiedBytes != want.Bytes || r.Verified == 0 {
			t.Errorf("drill of %s on %s verified %d files, %d bytes; the backup has %d, %d", r.SourceNode, st.Node, r.Verified, r.VerifiedBytes, want.Files, want.Bytes)
		}
		drilled[r.SourceNode] = true
	}
	if len(drilled) != 3 || drill.BackupID != backup.BackupID {
		t.Errorf("drill covered %v of backup %s, want all three nodes of %s", drilled, drill.BackupID, backup.BackupID)
	}
	noScratch := func() {
		t.Helper()
		for _, a := range c.agents {
			if left, _ := os.ReadDir(filepath.Join(a.dataDir, "drill")); len(left) > 0 {
				t.Errorf("%s: drill scratch space left behind: %v", a.nodeID, left)
			}
		}
	}
	noScratch()
	// Every node reads the metric from its own copy of the replicated
	// state, which a follower may apply a moment after the leader.
	for _, a := range c.agents {
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := scrapeMetrics(t, a)[`crayfish_drill_last_success_timestamp_seconds{plugin="files"}`]
			if got == float64(drill.FinishedAt.Unix()) || int64(got) == drill.FinishedAt.Unix() {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: drill metric %v, want %d", a.nodeID, got, drill.FinishedAt.Unix())
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Damage: the largest data pack gets a flipped byte.
	packs := dataPacks(t, c.repo)
	b, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	writeFile(t, packs[0], b, 0o644)
	res = c.follower().cli("drill", "--wait", "--id", "drill-2")
	failed := c.leader().waitOp("drill-2", time.Minute)
	if res.code == 0 || failed.State != fsm.OpFailed || !strings.Contains(failed.Error, "damaged") {
		t.Errorf("drill over a damaged pack: code %d, state %s, error %q", res.code, failed.State, failed.Error)
	}
	noScratch()

	// Webhooks: one delivery per operation and URL, after a refused first.
	want := map[string]fsm.OpState{
		"/all " + backup.ID: fsm.OpSucceeded, "/cb " + backup.ID: fsm.OpSucceeded,
		"/all drill-1": fsm.OpSucceeded, "/cb drill-1": fsm.OpSucceeded, "/all drill-2": fsm.OpFailed,
	}
	deadline := time.Now().Add(90 * time.Second)
	for len(hooks.delivered()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a duplicate would come now
	got := hooks.delivered()
	for key, state := range want {
		calls := got[key]
		if len(calls) != 1 {
			t.Errorf("%s: %d deliveries, want 1", key, len(calls))
			continue
		}
		call := calls[0]
		if !call.signed || call.event != "operation.finished" || call.body.State != state || call.body.ID != strings.Fields(key)[1] {
			t.Errorf("%s: signed %v, event %q, body %+v", key, call.signed, call.event, call.body)
		}
	}
	if len(got) != len(want) {
		t.Errorf("deliveries to %v, want %d keys", keysOf(got), len(want))
	}
	if cb := got["/cb "+backup.ID]; len(cb) == 1 && (cb[0].body.Bytes <= 0 || cb[0].body.Files <= 0 || cb[0].body.BackupID != backup.BackupID) {
		t.Errorf("backup completion lacks its figures: %+v", cb[0].body)
	}
	hooks.mu.Lock()
	refused := 0
	for _, call := range hooks.calls {
		if call.status == http.StatusInternalServerError {
			refused++
		}
	}
	hooks.mu.Unlock()
	if refused != 2 {
		t.Errorf("%d refused POSTs, want the first to each of the 2 paths", refused)
	}
	op := c.leader().operation(backup.ID)
	if op == nil || !op.Notified || op.NotifyError != "" {
		t.Errorf("backup not marked delivered: %+v", op)
	}
}

// drillResults runs a drill of backupID through a and returns each drill
// step's result; it fails the test unless the drill succeeded and every
// step read back the files of its backed-up node.
func drillResults(t *testing.T, a *agent, backupID string) []wire.RestoreResult {
	t.Helper()
	id := "drill-" + backupID
	if res := a.cli("drill", backupID, "--wait", "--id", id); res.code != 0 {
		t.Fatalf("drill: code %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	op := a.waitOp(id, time.Minute)
	var out []wire.RestoreResult
	for _, st := range op.Steps {
		if st.Name != wire.StepDrill {
			continue
		}
		var r wire.RestoreResult
		if err := json.Unmarshal(st.Result, &r); err != nil {
			t.Fatal(err)
		}
		if r.Verified == 0 || r.Verified != r.Files {
			t.Errorf("drill of %s on %s: verified %d of %d files", r.SourceNode, st.Node, r.Verified, r.Files)
		}
		out = append(out, r)
	}
	return out
}
