package coord

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// lockKind is the repository lock an operation kind holds: writers and
// readers share, garbage collection is exclusive (docs/gc-safety.md).
func lockKind(k fsm.OpKind) storage.LockKind {
	if k == fsm.KindGC || k == fsm.KindCleanup || k == fsm.KindRepair {
		return storage.LockExclusive
	}
	return storage.LockShared
}

// locked wraps steps in lock ... unlock(always).
func locked(steps ...fsm.Step) []fsm.Step {
	out := append([]fsm.Step{{Name: wire.StepLock}}, steps...)
	return append(out, fsm.Step{Name: wire.StepUnlock, Always: true})
}

// Phases of the plans: the per-node steps of one phase run side by side.
const (
	phaseSnapshot = 1
	phaseUpload   = 2
	phaseRelease  = 3
	phaseRestore  = 4
)

// backupPlan is the fixed plan of a backup of nodes. Every node snapshots
// (all at once) before any uploads, so the backup is as close to one
// instant as the nodes allow; with several nodes a dedup step assigns each
// missing chunk to one node before the uploads run side by side; release
// runs even when an earlier step failed.
func backupPlan(nodes []string) []fsm.Step {
	var steps []fsm.Step
	for _, n := range nodes {
		steps = append(steps, fsm.Step{Name: wire.StepSnapshot, Node: n, Phase: phaseSnapshot})
	}
	if len(nodes) > 1 {
		steps = append(steps, fsm.Step{Name: wire.StepDedup})
	}
	for _, n := range nodes {
		steps = append(steps, fsm.Step{Name: wire.StepUpload, Node: n, Phase: phaseUpload})
	}
	steps = append(steps, fsm.Step{Name: wire.StepManifest})
	for _, n := range nodes {
		steps = append(steps, fsm.Step{Name: wire.StepRelease, Node: n, Always: true, Phase: phaseRelease})
	}
	return locked(steps...)
}

// restoreSteps turns a plugin's restore plan into the operation's steps:
// each phase's actions side by side, a phase after the other, and, when
// the plan stages files, a last phase (run always) that removes them on
// every node. It also returns each node's input of the first phase.
func restoreSteps(plan plugin.Plan, assign map[string]wire.RestoreInput) (map[string]wire.RestoreInput, []fsm.Step, error) {
	if len(plan.Phases) == 0 {
		return nil, nil, errors.New("the restore plan has no phase")
	}
	first := map[string]wire.RestoreInput{}
	var steps []fsm.Step
	for i, ph := range plan.Phases {
		for _, a := range ph.Actions {
			in, ok := assign[a.Node]
			if !ok {
				return nil, nil, fmt.Errorf("the restore plan names node %s, which the restore does not involve", a.Node)
			}
			in.Plugin, in.Target = a.Input, a.Target
			if a.Source != "" {
				// The action downloads another backed-up node's files
				// (a restore onto another number of nodes).
				in.SourceNode, in.Clear = a.Source, false
			}
			in.BackupID, in.LogArchive = a.Backup, a.LogArchive
			if i == 0 {
				first[a.Node] = in
			}
			b, err := json.Marshal(in)
			if err != nil {
				return nil, nil, err
			}
			steps = append(steps, fsm.Step{Name: wire.StepRestore, Node: a.Node, Phase: phaseRestore + i, Always: a.Always, Input: b})
		}
	}
	if plan.Staged {
		for _, n := range slices.Sorted(maps.Keys(assign)) {
			b, _ := json.Marshal(wire.RestoreInput{SourceNode: assign[n].SourceNode, Cleanup: true})
			steps = append(steps, fsm.Step{Name: wire.StepRestore, Node: n, Phase: phaseRestore + len(plan.Phases), Always: true, Input: b})
		}
	}
	return first, locked(steps...), nil
}

