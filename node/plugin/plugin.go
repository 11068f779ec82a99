package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"
)

// Driver is one database's plugin as cmd/crayfish registers it.
type Driver interface {
	// Name is the plugin's name in configuration (plugin: NAME) and in
	// the manifests of the backups it takes.
	Name() string
	// NewConfig returns a fresh configuration holding the defaults.
	NewConfig() Config
	// Open returns the node's plugin for cfg, which Finish has accepted.
	Open(cfg Config, env Env) (Plugin, error)
	// PlanRestore turns a restore request for a backup this plugin took
	// into phases of node actions, or a refusal (mark it with BadRequest).
	// It must be pure: no I/O, no clock.
	PlanRestore(req RestoreRequest) (Plan, error)
}

// Config is a plugin's configuration: a pointer to a struct whose fields
// carry `yaml:"key"` and `help:"..."` tags. Its keys are the driver's
// Prefix (see Prefixed) followed by the yaml key.
type Config interface {
	// Finish fills derived defaults and validates the configuration of
	// the node's active plugin, naming the first bad key.
	Finish(env Env) error
}

// Prefixed is implemented by a driver whose configuration keys carry a
// prefix ("cassandra_" → cassandra_hosts). A driver without it uses its
// name and an underscore.
type Prefixed interface {
	Prefix() string
}

// Prefix is the key prefix of d's configuration.
func Prefix(d Driver) string {
	if p, ok := d.(Prefixed); ok {
		return p.Prefix()
	}
	return d.Name() + "_"
}

// Env is what a plugin learns of its node.
type Env struct {
	NodeID string
	// DataDir is the agent's own state; a plugin may keep files below
	// DataDir/plugin/<name>.
	DataDir string
	Log     *slog.Logger
}

// Plugin is a database's part on one node. Every call may be repeated
// after a crash or a coordinator change and must then do the same.
type Plugin interface {
	// Snapshot captures what the backup of operation tag takes. It may
	// fill dir (created empty for it, removed with the operation) and
	// says which tree the node backs up.
	Snapshot(ctx context.Context, tag, dir string) (Source, error)
	// Release drops what Snapshot left outside dir. Releasing twice, or
	// what was never taken, is fine.
	Release(ctx context.Context, tag string) error
	// Stage says what a restore step with input (the planner's action)
	// needs downloaded, and where.
	Stage(step RestoreStep) (Stage, error)
	// Restore acts on the downloaded files. It runs after the download
	// Stage asked for, also when nothing was downloaded. Its result
	// (small JSON, or nil) is recorded with the step and handed to the
	// operation's later restore steps (RestoreStep.Earlier): how a node
	// learns what others found, say their new identities.
	Restore(ctx context.Context, step RestoreStep, dir string) (json.RawMessage, error)
}

// DrillChecker is a plugin's own check of a restore drill: dir holds one
// backed-up node's files, restored and already found equal to the
// manifest byte for byte; the check says whether the database could use
// them (Cassandra: every sstable's components present and its data
// matching its digest). It must only read dir. The result (at most
// MaxResult bytes) is recorded in the drill's step.
type DrillChecker interface {
	CheckDrill(ctx context.Context, dir string) (json.RawMessage, error)
}

// MaxResult bounds a Restore result: it travels in the Raft log and in
// every later step's request.
const MaxResult = 64 << 10

// StepResult is an earlier restore step's Restore result.
type StepResult struct {
	Node   string          `json:"node"`
	Result json.RawMessage `json:"result"`
}

// Source is the tree a snapshot hands to the node to back up.
type Source struct {
	// Root is the tree's directory.
	Root string
	// InPlace reads Root as it is instead of hard-linking it first:
	// right when Root does not change while the backup runs (a database
	// snapshot the plugin made).
	InPlace bool
	// Link hard-links each file into the node's snapshot directory before
	// reading it, so a file the database deletes or replaces while the
	// backup runs is still read as it was. Without it (and without
	// InPlace) files are read live, each checked to be read consistently.
	Link bool
	// Include and Exclude select paths below Root (node/tree patterns).
	Include, Exclude []string
	// Meta is the plugin's record of the node, kept in the manifest and
	// handed back to its restore steps.
	Meta json.RawMessage
	// Warnings name what the snapshot left out and why (a fileset that is
	// incomplete, say): they are shown with the operation, never silent.
	Warnings []string
}

