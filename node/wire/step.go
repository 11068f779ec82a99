package wire

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/plugin"
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
	StepRepair   = "repair"   // cluster: repair index, packs or snapshots
	StepDedup    = "dedup"    // cluster: assign each missing chunk to one node
	StepChunks   = "chunks"   // node call (not a plan step): list a partition of a snapshot's chunks
	StepAssign   = "assign"   // node call (not a plan step): keep the dedup decision for a partition
	StepDrill    = "drill"    // node: restore into scratch space, check every byte, remove it
)

// StepRef identifies the step on whose behalf a node acts. Every side
// effect a coordinator asks of a node carries one.
type StepRef struct {
	OpID  string `json:"op_id"`
	Epoch uint64 `json:"epoch"`
	Step  int    `json:"step"`
	// Repo is the id of the coordinator's repository: a node with another
	// repository refuses the step rather than write where the cluster does
	// not read.
	Repo string `json:"repo,omitempty"`
}

// Worker is the node side of an operation: the side effects the
// coordinator asks of one node. Every call carries a StepRef and is
// idempotent, so a coordinator may repeat it after a failover.
type Worker interface {
	Snapshot(ctx context.Context, ref StepRef, opts SnapshotOptions, progress ProgressFunc) (SnapshotResult, error)
	// Upload stores what the repository lacks, except the chunks in skip
	// (assigned to another node by the cross-node dedup step).
	Upload(ctx context.Context, ref StepRef, skip []storage.ObjectID, progress ProgressFunc) (UploadResult, error)
	// UploadDeduped is Upload with the skip list the node kept from the
	// dedup step's AssignChunks calls, checked against d (from the log).
	UploadDeduped(ctx context.Context, ref StepRef, d DedupRef, progress ProgressFunc) (UploadResult, error)
	// Chunks counts the distinct chunks of the operation's snapshot on
	// this node, or lists those of one partition (ChunksQuery).
	Chunks(ctx context.Context, ref StepRef, q ChunksQuery) (ChunksResult, error)
	// AssignChunks keeps the dedup step's decision for one partition on
	// the node, for its upload step.
	AssignChunks(ctx context.Context, ref StepRef, a ChunkAssignment) error
	Restore(ctx context.Context, ref StepRef, req RestoreRequest, progress ProgressFunc) (RestoreResult, error)
	Release(ctx context.Context, ref StepRef) error
}

// ProgressFunc receives a step's counters while it runs.
type ProgressFunc func(fsm.Progress)

// SnapshotResult is the recorded result of a snapshot step.
type SnapshotResult struct {
	Files    int64    `json:"files"`
	Dirs     int64    `json:"dirs"`
	Symlinks int64    `json:"symlinks"`
	Bytes    int64    `json:"bytes"`
	Warnings []string `json:"warnings,omitempty"`
	Zone     string   `json:"zone,omitempty"`
	// Plugin is the database plugin's record of the node (manifest).
	Plugin json.RawMessage `json:"plugin,omitempty"`
}

// ChunkRef is one chunk of a snapshot and its plaintext size.
type ChunkRef struct {
	ID   storage.ObjectID `json:"id"`
	Size int64            `json:"size"`
}

// ChunksResult answers a ChunksQuery: the snapshot's distinct chunks
// counted, and those of the partition asked for.
type ChunksResult struct {
	// Partitions and Partition echo the query: an agent that answers
	// without them does not partition (an older one).
	Partitions int `json:"partitions"`
	Partition  int `json:"partition"`
	// Count and Bytes are the snapshot's distinct chunks and their
	// plaintext bytes, over all partitions.
	Count int64 `json:"count"`
	Bytes int64 `json:"bytes"`
	// Chunks are the partition's chunks in ascending id order (none when
	// the query asked for the counts only).
	Chunks []ChunkRef `json:"chunks"`
}

// UploadResult is the recorded result of an upload step. Counts are of
// chunks (blobs); Tree and Entries locate the node's file list, so the
// coordinator can write the snapshot from the FSM alone.
type UploadResult struct {
	Uploaded            int64              `json:"uploaded"`
	UploadedBytes       int64              `json:"uploaded_bytes"`
	StoredBytes         int64              `json:"stored_bytes"`
	AlreadyPresent      int64              `json:"already_present"`
	AlreadyPresentBytes int64              `json:"already_present_bytes"`
	Entries             int64              `json:"entries"`
	Tree                []storage.ObjectID `json:"tree"`
}