// checkActionSources refuses a plan whose action names a source that is
// not a node of the backup: a planner bug, which no node should find out
// half way through a restore.
// An action that names another backup must name one of the later ones
// the planner was given, and a node of it.
func checkActionSources(plan plugin.Plan, backup []NodeInfo, later []plugin.LaterBackup) error {
	for _, ph := range plan.Phases {
		for _, a := range ph.Actions {
			if a.Backup != "" && a.LogArchive != "" {
				return fmt.Errorf("the restore plan has node %s download from backup %s and log archive %s at once", a.Node, a.Backup, a.LogArchive)
			}
			if a.LogArchive != "" {
				i := slices.IndexFunc(later, func(l plugin.LaterBackup) bool { return l.LogArchive == a.LogArchive })
				if i < 0 || a.Source == "" || !slices.ContainsFunc(later[i].Nodes, func(n plugin.NodeAssignment) bool { return n.Source == a.Source }) {
					return fmt.Errorf("the restore plan has node %s download node %q of log archive %s, which is not one of this restore", a.Node, a.Source, a.LogArchive)
				}
				continue
			}
			if a.Backup != "" {
				i := slices.IndexFunc(later, func(l plugin.LaterBackup) bool { return l.BackupID == a.Backup })
				if i < 0 {
					return fmt.Errorf("the restore plan has node %s download backup %s, which is not a later backup of this restore", a.Node, a.Backup)
				}
				if a.Source == "" || !slices.ContainsFunc(later[i].Nodes, func(n plugin.NodeAssignment) bool { return n.Source == a.Source }) {
					return fmt.Errorf("the restore plan has node %s download node %q of backup %s, which is not a node of it", a.Node, a.Source, a.Backup)
				}
				continue
			}
			if a.Source != "" && !slices.ContainsFunc(backup, func(b NodeInfo) bool { return b.ID == a.Source }) {
				return fmt.Errorf("the restore plan has node %s download node %s, which is not a node of the backup", a.Node, a.Source)
			}
		}
	}
	return nil
}

// NodeInfo is a node as restore mapping sees it.
type NodeInfo struct {
	ID   string
	Zone string
}

// mapRestore decides which backed-up node each current node receives:
// an explicit mapping first, then the same id, then the same availability
// zone, then the remaining ones by order of ids. A current node left over
// is refused unless clearUnmapped; a backed-up node left over is always
// refused (its data would be restored nowhere).
//
// With only set, just that current node is restored and nodes left over
// elsewhere do not matter.
func mapRestore(current, backup []NodeInfo, explicit map[string]string, clearUnmapped bool, only string) (map[string]wire.RestoreInput, error) {
	out, _, err := mapNodes(current, backup, explicit, clearUnmapped, only, false)
	return out, err
}

// mapNodes is mapRestore, and for a driver that reshapes (restores onto
// a cluster of another size) it refuses no node left over: a current
// node without a counterpart is Clear (the driver decides what it does)
// and the backed-up nodes no current node receives are returned as
// unplaced, in backup order (the driver's plan places their files).
func mapNodes(current, backup []NodeInfo, explicit map[string]string, clearUnmapped bool, only string, reshape bool) (map[string]wire.RestoreInput, []string, error) {
	if reshape {
		clearUnmapped = true
	}
	out := map[string]wire.RestoreInput{}
	used := map[string]bool{}
	cur := map[string]bool{}
	src := map[string]NodeInfo{}
	for _, c := range current {
		cur[c.ID] = true
	}
	for _, b := range backup {
		src[b.ID] = b
	}
	for c, b := range explicit {
		if !cur[c] {
			return nil, nil, fmt.Errorf("%w: mapping names %s, which is not a current node", wire.ErrBadRequest, c)
		}
		if _, ok := src[b]; !ok {
			return nil, nil, fmt.Errorf("%w: mapping names %s, which is not a node of the backup", wire.ErrBadRequest, b)
		}
		if used[b] {
			return nil, nil, fmt.Errorf("%w: mapping gives backup node %s to two nodes", wire.ErrBadRequest, b)
		}
		out[c], used[b] = wire.RestoreInput{SourceNode: b}, true
	}
	pass := func(match func(c, b NodeInfo) bool) {
		for _, c := range current {
			if _, done := out[c.ID]; done {
				continue
			}
			for _, b := range backup {
				if !used[b.ID] && match(c, b) {
					out[c.ID], used[b.ID] = wire.RestoreInput{SourceNode: b.ID}, true
					break
				}
			}
		}
	}
	pass(func(c, b NodeInfo) bool { return c.ID == b.ID })
	pass(func(c, b NodeInfo) bool { return c.Zone != "" && c.Zone == b.Zone && !cur[b.ID] })
	pass(func(c, b NodeInfo) bool { return !cur[b.ID] })
	if only != "" {
		if !cur[only] {
			return nil, nil, fmt.Errorf("%w: %s is not a current node", wire.ErrBadRequest, only)
		}
		in, ok := out[only]
		if !ok {
			if !clearUnmapped {
				return nil, nil, fmt.Errorf("%w: node %s has no counterpart in the backup (give a mapping)", wire.ErrBadRequest, only)
			}
			in = wire.RestoreInput{Clear: true}
		}
		return map[string]wire.RestoreInput{only: in}, nil, nil
	}
	var unmappedCur, unmappedSrc []string
	for _, c := range current {
		if _, ok := out[c.ID]; !ok {
			unmappedCur = append(unmappedCur, c.ID)
		}
	}
	for _, b := range backup {
		if !used[b.ID] {
			unmappedSrc = append(unmappedSrc, b.ID)
		}
	}
	if len(unmappedSrc) > 0 && !reshape {
		return nil, nil, fmt.Errorf("%w: the backup's nodes %v have no current node to restore onto (give a mapping, or restore them with --node)", wire.ErrBadRequest, unmappedSrc)
	}
	if len(unmappedCur) > 0 {
		if !clearUnmapped {
			return nil, nil, fmt.Errorf("%w: current nodes %v have no counterpart in the backup (pass clear_unmapped to empty them)", wire.ErrBadRequest, unmappedCur)
		}
		for _, c := range unmappedCur {
			out[c] = wire.RestoreInput{Clear: true}
		}
	}
	return out, unmappedSrc, nil
}