// RestoreStep is one node's part of a restore phase, as the planner made
// it and the node runs it.
type RestoreStep struct {
	BackupID string
	// Input is the planner's Action.Input.
	Input json.RawMessage
	// Target is the directory the request named ("" for none).
	Target string
	// Source is the metadata the backed-up node's snapshot recorded.
	Source json.RawMessage
	// Earlier are the non-empty Restore results of the operation's
	// earlier restore steps, in step order.
	Earlier []StepResult
}

// Stage is where a restore step's files go before Restore runs.
type Stage struct {
	// Needed false: the step downloads nothing.
	Needed bool
	// From is a backed-up directory (slash-separated, relative): only
	// the files below it are restored, with From cut from their paths,
	// and Include, Exclude and Select match the cut paths. "" takes the
	// whole backed-up tree.
	From string
	// Include and Exclude select backed-up paths (node/tree patterns);
	// Select narrows them further (a restore of part of the backup). What
	// they leave out is neither downloaded nor, in Into, removed.
	Include, Exclude, Select []string
	// Into is the directory the files are restored to; "" puts them in
	// the operation's staging directory, which a last, always-run step
	// removes (Plan.Staged). Any other directory is checked by the node
	// (it must not be or hold the agent's state or a system directory)
	// and then made equal to the backup, within Include and Exclude.
	Into string
	// KeepExtra leaves what the backup lacks in Into (an additive
	// restore); without it Into mirrors the backup.
	KeepExtra bool
	// Owners restores file owners when the agent runs as root.
	Owners bool
	// Sub is a relative directory below the staging directory (Into
	// empty) that the files go to: a node staging the files of several
	// backed-up nodes (a restore onto fewer nodes) keeps each apart.
	// Restore still gets the staging directory itself.
	Sub string
}

// RestoreRequest is a restore as the planner sees it.
type RestoreRequest struct {
	BackupID string
	// Nodes are the current nodes that take part, each with the backed-up
	// node whose files it receives.
	Nodes []NodeAssignment
	// Target is the directory the request named ("" for none); Delete
	// makes a restore into it remove what the backup lacks.
	Target string
	Delete bool
	// Select is the plugin-interpreted selection; nil selects everything.
	// It is never empty when set, and holds no empty pattern.
	Select []string
	// Single is set when one named node is restored alone.
	Single bool
	// Unplaced are the backed-up nodes no current node receives (Source
	// and Meta set, Node empty): only for a driver that Reshapes, whose
	// plan must restore their files through Action.Source.
	Unplaced []NodeAssignment
	// StartedAt and FinishedAt are the backup's times (as its manifest
	// records them).
	StartedAt, FinishedAt time.Time
	// ToTime, when set, asks for the data as of that instant: the backup
	// finished at or before it, and Later holds what was backed up since
	// (only for a driver that is a TimeRestorer).
	ToTime time.Time
	Later  []LaterBackup
}

// LaterBackup is a backup of the same cluster taken after the one a
// restore to a time starts from: what it can add (a database's log).
type LaterBackup struct {
	BackupID string
	// LogArchive, set instead of BackupID, names a log archive a node
	// shipped (LogShipper): StartedAt and FinishedAt are then when the
	// files it holds were closed, first and last.
	LogArchive            string
	StartedAt, FinishedAt time.Time
	// Nodes are its backed-up nodes (Source and Meta set, Node empty).
	Nodes []NodeAssignment
}

// TimeRestorer is implemented by a driver that restores to a point in
// time: its planner gets RestoreRequest.ToTime and Later. The others'
// backups refuse a restore to a time.
type TimeRestorer interface {
	RestoresToTime() bool
}