// RestoreRequest says what a node restores and where.
type RestoreRequest struct {
	BackupID string `json:"backup_id"`
	// LogArchive, when set, is where the files come from instead of the
	// backup: a log archive (storage.LogArchive) and its one node.
	LogArchive string `json:"log_archive,omitempty"`
	// Target overrides the configured root.
	Target string `json:"target,omitempty"`
	// SourceNode is the backup's node whose files this node receives
	// (default: the node of the same id).
	SourceNode string `json:"source_node,omitempty"`
	// Clear empties the target: the node has no counterpart in the backup.
	Clear bool `json:"clear,omitempty"`
	// Plugin is the backup's plugin's part of the step (its planner's
	// action input: for files the selection and --delete, for Cassandra
	// an action).
	Plugin json.RawMessage `json:"plugin,omitempty"`
	// Cleanup removes the operation's staged files (the plugin restore's
	// last step).
	Cleanup bool `json:"cleanup,omitempty"`
	// Earlier are the plugin results of the operation's earlier restore
	// steps (from the replicated state, so a new coordinator sends the
	// same).
	Earlier []plugin.StepResult `json:"earlier,omitempty"`
	// Drill restores SourceNode's files into the node's own scratch
	// space instead, checks every file against the manifest and with the
	// plugin's check, and removes the scratch space (Target, Plugin,
	// Clear and Cleanup are ignored).
	Drill bool `json:"drill,omitempty"`
}

// RestoreResult is the recorded result of a restore step.
type RestoreResult struct {
	Target          string `json:"target"`
	SourceNode      string `json:"source_node"`
	Files           int64  `json:"files"`
	Dirs            int64  `json:"dirs"`
	Symlinks        int64  `json:"symlinks"`
	Downloaded      int64  `json:"downloaded"`
	DownloadedBytes int64  `json:"downloaded_bytes"`
	Kept            int64  `json:"kept"`
	KeptBytes       int64  `json:"kept_bytes"`
	Removed         int64  `json:"removed"`
	// Damaged names the files left out because chunks of theirs are
	// missing or corrupt in the repository: the first 1,000 by path, of
	// DamagedTotal. A step with damage fails (ErrDamaged) and still
	// records this result.
	Damaged      []DamagedFile `json:"damaged,omitempty"`
	DamagedTotal int64         `json:"damaged_total,omitempty"`
	// DamagedBlobs are the distinct damaged chunk ids (the first 1,000 of
	// DamagedBlobsTotal), for the repository to record as damaged.
	DamagedBlobs      []storage.ObjectID `json:"damaged_blobs,omitempty"`
	DamagedBlobsTotal int64              `json:"damaged_blobs_total,omitempty"`
	// Plugin is the plugin's result of the step (plugin.Plugin.Restore),
	// or of its drill check.
	Plugin json.RawMessage `json:"plugin,omitempty"`
	// Verified and VerifiedBytes count the files a drill read back and
	// found equal to the manifest.
	Verified      int64 `json:"verified,omitempty"`
	VerifiedBytes int64 `json:"verified_bytes,omitempty"`
}

// RestoreInput is a restore step's input: whose files the node receives.
type RestoreInput struct {
	SourceNode string `json:"source_node,omitempty"`
	// Clear empties the node (it has no counterpart in the backup).
	Clear bool `json:"clear,omitempty"`
	// Plugin is the plugin's part of the step (RestoreRequest.Plugin).
	Plugin json.RawMessage `json:"plugin,omitempty"`
	// Cleanup removes the staged files of a plugin restore.
	Cleanup bool `json:"cleanup,omitempty"`
	// Target is where the node restores when the request named a target
	// (its own directory below it when several nodes restore).
	Target string `json:"target,omitempty"`
	// BackupID is the backup this step downloads from when it is not the
	// restore's (a restore to a time takes later backups' logs).
	BackupID string `json:"backup_id,omitempty"`
	// LogArchive, instead, is the log archive this step downloads from
	// (a restore to a time replays logs shipped between backups).
	LogArchive string `json:"log_archive,omitempty"`
}

// StepRequest is what a coordinator asks of a node: one step of one
// operation, under a fencing epoch.
type StepRequest struct {
	Ref     StepRef         `json:"ref"`
	Name    string          `json:"name"`
	Restore *RestoreRequest `json:"restore,omitempty"`
	// Skip lists chunks another node uploads (cross-node dedup), as
	// coordinators before partitioned dedup sent them; Dedup replaces it.
	Skip []storage.ObjectID `json:"skip,omitempty"`
	// Dedup locates the skip list the node kept (UploadDeduped).
	Dedup *DedupRef `json:"dedup,omitempty"`
	// Chunks is the query of a chunks call, Assign the decision of an
	// assign call.
	Chunks *ChunksQuery     `json:"chunks,omitempty"`
	Assign *ChunkAssignment `json:"assign,omitempty"`
	// Snapshot tunes a snapshot step (nil: the zero options).
	Snapshot *SnapshotOptions `json:"snapshot,omitempty"`
}