func deletePlan() []fsm.Step { return []fsm.Step{{Name: wire.StepDelete}} }

func gcPlan() []fsm.Step { return locked(fsm.Step{Name: wire.StepGC}) }

// cleanupPlan forgets what the retention decision in (made when the
// cleanup started) drops, then collects garbage. A nil in (plans made
// before decisions were fixed at start) decides in the forget step.
func cleanupPlan(in *ForgetInput) []fsm.Step {
	forget := fsm.Step{Name: wire.StepForget}
	if in != nil {
		forget.Input, _ = json.Marshal(in)
	}
	return locked(forget, fsm.Step{Name: wire.StepGC})
}

// ForgetInput is a forget step's input: the retention decision, as the
// backups it drops. The plan lives in the Raft log, whose entries stop at
// 1 MiB: it names only what is dropped (about 33 bytes a backup; the full
// decisions, 108 bytes each with their reasons, put 10,000 backups over
// the limit), and at most maxForget of them.
type ForgetInput struct {
	Policy storage.RetentionPolicy `json:"policy"`
	// Drop are the backups to delete, oldest first.
	Drop []string `json:"drop,omitempty"`
	// Kept counts the backups the decision keeps; Remaining those it
	// drops beyond maxForget, left to the next cleanup.
	Kept      int `json:"kept,omitempty"`
	Remaining int `json:"remaining,omitempty"`
	// Decisions is the form plans had before Drop (every backup and its
	// decision): a log written then still replays.
	Decisions []storage.Decision `json:"decisions,omitempty"`
}

// maxForget bounds the backups one cleanup deletes: their ids fit a Raft
// entry with room to spare (10,000 × 33 bytes).
const maxForget = 10_000

// newForgetInput turns a retention decision (newest first) into a plan's
// input: the dropped backups, oldest first, at most maxForget.
func newForgetInput(policy storage.RetentionPolicy, decisions []storage.Decision) *ForgetInput {
	in := &ForgetInput{Policy: policy}
	for i := len(decisions) - 1; i >= 0; i-- {
		switch d := decisions[i]; {
		case d.Keep:
			in.Kept++
		case len(in.Drop) < maxForget:
			in.Drop = append(in.Drop, d.BackupID)
		default:
			in.Remaining++
		}
	}
	return in
}

// drops are the backups the input deletes, in either form.
func (in *ForgetInput) drops() []string {
	if len(in.Drop) > 0 || len(in.Decisions) == 0 {
		return in.Drop
	}
	var drop []string
	for _, d := range in.Decisions {
		if !d.Keep {
			drop = append(drop, d.BackupID)
		}
	}
	return drop
}

func verifyPlan() []fsm.Step { return locked(fsm.Step{Name: wire.StepVerify}) }

func repairPlan() []fsm.Step { return locked(fsm.Step{Name: wire.StepRepair}) }

// newBackupID derives a time-sortable backup id from the operation's
// leader-stamped start time (to the microsecond, so backups started in the
// same second still sort in start order) and its id, so a given operation
// always names the same backup.
func newBackupID(opID string, t time.Time) string {
	h := sha256.Sum256([]byte(opID))
	return t.UTC().Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(h[:3])
}