// LogShipper is implemented by a plugin whose database keeps a log a
// restore to a time replays (Cassandra's archived commit log). The node
// ships the closed log files to the repository as they come (log
// archives, every agent_log_ship_interval), so a restore to a time
// reaches past the last backup; the planner gets each archive as a
// LaterBackup with one node (LogArchive set).
type LogShipper interface {
	// ClosedLogs lists the closed log files a restore to a time may
	// need. A closed file never changes. The node ships those it has
	// not shipped before. An empty Root: no log is kept as configured.
	ClosedLogs(ctx context.Context) (Logs, error)
	// LogRecord is the plugin's record of files (among the last
	// ClosedLogs), kept with their archive and handed to its planner as
	// the archive node's Meta. An error skips this round.
	LogRecord(ctx context.Context, files []LogFile) (json.RawMessage, error)
}

// Logs are a plugin's closed log files.
type Logs struct {
	// Root is the directory Files' paths are relative to.
	Root  string
	Files []LogFile
}

// LogFile is one closed log file.
type LogFile struct {
	// Path is slash-separated, relative to Logs.Root; in the archive's
	// tree the file has this path.
	Path string
	// ClosedAt is when the database closed it (the node's clock).
	ClosedAt time.Time
	Size     int64
}

// NodeAssignment is one current node of a restore.
type NodeAssignment struct {
	Node string
	// Source is the backed-up node it receives; "" with Clear.
	Source string
	// Clear: the node has no counterpart (a driver that does not Reshape:
	// it is emptied; one that does decides what the node does).
	Clear bool
	// Meta is the source node's recorded metadata (Source.Meta).
	Meta json.RawMessage
	// Paths are the source node's backed-up paths, filled only for a
	// driver that implements PathSelector and a request with a selection.
	Paths []string
}

// Reshaper is implemented by a driver that restores onto a cluster of
// another size: the coordinator then does not refuse the nodes left over
// on either side. Current nodes without a counterpart come as Clear and
// backed-up nodes without a current one as RestoreRequest.Unplaced.
type Reshaper interface {
	Reshapes() bool
}

// PathSelector is implemented by a driver whose selections match file
// paths: its planner gets every source node's paths.
type PathSelector interface {
	SelectsPaths() bool
}

// Plan is a restore: phases run one after another, the actions of one
// phase side by side on their nodes.
type Plan struct {
	Phases []Phase
	// Staged: some action downloads into the staging directory; the node
	// adds a last phase, run always, that removes it on every node.
	Staged bool
}

// Phase is a group of actions that run at the same time.
type Phase struct {
	Actions []Action
}

// Action is one node's step in a phase.
type Action struct {
	Node string
	// Input is the plugin's description of the step (JSON).
	Input json.RawMessage
	// Target is where the node restores, when the request named one.
	Target string
	// Always runs the action even after an earlier step failed.
	Always bool
	// Source is the backed-up node whose files this action's stage
	// downloads, instead of the node's own assignment: how a restore onto
	// another number of nodes gets every backed-up node's files somewhere.
	// It must be a node of the backup.
	Source string
	// Backup is the backup whose files this action's stage downloads,
	// instead of the restore's: one of RestoreRequest.Later (a restore
	// to a time takes a database's log from later backups). Source then
	// names a node of that backup.
	Backup string
	// LogArchive, instead of Backup, is the log archive (a LaterBackup's
	// LogArchive) whose files this action's stage downloads.
	LogArchive string
}

// ErrBadRequest marks a restore request the planner refuses: the API
// answers 400 with its message.
var ErrBadRequest = errors.New("bad request")

// ErrInvalidMeta marks a backed-up node's metadata the planner cannot
// read: the backup's manifest is damaged or hostile.
var ErrInvalidMeta = errors.New("invalid plugin metadata")

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the step fails at once
// instead of being attempted again (a configuration the database refuses,
// a backup that cannot be restored here). Nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked
// Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Describer is implemented by a driver that can tell an operator about
// a backed-up node from its recorded metadata (crayfish describe): named
// columns and one row per node.
type Describer interface {
	Describe(meta json.RawMessage) (map[string]string, error)
	DescribeColumns() []string
}

// DamageNamer is implemented by a plugin whose restores refuse units
// (tables) with damaged files: it names the units of damaged paths.
type DamageNamer interface {
	DamagedUnits(paths []string) []string
}

// Portable is implemented by a driver whose restores need no database on
// the node (plain files): a node configured with another plugin may run
// them. Restores of other drivers' backups run only on their own nodes.
type Portable interface {
	Portable() bool
}
