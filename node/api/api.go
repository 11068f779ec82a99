// Package api holds the JSON types of crayfish's public HTTP API (/v1),
// shared by the agent's server and the Go client. It owns wire shapes only:
// no behaviour, no I/O.
package api

import (
	"encoding/json"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/storage"
)

// Error codes carried in ErrorResponse.Code.
const (
	CodeBadRequest = "bad_request" // 400: malformed input
	CodeNotFound   = "not_found"   // 404: unknown operation or backup
	CodeBusy       = "busy"        // 409: another operation holds the cluster lock
	CodeConflict   = "conflict"    // 409: operation id reused for a different request
	CodeNoLeader   = "no_leader"   // 503: no Raft leader; retry with the same id
	CodeStaleEpoch = "stale_epoch" // 409: a node refused a deposed coordinator's call
	CodeInternal   = "internal"    // 500
	CodeTooLarge   = "too_large"   // 413: request body over the endpoint's limit
	// CodeOtherRepository (409): a member the operation needs writes to
	// another repository than the cluster's.
	CodeOtherRepository = "other_repository"
)

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	// RunningOperationID is set with CodeBusy.
	RunningOperationID string `json:"running_operation_id,omitempty"`
}

// StartBackupRequest is the body of POST /v1/backups. ID is an optional
// idempotency key: the same id twice returns the same operation.
type StartBackupRequest struct {
	ID string `json:"id,omitempty"`
	// CallbackURL receives a POST when the operation ends (docs/operations.md).
	CallbackURL string `json:"callback_url,omitempty"`
}

// StartRestoreRequest is the body of POST /v1/restores. An empty BackupID
// means the latest backup. Target restores into that directory on each
// node instead of the configured root.
type StartRestoreRequest struct {
	ID string `json:"id,omitempty"`
	// CallbackURL receives a POST when the operation ends (docs/operations.md).
	CallbackURL string `json:"callback_url,omitempty"`
	BackupID    string `json:"backup_id,omitempty"`
	Target      string `json:"target,omitempty"`
	RestoreOptions
}

// RestoreOptions say which current node receives which backed-up node's
// files. Without Mapping, a node receives the backup's node of the same
// id, then one of its availability zone, then by order of ids.
type RestoreOptions struct {
	// Node restores this current node only.
	Node string `json:"node,omitempty"`
	// Mapping maps current node ids to the backup's node ids.
	Mapping map[string]string `json:"mapping,omitempty"`
	// ClearUnmapped empties current nodes that have no counterpart in the
	// backup instead of refusing the restore.
	ClearUnmapped bool `json:"clear_unmapped,omitempty"`
	// Select restores only part of the backup, as its plugin reads the
	// patterns: path globs for files ("etc/app.conf", "data/**/*.db"),
	// keyspace.table or keyspace.* for Cassandra (a table restore into
	// the running cluster). Present, it must name at least one non-empty
	// pattern, and each must match something in the backup.
	Select []string `json:"select,omitempty"`
	// Tables is Select under its older name (Cassandra); give one of the
	// two.
	Tables []string `json:"tables,omitempty"`
	// Delete makes a restore into a target remove what the backup lacks
	// there. Without it a target is additive: the backup's files are
	// created or overwritten and nothing else is touched. A restore into
	// the nodes' configured roots always mirrors the backup.
	Delete bool `json:"delete,omitempty"`
	// ToTime restores the data as of this instant (RFC 3339): from the
	// newest backup finished at or before it (or the named one, which
	// must have finished by then) plus what later backups carry of the
	// database's log (Cassandra's archived commit log). Plugins that
	// cannot replay to a time refuse it.
	ToTime *time.Time `json:"to_time,omitempty"`
}

// RestorePreview is the answer of POST /v1/restores/preview: what the
// same restore request would do on each node. Nothing is changed.
type RestorePreview struct {
	BackupID string               `json:"backup_id"`
	Nodes    []NodeRestorePreview `json:"nodes"`
}

