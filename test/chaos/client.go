package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// opView is the part of an operation the clients read.
type opView struct {
	ID       string     `json:"id"`
	Kind     string     `json:"kind"`
	State    string     `json:"state"`
	BackupID string     `json:"backup_id"`
	Error    string     `json:"error"`
	Steps    []stepView `json:"steps"`
	// Leader-stamped times, and the Raft index of the last change.
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at"`
	Revision   uint64    `json:"revision"`
}

// stepView is the part of an operation's step the harness reads.
type stepView struct {
	Name       string          `json:"name"`
	Node       string          `json:"node"`
	State      string          `json:"state"`
	Result     json.RawMessage `json:"result"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt time.Time       `json:"finished_at"`
}

// Acked is what clients learned: backups acknowledged as succeeded.
type Acked struct {
	mu      sync.Mutex
	backups map[string]AckedBackup // by backup id
}

// AckedBackup is one acknowledged backup and the interval of its call.
type AckedBackup struct {
	OpID     string `json:"op_id"`
	BackupID string `json:"backup_id"`
	Invoked  int64  `json:"invoked"`
	Acked    int64  `json:"acked"`
	// Nodes are the node ids the backup covered (its steps' nodes): a
	// wiped node's tree is found under its old id in backups taken
	// before the wipe.
	Nodes []string `json:"nodes,omitempty"`
}

func (a *Acked) add(b AckedBackup) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.backups[b.BackupID] = b
}

func (a *Acked) random(r *rand.Rand) (AckedBackup, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.backups) == 0 {
		return AckedBackup{}, false
	}
	i := r.IntN(len(a.backups))
	for _, b := range a.backups {
		if i == 0 {
			return b, true
		}
		i--
	}
	return AckedBackup{}, false
}

// All returns every acknowledged backup.
func (a *Acked) All() []AckedBackup {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AckedBackup
	for _, b := range a.backups {
		out = append(out, b)
	}
	return out
}

// Client is one concurrent worker.
type Client struct {
	proc    int
	c       *Cluster
	h       *History
	rng     *rand.Rand
	acked   *Acked
	writers map[string]*Writer // by tree
	scratch string
	http    *http.Client
	seq     int
	// OpIDs collects every operation id this client started.
	mu    sync.Mutex
	opIDs []string
}

func newClient(proc int, c *Cluster, h *History, seed uint64, acked *Acked, writers map[string]*Writer, scratch string) *Client {
	return &Client{proc: proc, c: c, h: h, rng: rand.New(rand.NewPCG(seed, uint64(proc))), acked: acked, writers: writers,
		scratch: scratch, http: &http.Client{Timeout: 15 * time.Second}}
}

func (cl *Client) node() *Agent { return cl.c.Agents[cl.rng.IntN(len(cl.c.Agents))] }

// Run issues operations until stop ends; operations in flight then run
// to their own deadlines.
func (cl *Client) Run(stop context.Context) {
	ctx := context.Background()
	for stop.Err() == nil {
		switch x := cl.rng.IntN(100); {
		case x < 35:
			cl.backup(ctx)
		case x < 50:
			cl.list(ctx)
		case x < 60:
			cl.describe(ctx)
		case x < 70:
			cl.readRandom(ctx)
		case x < 85:
			cl.restore(ctx)
		case x < 93:
			cl.delete(ctx)
		default:
			cl.cleanup(ctx)
		}
		select {
		case <-stop.Done():
		case <-time.After(time.Duration(cl.rng.IntN(300)) * time.Millisecond):
		}
	}
}

// errNoAnswer: the request may or may not have reached the agent.
var errNoAnswer = errors.New("no answer")

// post sends body and decodes the answer; it tells "definitely not
// delivered" (connection refused) from "unknown" (timeout, reset).
func (cl *Client) post(ctx context.Context, a *Agent, path string, body any, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL()+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return 0, err // refused: nothing was sent
		}
		return 0, fmt.Errorf("%w: %v", errNoAnswer, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(rb, out)
	}
	return resp.StatusCode, nil
}

// start starts an operation with id through random nodes, retrying with
// the same id while the outcome is open. It returns "started", "refused"
// (definitely not started) or "unknown".
func (cl *Client) start(ctx context.Context, path string, body map[string]any) (string, string) {
	deadline := time.Now().Add(20 * time.Second)
	unknown := false
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		a := cl.node()
		var resp map[string]any
		code, err := cl.post(ctx, a, path, body, &resp)
		switch {
		case err != nil:
			unknown = unknown || errors.Is(err, errNoAnswer)
			last = err.Error()
		case code == http.StatusAccepted || code == http.StatusOK:
			return "started", ""
		case code == http.StatusServiceUnavailable:
			// no leader, or the outcome of a commit is unknown: retry
			unknown = true
			last = fmt.Sprint(resp["error"])
		default:
			// 4xx: the request was refused (busy, bad request, not found).
			if unknown {
				return "unknown", fmt.Sprint(resp["error"])
			}
			return "refused", fmt.Sprint(resp["error"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	if unknown {
		return "unknown", last
	}
	return "refused", last
}

// read records one read of op id's state (for the linearizability check)
// and returns the operation.
func (cl *Client) read(ctx context.Context, id string, wait bool) (op *opView, ok, notFound bool) {
	a := cl.node()
	inv := cl.h.Invoke(cl.proc, "read", a.ID(), id, nil)
	// The linearizability checker needs linearizable reads: a node answers
	// from its own copy of the state unless asked for a consistent read
	// (docs/api.md), and a follower's copy may lag the leader's.
	url := a.URL() + "/v1/operations/" + id + "?consistent=true"
	if wait {
		url += "&wait=3s&revision=0"
	}
	op = &opView{}
	err := getJSON(ctx, cl.http, url, op)
	if err != nil {
		// A read changes nothing: it failed, whatever the reason.
		cl.h.Complete(inv, Fail, nil, err)
		return nil, false, strings.Contains(err.Error(), "HTTP 404")
	}
	cl.h.Complete(inv, OK, map[string]string{"state": op.State}, nil)
	return op, true, false
}

// await reads op id until it is terminal or the deadline passes. An
// operation whose start had no clear answer and that no node knows for
// 15 s never started (every start goes through the leader and is
// replicated before it is answered).
func (cl *Client) await(ctx context.Context, id string, within time.Duration, maybeNever bool) *opView {
	deadline := time.Now().Add(within)
	var firstUnknown time.Time
	for time.Now().Before(deadline) && ctx.Err() == nil {
		op, ok, notFound := cl.read(ctx, id, true)
		if ok && (op.State == "succeeded" || op.State == "failed") {
			return op
		}
		if notFound && maybeNever {
			if firstUnknown.IsZero() {
				firstUnknown = time.Now()
			} else if time.Since(firstUnknown) > 15*time.Second {
				return nil
			}
		} else {
			firstUnknown = time.Time{}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

func (cl *Client) newID(prefix string) string {
	cl.seq++
	id := fmt.Sprintf("%s-%d-%d", prefix, cl.proc, cl.seq)
	cl.mu.Lock()
	cl.opIDs = append(cl.opIDs, id)
	cl.mu.Unlock()
	return id
}

// runOp starts an operation and waits for it, recording one history entry.
func (cl *Client) runOp(ctx context.Context, f, path string, body map[string]any, value any) (*opView, Event) {
	id := cl.newID(f)
	body["id"] = id
	inv := cl.h.Invoke(cl.proc, f, "", id, value)
	how, why := cl.start(ctx, path, body)
	switch how {
	case "refused":
		return nil, cl.h.Complete(inv, Fail, nil, errors.New(why))
	case "unknown":
		// It may still run: follow it anyway.
	}
	op := cl.await(ctx, id, 3*time.Minute, how == "unknown")
	switch {
	case op == nil:
		return nil, cl.h.Complete(inv, Info, nil, fmt.Errorf("no outcome within the deadline (%s)", why))
	case op.State == "succeeded":
		return op, cl.h.Complete(inv, OK, map[string]string{"backup_id": op.BackupID}, nil)
	default:
		return op, cl.h.Complete(inv, Fail, map[string]string{"backup_id": op.BackupID}, errors.New(op.Error))
	}
}

func (cl *Client) backup(ctx context.Context) {
	op, done := cl.runOp(ctx, "backup", "/v1/backups", map[string]any{}, nil)
	if done.Type == OK {
		inv := cl.h.Events()[done.Invoked]
		var nodes []string
		for _, st := range op.Steps {
			if st.Node != "" && !slices.Contains(nodes, st.Node) {
				nodes = append(nodes, st.Node)
			}
		}
		sort.Strings(nodes)
		cl.acked.add(AckedBackup{OpID: op.ID, BackupID: op.BackupID, Invoked: inv.Time, Acked: done.Time, Nodes: nodes})
	}
}

func (cl *Client) list(ctx context.Context) {
	a := cl.node()
	inv := cl.h.Invoke(cl.proc, "list", a.ID(), "", nil)
	var list struct {
		Backups []struct {
			BackupID string `json:"backup_id"`
		} `json:"backups"`
	}
	if err := getJSON(ctx, cl.http, a.URL()+"/v1/backups?limit=0", &list); err != nil {
		cl.h.Complete(inv, Fail, nil, err) // a read changes nothing
		return
	}
	var ids []string
	for _, b := range list.Backups {
		ids = append(ids, b.BackupID)
	}
	cl.h.Complete(inv, OK, ids, nil)
}

func (cl *Client) describe(ctx context.Context) {
	b, ok := cl.acked.random(cl.rng)
	if !ok {
		return
	}
	a := cl.node()
	inv := cl.h.Invoke(cl.proc, "describe", a.ID(), "", b.BackupID)
	var d map[string]any
	if err := getJSON(ctx, cl.http, a.URL()+"/v1/backups/"+b.BackupID, &d); err != nil {
		cl.h.Complete(inv, Fail, nil, err)
		return
	}
	cl.h.Complete(inv, OK, b.BackupID, nil)
}

func (cl *Client) readRandom(ctx context.Context) {
	cl.mu.Lock()
	if len(cl.opIDs) == 0 {
		cl.mu.Unlock()
		return
	}
	id := cl.opIDs[cl.rng.IntN(len(cl.opIDs))]
	cl.mu.Unlock()
	cl.read(ctx, id, false)
}

// restore restores one node's part of an acknowledged backup into a
// scratch directory and checks it against what the writer recorded for
// the node's tree (mapping the node's current id to the one its tree had
// in the backup, if the node was wiped since).
func (cl *Client) restore(ctx context.Context) {
	b, ok := cl.acked.random(cl.rng)
	if !ok {
		return
	}
	n := cl.c.Agents[cl.rng.IntN(len(cl.c.Agents))]
	body, from, ok := restoreBody(cl.c, n, b)
	if !ok {
		return // the backup holds nothing of n's tree
	}
	cur := body["node"].(string)
	target := filepath.Join(cl.scratch, fmt.Sprintf("r-%d-%d", cl.proc, cl.seq+1))
	body["target"] = target
	_, done := cl.runOp(ctx, "restore", "/v1/restores", body,
		map[string]string{"backup_id": b.BackupID, "node": cur, "from": from})
	if done.Type == OK {
		verdict := checkRestored(target, n.Tree, cl.writers[n.Tree].States(), b, cur, from)
		cl.h.add(Event{Process: cl.proc, Type: "check", F: "restore-check", Node: cur, OpID: done.OpID, Value: mustJSON(verdict)})
	}
	os.RemoveAll(target)
}

func (cl *Client) delete(ctx context.Context) {
	if cl.rng.IntN(2) == 0 { // keep deletions rarer than backups
		return
	}
	b, ok := cl.acked.random(cl.rng)
	if !ok {
		return
	}
	cl.runOp(ctx, "delete", "/v1/deletions", map[string]any{"backup_ids": []string{b.BackupID}}, b.BackupID)
}

func (cl *Client) cleanup(ctx context.Context) {
	if cl.rng.IntN(3) != 0 { // rarer: each one may delete most backups
		return
	}
	cl.runOp(ctx, "cleanup", "/v1/cleanups", map[string]any{"policy": map[string]any{"keep_last": 6}}, nil)
}

// RestoreVerdict is the outcome of comparing a restored tree with the
// states its node's tree held while the backup ran.
type RestoreVerdict struct {
	BackupID string `json:"backup_id"`
	Node     string `json:"node"`
	Match    bool   `json:"match"`
	Detail   string `json:"detail,omitempty"`
	Gens     []int  `json:"gens,omitempty"`
}

// checkRestored compares a restored tree with what the backup may hold:
// if it equals one recorded state exactly, the snapshot was atomic;
// otherwise it must satisfy MatchLiveTree, crayfish's promise for a live
// tree. tree names the writer (whose files follow from it); node is the
// restoring node's id and from the backup's node id it restored.
func checkRestored(target, tree string, states []TreeState, b AckedBackup, node, from string) RestoreVerdict {
	v := RestoreVerdict{BackupID: b.BackupID, Node: node}
	if from != node || tree != node {
		v.Node = fmt.Sprintf("%s (tree %s, backup node %s)", node, tree, from)
	}
	node = tree
	cands := StatesIn(states, b.Invoked, b.Acked)
	for _, s := range cands {
		if ok, _ := MatchLiveTree(target, node, []TreeState{s}); ok {
			v.Match, v.Gens = true, s.Gens
			return v
		}
	}
	v.Match, v.Detail = MatchLiveTree(target, node, cands)
	if v.Match {
		v.Detail = "no single recorded state, but per-file consistent (the tree changed during the walk)"
	}
	return v
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
