package node

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/storage"
)

// Step names. A step with a node runs on that node; the others run on the
// coordinator.
const (
	StepSnapshot = "snapshot" // node: link the root into the data dir and hash it
	StepUpload   = "upload"   // node: upload content the repository lacks
	StepManifest = "manifest" // cluster: write the manifest, the backup's commit point
	StepRelease  = "release"  // node (always): drop the snapshot
	StepRestore  = "restore"  // node: make the tree equal to the backup
	StepDelete   = "delete"   // cluster: remove snapshots
	StepLock     = "lock"     // cluster: take the operation's repository lock
	StepUnlock   = "unlock"   // cluster (always): release it
	StepForget   = "forget"   // cluster: delete the backups a retention policy drops
	StepGC       = "gc"       // cluster: garbage-collect unreferenced blobs
	StepVerify   = "verify"   // cluster: check the repository
)

// lockKind is the repository lock an operation kind holds: writers and
// readers share, garbage collection is exclusive (docs/gc-safety.md).
func lockKind(k fsm.OpKind) storage.LockKind {
	if k == fsm.KindGC || k == fsm.KindCleanup {
		return storage.LockExclusive
	}
	return storage.LockShared
}

// locked wraps steps in lock ... unlock(always).
func locked(steps ...fsm.Step) []fsm.Step {
	out := append([]fsm.Step{{Name: StepLock}}, steps...)
	return append(out, fsm.Step{Name: StepUnlock, Always: true})
}

// backupPlan is the fixed plan of a backup of nodes. Every node snapshots
// before any uploads, so the backup is as close to one instant as the
// nodes allow; release runs even when an earlier step failed.
func backupPlan(nodes []string) []fsm.Step {
	var steps []fsm.Step
	for _, n := range nodes {
		steps = append(steps, fsm.Step{Name: StepSnapshot, Node: n})
	}
	for _, n := range nodes {
		steps = append(steps, fsm.Step{Name: StepUpload, Node: n})
	}
	steps = append(steps, fsm.Step{Name: StepManifest})
	for _, n := range nodes {
		steps = append(steps, fsm.Step{Name: StepRelease, Node: n, Always: true})
	}
	return locked(steps...)
}

func restorePlan(nodes []string) []fsm.Step {
	var steps []fsm.Step
	for _, n := range nodes {
		steps = append(steps, fsm.Step{Name: StepRestore, Node: n})
	}
	return locked(steps...)
}

func deletePlan() []fsm.Step { return []fsm.Step{{Name: StepDelete}} }

func gcPlan() []fsm.Step { return locked(fsm.Step{Name: StepGC}) }

func cleanupPlan() []fsm.Step { return locked(fsm.Step{Name: StepForget}, fsm.Step{Name: StepGC}) }

func verifyPlan() []fsm.Step { return locked(fsm.Step{Name: StepVerify}) }

// newBackupID derives a time-sortable backup id from the operation's
// leader-stamped start time (to the microsecond, so backups started in the
// same second still sort in start order) and its id, so a given operation
// always names the same backup.
func newBackupID(opID string, t time.Time) string {
	h := sha256.Sum256([]byte(opID))
	return t.UTC().Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(h[:3])
}