// NodeRestorePreview is one node's part of a RestorePreview.
type NodeRestorePreview struct {
	Node       string `json:"node"`
	SourceNode string `json:"source_node,omitempty"`
	// Target is where the node would write (its root, or the request's
	// target with the node's directory); RealTarget is its real path,
	// symlinks resolved.
	Target     string `json:"target"`
	RealTarget string `json:"real_target,omitempty"`
	// Mode is "mirror" (what the backup lacks is deleted) or "additive".
	Mode string `json:"mode"`
	// Create, Overwrite and Unchanged count regular files: not there yet,
	// there with another size or mtime, there with the same size and
	// mtime (the restore still compares their SHA-256).
	Create    int64 `json:"create"`
	Overwrite int64 `json:"overwrite"`
	Unchanged int64 `json:"unchanged"`
	// Delete counts the paths removed (mirror mode only); DeletePaths
	// lists the first 100.
	Delete        int64    `json:"delete"`
	DeletePaths   []string `json:"delete_paths,omitempty"`
	Dirs          int64    `json:"dirs"`
	Symlinks      int64    `json:"symlinks"`
	DownloadBytes int64    `json:"download_bytes"`
	FreeBytes     uint64   `json:"free_bytes"`
	// Fits says DownloadBytes fit in FreeBytes.
	Fits bool `json:"fits"`
	// Error says why the node could not be previewed (unreachable, or it
	// refused the target); the other fields are then empty.
	Error string `json:"error,omitempty"`
}

// StartDeleteRequest is the body of POST /v1/deletions.
type StartDeleteRequest struct {
	ID        string   `json:"id,omitempty"`
	BackupIDs []string `json:"backup_ids"`
	// CallbackURL receives a POST when the operation ends (docs/operations.md).
	CallbackURL string `json:"callback_url,omitempty"`
}

// Operation is the answer of every operation endpoint.
type Operation = fsm.Operation

// StepResultPage is one page of a step's recorded result (GET
// /v1/operations/{id}/steps/{n}/result): the result's lists (its
// top-level fields that are arrays, in the order of their names) are
// paged item by item; the first page (no cursor) also carries the
// result's other fields. A client rebuilds the whole result by taking the
// first page's object and appending each later page's items to its lists
// (client.StepResult).
type StepResultPage struct {
	OperationID string `json:"operation_id"`
	Step        int    `json:"step"`
	Name        string `json:"name"`
	Node        string `json:"node,omitempty"`
	// Result is this page's part of the result, a JSON object (null when
	// the step recorded none).
	Result json.RawMessage `json:"result"`
	// Bytes is the size of the whole result; Lists the full length of each
	// of its lists.
	Bytes int            `json:"bytes"`
	Lists map[string]int `json:"lists,omitempty"`
	// NextCursor asks for the next page; empty on the last one.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Paging of step results: GET /v1/operations/{id} serves a result over
// InlineResultBytes cut to the first InlineResultItems items of each list
// (marked Step.ResultPaged); a page holds up to the limit asked (default
// DefaultPageItems, at most MaxPageItems) items and about MaxPageBytes.
const (
	InlineResultBytes = 16 << 10
	InlineResultItems = 10
	DefaultPageItems  = 100
	MaxPageItems      = 1000
	MaxPageBytes      = 256 << 10
)

// StartedOperation is the answer of a start request that reused the id of
// an operation already started: that operation, with Existing set.
type StartedOperation struct {
	*fsm.Operation
	Existing bool `json:"existing,omitempty"`
}

// OperationList is the body of GET /v1/operations.
type OperationList struct {
	Operations []*fsm.Operation `json:"operations"`
}

// BackupList is the body of GET /v1/backups: newest first.
type BackupList struct {
	Backups    []storage.Summary `json:"backups"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// BackupDetail is the body of GET /v1/backups/{id}. Manifest carries the
// file lists only when ?files=true was given; otherwise its nodes have
// stats but no files.
type BackupDetail struct {
	Summary  storage.Summary   `json:"summary"`
	Manifest *storage.Manifest `json:"manifest"`
}

// Member is one server of the Raft configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// Suffrage is the Raft role (Voter, Nonvoter), "" if not in Raft.
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	// Gossip is the gossip state (alive, dead, left), "" if gossip does
	// not know the node.
	Gossip     string    `json:"gossip"`
	GossipAddr string    `json:"gossip_addr,omitempty"`
	HTTPAddr   string    `json:"http_addr,omitempty"`
	Zone       string    `json:"zone,omitempty"`
	Version    string    `json:"version,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	// RepositoryID is the id of the repository the member writes to (from
	// gossip); OtherRepository is set when it is not this node's: the
	// leader does not admit such a member to Raft.
	RepositoryID    string `json:"repository_id,omitempty"`
	OtherRepository bool   `json:"other_repository,omitempty"`
}

// RemoveNodeRequest is the body of POST /v1/cluster/remove.
type RemoveNodeRequest struct {
	Node string `json:"node"`
}

// ClusterStatus is the body of GET /v1/cluster, as seen by the answering node.
type ClusterStatus struct {
	NodeID string `json:"node_id"`
	// RepositoryID is the id of the repository this node writes to.
	RepositoryID string    `json:"repository_id,omitempty"`
	State        string    `json:"state"` // Raft role: Leader, Follower, Candidate, Shutdown
	LeaderID     string    `json:"leader_id"`
	LeaderAddr   string    `json:"leader_addr"`
	Term         uint64    `json:"term"`
	CommitIndex  uint64    `json:"commit_index"`
	AppliedIndex uint64    `json:"applied_index"`
	LastContact  string    `json:"last_contact"` // "never", "0" on the leader, or a duration
	Epoch        uint64    `json:"epoch"`
	Coordinator  string    `json:"coordinator"`
	Members      []Member  `json:"members"`
	Time         time.Time `json:"time"`
}

// Version is the body of GET /v1/version.
type Version struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
}