// SnapshotOptions tune a snapshot step.
type SnapshotOptions struct {
	// Shared: other nodes snapshot in the same operation, and a dedup step
	// gives each chunk several of them hold to one uploader. The node then
	// saves as it reads only the small files, whose duplicates cost little,
	// and leaves larger ones to its upload step.
	Shared bool `json:"shared,omitempty"`
}

// JobStatus is a node's answer about a step it runs.
type JobStatus struct {
	State     string          `json:"state"` // running, done, failed
	Result    json.RawMessage `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
	Permanent bool            `json:"permanent,omitempty"`
	// Damaged: the step failed with ErrDamaged, and Result says what
	// was damaged.
	Damaged  bool          `json:"damaged,omitempty"`
	Progress *fsm.Progress `json:"progress,omitempty"`
}

// Job states.
const (
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// PreviewRequest is the body of POST /internal/v1/restore-preview.
type PreviewRequest struct {
	Restore RestoreRequest `json:"restore"`
	// CheckOnly stops after the target check (the start of a restore).
	CheckOnly bool `json:"check_only,omitempty"`
}

// Caller turns a function that runs any node step into a Worker: the
// coordinator's view of a node, whether the step goes through this node's
// job table (jobsWorker.do) or another node's internal API
// (RemoteWorker.run).
type Caller func(ctx context.Context, req StepRequest, progress ProgressFunc, out any) error

func (run Caller) Snapshot(ctx context.Context, ref StepRef, opts SnapshotOptions, progress ProgressFunc) (SnapshotResult, error) {
	var res SnapshotResult
	return res, run(ctx, StepRequest{Ref: ref, Name: StepSnapshot, Snapshot: &opts}, progress, &res)
}

func (run Caller) Upload(ctx context.Context, ref StepRef, skip []storage.ObjectID, progress ProgressFunc) (UploadResult, error) {
	var res UploadResult
	return res, run(ctx, StepRequest{Ref: ref, Name: StepUpload, Skip: skip}, progress, &res)
}

func (run Caller) UploadDeduped(ctx context.Context, ref StepRef, d DedupRef, progress ProgressFunc) (UploadResult, error) {
	var res UploadResult
	return res, run(ctx, StepRequest{Ref: ref, Name: StepUpload, Dedup: &d}, progress, &res)
}

func (run Caller) Restore(ctx context.Context, ref StepRef, req RestoreRequest, progress ProgressFunc) (RestoreResult, error) {
	var res RestoreResult
	return res, run(ctx, StepRequest{Ref: ref, Name: StepRestore, Restore: &req}, progress, &res)
}

func (run Caller) Release(ctx context.Context, ref StepRef) error {
	var res struct{}
	return run(ctx, StepRequest{Ref: ref, Name: StepRelease}, nil, &res)
}

func (run Caller) Chunks(ctx context.Context, ref StepRef, q ChunksQuery) (ChunksResult, error) {
	var res ChunksResult
	if err := run(ctx, StepRequest{Ref: ref, Name: StepChunks, Chunks: &q}, nil, &res); err != nil {
		return res, err
	}
	if res.Partitions != q.Partitions || res.Partition != q.Partition {
		return res, Permanent(fmt.Errorf("%w: the node answered partition %d of %d for partition %d of %d: an agent older than partitioned dedup?",
			ErrBadRequest, res.Partition, res.Partitions, q.Partition, q.Partitions))
	}
	return res, nil
}

func (run Caller) AssignChunks(ctx context.Context, ref StepRef, a ChunkAssignment) error {
	var res struct{}
	return run(ctx, StepRequest{Ref: ref, Name: StepAssign, Assign: &a}, nil, &res)
}

// Immediate reports whether a node call answers at once instead of
// running as a job: the dedup step's calls (chunks, assign) are quick,
// many per step, and each asks something new, so none is kept.
func Immediate(name string) bool { return name == StepChunks || name == StepAssign }

// NodePart chooses which backed-up node's files a node restores: the one
// of its id, or the only node of a single-node backup (a replacement
// agent after a disaster may have a new name).
func NodePart(m *storage.Manifest, nodeID string) *storage.NodeManifest {
	for i := range m.Nodes {
		if m.Nodes[i].NodeID == nodeID {
			return &m.Nodes[i]
		}
	}
	if len(m.Nodes) == 1 {
		return &m.Nodes[0]
	}
	return nil
}

// MaxSkipChunks bounds one node's skip list, so its upload request stays
// under the internal API's body limit (67 bytes of JSON per chunk id): 50,000
// chunks are up to 200 GiB of content another node uploads in one backup.
// Past it the node uploads shared chunks itself; the repository then
// stores a copy twice until gc repacks, which costs space, never data.
const MaxSkipChunks = 50_000
