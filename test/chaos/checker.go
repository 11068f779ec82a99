package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Checker names.
const (
	CheckLiveness     = "liveness-after-heal"
	CheckNoLost       = "no-lost-backup"
	CheckRestorable   = "restorable"
	CheckLinearizable = "linearizable-op-states"
	CheckMutex        = "mutual-exclusion"
	CheckFencing      = "fencing"
	CheckGCSafety     = "gc-safety"
	CheckTimeOrder    = "leader-time-order"
)

// Verdict is one checker's result.
type Verdict struct {
	Checker  string   `json:"checker"`
	Pass     bool     `json:"pass"`
	Summary  string   `json:"summary"`
	Evidence []string `json:"evidence,omitempty"`
}

func verdict(name string, evidence []string, summary string, args ...any) Verdict {
	v := Verdict{Checker: name, Pass: len(evidence) == 0, Summary: fmt.Sprintf(summary, args...)}
	if len(evidence) > 20 {
		evidence = append(evidence[:20], fmt.Sprintf("... and %d more", len(evidence)-20))
	}
	v.Evidence = evidence
	return v
}

// checkLiveness waits for the healed cluster to settle: every agent up,
// one leader all agree on, every member alive in everyone's gossip, and
// no operation left running.
func checkLiveness(ctx context.Context, c *Cluster, within time.Duration) Verdict {
	start := time.Now()
	var problems []string
	deadline := time.Now().Add(within)
	for {
		problems = nil
		leaders := map[string]bool{}
		current := map[string]bool{}
		for _, a := range c.Agents {
			current[a.ID()] = true
		}
		for _, a := range c.Agents {
			st, err := Status(ctx, a)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", a.ID(), err))
				continue
			}
			leaders[st.LeaderID] = true
			alive := 0
			raft := map[string]bool{}
			for _, m := range st.Members {
				if m.Gossip == "alive" && current[m.ID] {
					alive++
				}
				if m.Suffrage != "" {
					raft[m.ID] = true
				}
			}
			if alive != len(c.Agents) {
				problems = append(problems, fmt.Sprintf("%s sees %d of %d members alive", a.ID(), alive, len(c.Agents)))
			}
			if !maps.Equal(raft, current) {
				problems = append(problems, fmt.Sprintf("%s's Raft members are %v, want %v (a wiped node's old id not removed, or its new id not added)", a.ID(), keys(raft), keys(current)))
			}
		}
		if len(leaders) != 1 || leaders[""] {
			problems = append(problems, fmt.Sprintf("leaders seen: %v", keys(leaders)))
		}
		if len(problems) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return verdict(CheckLiveness, problems, "the cluster did not converge within %s of healing", within)
		}
		time.Sleep(500 * time.Millisecond)
	}
	converged := time.Since(start)
	for {
		running := runningOps(ctx, c)
		if len(running) == 0 {
			break
		}
		if time.Now().After(deadline.Add(2 * within)) {
			return verdict(CheckLiveness, running, "operations still running %s after healing", 3*within)
		}
		time.Sleep(time.Second)
	}
	return verdict(CheckLiveness, nil, "converged %s after healing; no operation running after %s", converged.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// finalOps reads every operation the cluster remembers.
func finalOps(ctx context.Context, c *Cluster) ([]opView, error) {
	var list struct {
		Operations []opView `json:"operations"`
	}
	var err error
	for _, a := range c.Agents {
		if err = getJSON(ctx, quick, a.URL()+"/v1/operations?limit=1000&consistent=true", &list); err == nil {
			return list.Operations, nil
		}
	}
	return nil, err
}

func runningOps(ctx context.Context, c *Cluster) []string {
	ops, err := finalOps(ctx, c)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, op := range ops {
		if op.State == "running" {
			out = append(out, op.ID+" ("+op.Kind+")")
		}
	}
	return out
}

// excusedBackups returns the backups a delete or cleanup may have
// removed: those its result names, and, for one whose result is not
// known (failed part-way, or not found), every backup it could have
// named (a delete's ids; for a cleanup, every backup acknowledged before
// it ended).
func excusedBackups(ops []opView, hist []Event, acked []AckedBackup) (map[string]bool, error) {
	out := map[string]bool{}
	known := map[string]opView{}
	for _, op := range ops {
		known[op.ID] = op
	}
	completion := map[int]Event{}
	for _, e := range hist {
		if e.Type != Invoke && e.Type != "check" {
			completion[e.Invoked] = e
		}
	}
	for _, e := range hist {
		if e.Type != Invoke || (e.F != "delete" && e.F != "cleanup") {
			continue
		}
		done, finished := completion[e.Index]
		if finished && done.Type == Fail && len(done.Value) == 0 {
			continue // refused before it started: it did not happen
		}
		op, ok := known[e.OpID]
		if ok && op.State == "succeeded" {
			for _, st := range op.Steps {
				var r struct {
					Deleted []string `json:"deleted"`
				}
				if len(st.Result) > 0 && json.Unmarshal(st.Result, &r) == nil {
					for _, id := range r.Deleted {
						out[id] = true
					}
				}
			}
			continue
		}
		if ok && op.State == "running" {
			return nil, fmt.Errorf("operation %s still running", op.ID)
		}
		// Outcome partial or unknown: excuse everything it could touch.
		if e.F == "delete" {
			var id string
			_ = json.Unmarshal(e.Value, &id)
			out[id] = true
			continue
		}
		end := int64(1<<63 - 1)
		if finished {
			end = done.Time
		}
		for _, b := range acked {
			if b.Acked <= end {
				out[b.BackupID] = true
			}
		}
	}
	return out, nil
}

// checkNoLost: every acknowledged backup that no delete or cleanup can
// have removed is listed by every node and has its snapshot object.
func checkNoLost(ctx context.Context, c *Cluster, acked []AckedBackup, excused map[string]bool) (Verdict, []AckedBackup) {
	var expected []AckedBackup
	for _, b := range acked {
		if !excused[b.BackupID] {
			expected = append(expected, b)
		}
	}
	var evidence []string
	for _, a := range c.Agents {
		var list struct {
			Backups []struct {
				BackupID string `json:"backup_id"`
			} `json:"backups"`
		}
		if err := getJSON(ctx, quick, a.URL()+"/v1/backups?limit=0", &list); err != nil {
			evidence = append(evidence, fmt.Sprintf("%s: list: %v", a.ID(), err))
			continue
		}
		listed := map[string]bool{}
		for _, b := range list.Backups {
			listed[b.BackupID] = true
		}
		for _, b := range expected {
			if !listed[b.BackupID] {
				evidence = append(evidence, fmt.Sprintf("%s does not list %s (operation %s, acknowledged at %s)", a.ID(), b.BackupID, b.OpID, time.Duration(b.Acked)))
			}
		}
	}
	for _, b := range expected {
		if err := c.Store.HasSnapshot(b.BackupID); err != nil {
			evidence = append(evidence, fmt.Sprintf("snapshot object of %s: %v", b.BackupID, err))
		}
	}
	return verdict(CheckNoLost, evidence, "%d acknowledged backups, %d possibly deleted by deletes/cleanups, %d checked on %d nodes",
		len(acked), len(acked)-len(expected), len(expected), len(c.Agents)), expected
}

// restoreBody is the request restoring backup b's part of a's tree onto
// a (mapping a's current id to the id the tree had when b was taken), and
// that backup node id; ok is false when b holds nothing of a's tree.
func restoreBody(c *Cluster, a *Agent, b AckedBackup) (body map[string]any, from string, ok bool) {
	cur := a.ID()
	from = cur
	if len(b.Nodes) > 0 {
		from = ""
		for _, n := range b.Nodes {
			if c.TreeOf(n) == a.Tree {
				from = n
			}
		}
		if from == "" {
			return nil, "", false
		}
	}
	body = map[string]any{"backup_id": b.BackupID, "node": cur}
	if from != cur {
		body["mapping"] = map[string]string{cur: from}
	}
	return body, from, true
}

// restoreAndCompare restores backup b's part of a's tree onto a, into a
// scratch directory, through the API and compares it with the writer's
// states. A backup without a's tree (taken while a wiped node's old id
// was removed and its new id not yet added) is skipped.
func restoreAndCompare(ctx context.Context, c *Cluster, scratch, label string, a *Agent, b AckedBackup, states []TreeState) (RestoreVerdict, error) {
	body, from, ok := restoreBody(c, a, b)
	if !ok {
		return RestoreVerdict{BackupID: b.BackupID, Node: a.ID(), Match: true, Detail: "the backup holds nothing of tree " + a.Tree}, nil
	}
	target := filepath.Join(scratch, label+"-"+b.BackupID+"-"+a.ID())
	defer os.RemoveAll(target)
	cl := &Client{c: c, http: quick, h: nil}
	id := fmt.Sprintf("%s-%s-%s", label, b.BackupID, a.ID())
	body["id"], body["target"] = id, target
	var resp map[string]any
	deadline := time.Now().Add(time.Minute)
	for {
		code, err := cl.post(ctx, c.Agents[0], "/v1/restores", body, &resp)
		if err == nil && (code == 200 || code == 202) {
			break
		}
		if time.Now().After(deadline) {
			return RestoreVerdict{}, fmt.Errorf("start restore: %d %v %v", code, err, resp)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for {
		var op opView
		if err := getJSON(ctx, quick, c.Agents[0].URL()+"/v1/operations/"+id+"?wait=2s&revision=0", &op); err == nil && (op.State == "succeeded" || op.State == "failed") {
			if op.State == "failed" {
				return RestoreVerdict{BackupID: b.BackupID, Node: a.ID(), Detail: "restore failed: " + op.Error}, nil
			}
			break
		}
		if time.Now().After(deadline.Add(2 * time.Minute)) {
			return RestoreVerdict{}, fmt.Errorf("restore %s did not finish", id)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return checkRestored(target, a.Tree, states, b, a.ID(), from), nil
}

// checkRestorable restores sample backups on every node, and collects
// the in-run restore checks from the history.
func checkRestorable(ctx context.Context, c *Cluster, scratch string, sample []AckedBackup, writers map[string]*Writer, hist []Event) Verdict {
	var evidence []string
	inRun, checked := 0, 0
	for _, e := range hist {
		if e.F == "restore-check" {
			inRun++
			var v RestoreVerdict
			_ = json.Unmarshal(e.Value, &v)
			if !v.Match {
				evidence = append(evidence, fmt.Sprintf("in-run restore of %s on %s: %s", v.BackupID, v.Node, v.Detail))
			}
		}
	}
	for _, b := range sample {
		for _, a := range c.Agents {
			v, err := restoreAndCompare(ctx, c, scratch, "check", a, b, writers[a.Tree].States())
			checked++
			if err != nil {
				evidence = append(evidence, fmt.Sprintf("%s on %s: %v", b.BackupID, a.ID(), err))
			} else if !v.Match {
				evidence = append(evidence, fmt.Sprintf("%s on %s: %s", b.BackupID, a.ID(), v.Detail))
			}
		}
	}
	return verdict(CheckRestorable, evidence, "%d restores checked during the run, %d after healing (%d backups x %d nodes), each against the writer's states in the backup's interval",
		inRun, checked, len(sample), len(c.Agents))
}

// stateRank orders operation states: they only move forward, and a
// terminal state never changes.
func stateRank(s string) int {
	switch s {
	case "":
		return 0
	case "running":
		return 1
	}
	return 2
}

// opStateModel is porcupine's model of one operation's state as seen by
// reads: a read may observe any state at or after the current one (the
// system moves on its own between reads), never an earlier one, and a
// terminal state is final.
var opStateModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range h {
			id := op.Input.(string)
			if _, ok := by[id]; !ok {
				order = append(order, id)
			}
			by[id] = append(by[id], op)
		}
		var out [][]porcupine.Operation
		for _, id := range order {
			out = append(out, by[id])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		cur, got := state.(string), output.(string)
		if stateRank(got) < stateRank(cur) || (stateRank(cur) == 2 && got != cur) {
			return false, cur
		}
		return true, got
	},
	DescribeOperation: func(input, output any) string { return fmt.Sprintf("read(%s) -> %s", input, output) },
	DescribeState:     func(state any) string { return fmt.Sprintf("%q", state) },
}

// checkLinearizable runs porcupine over every read of an operation's
// state and writes the visualisation to htmlPath.
func checkLinearizable(hist []Event, htmlPath string) Verdict {
	inv := map[int]Event{}
	var ops []porcupine.Operation
	for _, e := range hist {
		if e.F != "read" {
			continue
		}
		if e.Type == Invoke {
			inv[e.Index] = e
			continue
		}
		if e.Type != OK {
			continue // a failed read observed nothing
		}
		var v struct {
			State string `json:"state"`
		}
		_ = json.Unmarshal(e.Value, &v)
		call := inv[e.Invoked]
		ops = append(ops, porcupine.Operation{ClientId: e.Process, Input: e.OpID, Call: call.Time, Output: v.State, Return: e.Time})
	}
	res, info := porcupine.CheckOperationsVerbose(opStateModel, ops, 2*time.Minute)
	if f, err := os.Create(htmlPath); err == nil {
		_ = porcupine.Visualize(opStateModel, info, f)
		f.Close()
	}
	var evidence []string
	if res != porcupine.Ok {
		evidence = append(evidence, fmt.Sprintf("porcupine: %s (see %s)", res, filepath.Base(htmlPath)))
	}
	return verdict(CheckLinearizable, evidence, "%d reads of operation states checked by porcupine: %s", len(ops), res)
}

type jobInterval struct {
	OpID     string    `json:"op_id"`
	Name     string    `json:"name"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

// checkMutex: on every node, jobs of different operations never ran at
// the same time (from the nodes' job audits, which cover each process's
// lifetime). A wiped node's last audit, read before the wipe, is checked
// together with its successor's: they served the same tree.
func checkMutex(ctx context.Context, c *Cluster) Verdict {
	total := 0
	byTree := map[string][]jobInterval{}
	retired := c.Retired()
	evidence, unread, wiped := tallyRetired(retired, "job audit")
	for _, r := range retired {
		byTree[r.Tree] = append(byTree[r.Tree], r.Jobs...)
	}
	for _, a := range c.Agents {
		var ivs []jobInterval
		if err := getJSON(ctx, quick, a.URL()+"/internal/v1/jobs", &ivs); err != nil {
			evidence = append(evidence, fmt.Sprintf("%s: %v", a.ID(), err))
			continue
		}
		byTree[a.Tree] = append(byTree[a.Tree], ivs...)
	}
	for _, tree := range keys(byTree) {
		ivs := byTree[tree]
		total += len(ivs)
		slices.SortFunc(ivs, func(x, y jobInterval) int { return x.Started.Compare(y.Started) })
		for i := range ivs {
			for j := i + 1; j < len(ivs) && ivs[j].Started.Before(ivs[i].Finished); j++ {
				if ivs[j].OpID != ivs[i].OpID {
					evidence = append(evidence, fmt.Sprintf("%s: %s %s [%s, %s] overlaps %s %s [%s, %s]", tree,
						ivs[i].OpID, ivs[i].Name, ivs[i].Started.Format(time.StampMicro), ivs[i].Finished.Format(time.StampMicro),
						ivs[j].OpID, ivs[j].Name, ivs[j].Started.Format(time.StampMicro), ivs[j].Finished.Format(time.StampMicro)))
				}
			}
		}
	}
	return verdict(CheckMutex, evidence, "%d job intervals on %d nodes over %d ended lifetimes (%d wiped ids; %d lifetimes unread: paused or unreachable at the kill) and the current ones",
		total, len(c.Agents), len(retired), wiped, unread)
}

// tallyRetired counts the ended lifetimes that were wiped and those whose
// audits could not be read at the kill (paused or unreachable: lost
// evidence, not a violation); a wiped id's unread audit is evidence, as
// its lifetime ends for good.
func tallyRetired(retired []RetiredNode, what string) (evidence []string, unread, wiped int) {
	for _, r := range retired {
		switch {
		case r.Err != "" && r.Wiped:
			evidence = append(evidence, fmt.Sprintf("%s (wiped): its %s could not be read before the wipe: %s", r.ID, what, r.Err))
		case r.Err != "":
			unread++
		}
		if r.Wiped {
			wiped++
		}
	}
	return evidence, unread, wiped
}

// fenceJournal is GET /internal/v1/fence.
type fenceJournal struct {
	Admitted []struct {
		OpID  string `json:"op_id"`
		Step  int    `json:"step"`
		Epoch uint64 `json:"epoch"`
	} `json:"admitted"`
	RefusedStale int64 `json:"refused_stale"`
}

// checkFencing: no node admitted an epoch lower than one it had admitted
// before. Journals cover a process's lifetime; the nemesis reads them
// before every kill and wipe, and fence.json carries the highest epoch
// across restarts, so a node id's lifetimes are checked as one sequence.
// A wiped id ends there: its new id starts afresh, as any new node does.
func checkFencing(ctx context.Context, c *Cluster) Verdict {
	total, refused := 0, int64(0)
	journals := map[string][]fenceJournal{} // node id → its lifetimes in order
	retired := c.Retired()
	evidence, unread, wiped := tallyRetired(retired, "fence journal")
	for _, r := range retired {
		journals[r.ID] = append(journals[r.ID], r.Fence)
	}
	for _, a := range c.Agents {
		var j fenceJournal
		if err := getJSON(ctx, quick, a.URL()+"/internal/v1/fence", &j); err != nil {
			evidence = append(evidence, fmt.Sprintf("%s: %v", a.ID(), err))
			continue
		}
		journals[a.ID()] = append(journals[a.ID()], j)
	}
	for _, id := range keys(journals) {
		var high uint64
		for life, j := range journals[id] {
			total += len(j.Admitted)
			refused += j.RefusedStale
			for _, call := range j.Admitted {
				if call.Epoch < high {
					evidence = append(evidence, fmt.Sprintf("%s (lifetime %d) admitted epoch %d (op %s step %d) after %d", id, life+1, call.Epoch, call.OpID, call.Step, high))
				}
				high = max(high, call.Epoch)
			}
		}
	}
	return verdict(CheckFencing, evidence, "%d admitted calls on %d node ids over %d ended lifetimes (%d wiped; %d unread: paused or unreachable at the kill) and the current ones, %d stale calls refused",
		total, len(journals), len(retired), wiped, unread, refused)
}

// checkTimeOrder: the times leaders stamp never go backwards in commit
// order, whatever their wall clocks say (node/engine.go's stamp: a leader
// whose clock is behind the log stamps just after its latest time). In
// the order the cluster created the operations, creation times never
// decrease and backup ids increase (they are made from the start time,
// and sort in start order); within an operation, every step starts after
// the operation was created and finishes after it started, and the
// operation finishes after all its steps.
func checkTimeOrder(ops []opView) Verdict {
	var evidence []string
	created := slices.Clone(ops) // newest first
	slices.Reverse(created)
	var prev *opView
	var prevBackup *opView
	for i := range created {
		op := &created[i]
		if prev != nil && op.CreatedAt.Before(prev.CreatedAt) {
			evidence = append(evidence, fmt.Sprintf("%s created at %s, after %s created at %s (revision %d, %d)",
				op.ID, op.CreatedAt.Format(time.RFC3339Nano), prev.ID, prev.CreatedAt.Format(time.RFC3339Nano), op.Revision, prev.Revision))
		}
		prev = op
		if op.Kind == "backup" && op.BackupID != "" {
			if prevBackup != nil && op.BackupID <= prevBackup.BackupID {
				evidence = append(evidence, fmt.Sprintf("backup id %s (%s) does not sort after %s (%s), created before it", op.BackupID, op.ID, prevBackup.BackupID, prevBackup.ID))
			}
			prevBackup = op
		}
		last := op.CreatedAt
		for _, st := range op.Steps {
			if !st.StartedAt.IsZero() && st.StartedAt.Before(op.CreatedAt) {
				evidence = append(evidence, fmt.Sprintf("%s step %s@%s started at %s, before the operation was created at %s", op.ID, st.Name, st.Node,
					st.StartedAt.Format(time.RFC3339Nano), op.CreatedAt.Format(time.RFC3339Nano)))
			}
			if !st.FinishedAt.IsZero() && st.FinishedAt.Before(st.StartedAt) {
				evidence = append(evidence, fmt.Sprintf("%s step %s@%s finished at %s, before it started at %s", op.ID, st.Name, st.Node,
					st.FinishedAt.Format(time.RFC3339Nano), st.StartedAt.Format(time.RFC3339Nano)))
			}
			for _, t := range []time.Time{st.StartedAt, st.FinishedAt} {
				if t.After(last) {
					last = t
				}
			}
		}
		if !op.FinishedAt.IsZero() && op.FinishedAt.Before(last) {
			evidence = append(evidence, fmt.Sprintf("%s finished at %s, before its latest step time %s", op.ID, op.FinishedAt.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano)))
		}
	}
	var span string
	if len(created) > 0 {
		span = fmt.Sprintf(" (created %s … %s)", created[0].CreatedAt.Format(time.RFC3339), created[len(created)-1].CreatedAt.Format(time.RFC3339))
	}
	return verdict(CheckTimeOrder, evidence, "%d operations in creation order%s: creation times, backup ids and step times in order", len(created), span)
}

// checkGCSafety runs a cleanup and a garbage collection after healing,
// then an offline verify that reads every blob, then restores what the
// cleanup kept.
func checkGCSafety(ctx context.Context, c *Cluster, scratch string, expected []AckedBackup, writers map[string]*Writer) Verdict {
	var evidence []string
	cl := &Client{c: c, http: quick}
	for _, step := range []struct{ path, id string }{{"/v1/cleanups", "final-cleanup"}, {"/v1/gc", "final-gc"}} {
		body := map[string]any{"id": step.id}
		if step.id == "final-cleanup" {
			body["policy"] = map[string]any{"keep_last": 3}
		}
		if code, err := cl.post(ctx, c.Agents[0], step.path, body, nil); err != nil || (code != 200 && code != 202) {
			return verdict(CheckGCSafety, []string{fmt.Sprintf("start %s: %d %v", step.id, code, err)}, "could not run")
		}
		deadline := time.Now().Add(3 * time.Minute)
		for {
			var op opView
			if getJSON(ctx, quick, c.Agents[0].URL()+"/v1/operations/"+step.id+"?wait=2s&revision=0", &op) == nil && op.State != "running" && op.State != "" {
				if op.State != "succeeded" {
					evidence = append(evidence, fmt.Sprintf("%s: %s %s", step.id, op.State, op.Error))
				}
				break
			}
			if time.Now().After(deadline) {
				return verdict(CheckGCSafety, []string{step.id + " did not finish"}, "could not run")
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	verify := exec.Command(c.Bin, "verify", "--repository", c.Repo, "--key-file", c.KeyFile, "--read-data")
	verify.Env = append(os.Environ(), c.env...)
	out, err := verify.CombinedOutput()
	if err != nil {
		evidence = append(evidence, fmt.Sprintf("verify --read-data: %v\n%s", err, out))
	}
	var list struct {
		Backups []struct {
			BackupID string `json:"backup_id"`
		} `json:"backups"`
	}
	_ = getJSON(ctx, quick, c.Agents[0].URL()+"/v1/backups?limit=0", &list)
	kept := 0
	for _, kb := range list.Backups {
		for _, b := range expected {
			if b.BackupID != kb.BackupID {
				continue
			}
			kept++
			for _, a := range c.Agents {
				v, err := restoreAndCompare(ctx, c, scratch, "after-gc", a, b, writers[a.Tree].States())
				if err != nil || !v.Match {
					evidence = append(evidence, fmt.Sprintf("after gc, %s on %s: %v %s", b.BackupID, a.ID(), err, v.Detail))
				}
			}
		}
	}
	return verdict(CheckGCSafety, evidence, "cleanup (keep 3) and gc ran, verify --read-data passed=%v, %d kept acknowledged backups restore-checked on %d nodes", err == nil, kept, len(c.Agents))
}