// StartGCRequest is the body of POST /v1/gc.
type StartGCRequest struct {
	ID string `json:"id,omitempty"`
	// CallbackURL receives a POST when the operation ends (docs/operations.md).
	CallbackURL string `json:"callback_url,omitempty"`
}

// CleanupOptions are a cleanup's settings; an empty Policy means the
// agent's configured retention policy.
type CleanupOptions struct {
	Policy *storage.RetentionPolicy `json:"policy,omitempty"`
}

// StartCleanupRequest is the body of POST /v1/cleanups.
type StartCleanupRequest struct {
	ID string `json:"id,omitempty"`
	// CallbackURL receives a POST when the operation ends (docs/operations.md).
	CallbackURL string `json:"callback_url,omitempty"`
	CleanupOptions
}

// CleanupPreview is the body of GET /v1/cleanups/preview: what a cleanup
// with the policy would keep and delete, newest first. Nothing changes.
type CleanupPreview struct {
	Policy    storage.RetentionPolicy `json:"policy"`
	Decisions []storage.Decision      `json:"decisions"`
}

// VerifyOptions say how deep a verify reads.
type VerifyOptions struct {
	// ReadData downloads every pack and authenticates every blob.
	ReadData bool `json:"read_data,omitempty"`
	// ReadDataSubset (0 < p ≤ 1) downloads that fraction of the packs.
	ReadDataSubset float64 `json:"read_data_subset,omitempty"`
}

// RepairOptions say which repair runs and how.
type RepairOptions struct {
	// Kind is "index", "packs" or "snapshots".
	Kind string `json:"kind"`
	// DryRun reports what the repair would do; nothing changes.
	DryRun bool `json:"dry_run,omitempty"`
	// Forget (snapshots only) deletes the snapshots of backups whose
	// content is gone for good.
	Forget bool `json:"forget,omitempty"`
}

// StartRepairRequest is the body of POST /v1/repairs.
type StartRepairRequest struct {
	ID string `json:"id,omitempty"`
	// CallbackURL receives a POST when the operation ends (docs/operations.md).
	CallbackURL string `json:"callback_url,omitempty"`
	RepairOptions
}

// StartVerifyRequest is the body of POST /v1/verifications.
type StartVerifyRequest struct {
	ID string `json:"id,omitempty"`
	// CallbackURL receives a POST when the operation ends (docs/operations.md).
	CallbackURL string `json:"callback_url,omitempty"`
	VerifyOptions
}

// Selection is the request's selection: Select, or Tables (its alias).
func (o RestoreOptions) Selection() []string {
	if o.Select != nil {
		return o.Select
	}
	return o.Tables
}
