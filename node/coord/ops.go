package coord

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// Catalog is what starting operations and listing need of the repository.
type Catalog interface {
	GetManifest(ctx context.Context, backupID string) (*storage.Manifest, error)
	LoadFiles(ctx context.Context, n *storage.NodeManifest) ([]storage.FileEntry, error)
	ListBackupIDs(ctx context.Context) ([]string, error)
	ListLogArchiveIDs(ctx context.Context) ([]string, error)
	GetLogArchive(ctx context.Context, id string) (*storage.LogArchive, error)
}

// OperationsOptions are the parts of Operations.
type OperationsOptions struct {
	NodeID string
	Engine *Engine
	// Members lists the nodes that take part in operations (every server
	// of the Raft configuration).
	Members func() ([]string, error)
	Catalog Catalog
	// Planners plan the restores of the backups their plugins took.
	Planners Planners
	// ZoneOf returns a node's availability zone ("" if unknown).
	ZoneOf func(node string) string
	// Preview asks a node what a restore would do there (nil: no cluster).
	Preview PreviewFunc
	// OtherRepository names the repository a member gossips when it is
	// not this cluster's ("" when the same or unknown; nil: no cluster).
	OtherRepository func(node string) string
	// Schedules are the configured schedules, put in the replicated
	// state by each new leader.
	Schedules []fsm.ScheduleSpec
}

// NewOperations returns the operations front of engine e.
func NewOperations(o OperationsOptions) *Operations {
	zoneOf := o.ZoneOf
	if zoneOf == nil {
		zoneOf = func(string) string { return "" }
	}
	return &Operations{nodeID: o.NodeID, store: o.Engine.store, members: o.Members, catalog: o.Catalog, engine: o.Engine,
		plugins: o.Planners, zoneOf: zoneOf, preview: o.Preview, otherRepository: o.OtherRepository, configSchedules: o.Schedules}
}

// memberList lists the members, sorted.
func (o *Operations) memberList() ([]string, error) {
	nodes, err := o.members()
	if err != nil {
		return nil, err
	}
	nodes = slices.Clone(nodes)
	sort.Strings(nodes)
	return nodes, nil
}

// Operations starts operations and answers questions about backups.
type Operations struct {
	// zoneOf returns a node's availability zone ("" if unknown).
	zoneOf func(node string) string
	nodeID string
	store  Log
	// members lists the nodes that take part in operations.
	members func() ([]string, error)
	catalog Catalog
	engine  *Engine
	// plugins plan the restores of the backups they took.
	plugins Planners
	// preview asks a node what a restore would do there (nil: no cluster).
	preview PreviewFunc
	// otherRepository names the repository a member gossips when it is not
	// this node's ("" when it is the same or unknown; nil: no cluster).
	otherRepository func(node string) string
	// callback receives the completion of the operation started next
	// (WithCallback); configSchedules are the agent's configured ones.
	callback        string
	configSchedules []fsm.ScheduleSpec
}

// checkRepositories refuses, before anything starts, an operation with a
// step on a member that writes to another repository (one restarted with
// another repository stays a Raft member): it would refuse its step, and
// the steps before it would have run for nothing.
func (o *Operations) checkRepositories(steps []fsm.Step) error {
	if o.otherRepository == nil {
		return nil
	}
	for _, st := range steps {
		if st.Node == "" {
			continue
		}
		if other := o.otherRepository(st.Node); other != "" {
			return fmt.Errorf("%w: node %s writes to repository %s, this cluster's is %s: restart it with the cluster's repository, or remove it (crayfish cluster remove)",
				wire.ErrOtherRepository, st.Node, other, o.engine.repoID)
		}
	}
	return nil
}

// StartBackup starts a backup of every node in the cluster.
func (o *Operations) StartBackup(ctx context.Context, id string) (*fsm.Operation, bool, error) {
	return o.start(ctx, id, fsm.KindBackup, fsm.Params{}, "")
}

// StartRestore starts a restore of backupID (the latest when empty) onto
// the current nodes (or one of them), into target when given. A target is
// checked on every node it names before the operation starts (and again
// by each node before it writes): one that is unsafe is a 400.
func (o *Operations) StartRestore(ctx context.Context, id, backupID, target string, opts api.RestoreOptions) (*fsm.Operation, bool, error) {
	var rawOpts json.RawMessage
	if opts.Node != "" || len(opts.Mapping) > 0 || opts.ClearUnmapped || len(opts.Tables) > 0 || len(opts.Select) > 0 || opts.Delete || opts.ToTime != nil {
		rawOpts, _ = json.Marshal(opts) // map keys marshal sorted: stable
	}
	// A retry may leave backup_id empty ("latest") even though the
	// original resolved it; any other difference is a conflict.
	if op, err := o.existing(id, fsm.KindRestore, func(p fsm.Params) bool {
		return (backupID == "" || backupID == p.BackupID) && target == p.Target && bytes.Equal(rawOpts, p.Options)
	}); op != nil || err != nil {
		return op, true, err
	}
	rp, err := o.planRestore(ctx, backupID, target, opts)
	if err != nil {
		return nil, false, err
	}
	if target != "" {
		if err := o.preflightTargets(ctx, rp); err != nil {
			return nil, false, err
		}
	}
	params := fsm.Params{BackupID: rp.backupID, Target: target, Options: rawOpts}
	return o.startPlanned(ctx, id, fsm.KindRestore, params, rp.backupID, rp.steps)
}

// plannedRestore is a checked restore request: the backup, which node
// receives what, where, and the plan.
type plannedRestore struct {
	backupID string
	manifest *storage.Manifest
	assign   map[string]wire.RestoreInput
	steps    []fsm.Step
	staged   bool // the plugin acts on staged files (not a restore into directories)
}

// planRestore checks a restore request against the repository and the
// cluster and plans it; nothing is started.
func (o *Operations) planRestore(ctx context.Context, backupID, target string, opts api.RestoreOptions) (*plannedRestore, error) {
	if err := checkRestoreRequest(target, opts); err != nil {
		return nil, err
	}
	var (
		later []*storage.Manifest
		logs  []*storage.LogArchive
	)
	if opts.ToTime != nil {
		var err error
		if backupID, later, err = o.timeRestoreBackups(ctx, backupID, *opts.ToTime); err != nil {
			return nil, err
		}
	} else if backupID == "" {
		ids, err := o.catalog.ListBackupIDs(ctx)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("%w: the repository holds no backup to restore", storage.ErrNotFound)
		}
		backupID = ids[len(ids)-1]
	} else if !storage.ValidBackupID(backupID) {
		return nil, fmt.Errorf("%w: invalid backup id %q", wire.ErrBadRequest, backupID)
	}
	m, err := o.catalog.GetManifest(ctx, backupID)
	if err != nil {
		return nil, err
	}
	nodes, err := o.memberList()
	if err != nil {
		return nil, err
	}
	var current, backup []NodeInfo
	for _, n := range nodes {
		current = append(current, NodeInfo{ID: n, Zone: o.zoneOf(n)})
	}
	for _, n := range m.Nodes {
		backup = append(backup, NodeInfo{ID: n.NodeID, Zone: n.Zone})
	}
	d, ok := o.plugins.Driver(m.Plugin)
	if !ok {
		return nil, fmt.Errorf("%w: backup %s was taken by the %s plugin, which this agent does not have (it has %s)",
			wire.ErrBadRequest, backupID, m.Plugin, strings.Join(o.plugins.Names(), ", "))
	}
	rs, _ := d.(plugin.Reshaper)
	assign, unplaced, err := mapNodes(current, backup, opts.Mapping, opts.ClearUnmapped, opts.Node, rs != nil && rs.Reshapes())
	if err != nil {
		return nil, err
	}
	req, err := o.restoreRequest(ctx, d, m, assign, unplaced, target, opts)
	if err != nil {
		return nil, err
	}
	if opts.ToTime != nil {
		if tr, ok := d.(plugin.TimeRestorer); !ok || !tr.RestoresToTime() {
			return nil, fmt.Errorf("%w: backups of the %s plugin cannot be restored to a time (to_time); restore a backup as it was taken", wire.ErrBadRequest, m.Plugin)
		}
		if logs, err = o.timeRestoreLogs(ctx, m, *opts.ToTime); err != nil {
			return nil, err
		}
		req.ToTime, req.Later = opts.ToTime.UTC(), append(laterBackups(later), laterLogs(logs)...)
	}
	plan, err := d.PlanRestore(req)
	if errors.Is(err, plugin.ErrInvalidMeta) {
		return nil, fmt.Errorf("%w: %v", storage.ErrInvalidManifest, err)
	}
	if err != nil {
		return nil, err
	}
	if err := checkActionSources(plan, backup, req.Later); err != nil {
		return nil, err
	}
	inputs, steps, err := restoreSteps(plan, assign)
	if err != nil {
		return nil, err
	}
	return &plannedRestore{backupID: backupID, manifest: m, assign: inputs, steps: steps, staged: plan.Staged}, nil
}

// restoreRequest is the request as the backup's planner sees it: the
// nodes in order of ids, each with its source node's metadata (and
// paths, for a driver whose selections match paths), and the backed-up
// nodes no node receives (a driver that reshapes).
func (o *Operations) restoreRequest(ctx context.Context, d plugin.Driver, m *storage.Manifest, assign map[string]wire.RestoreInput, unplaced []string, target string, opts api.RestoreOptions) (plugin.RestoreRequest, error) {
	req := plugin.RestoreRequest{BackupID: m.BackupID, Target: target, Delete: opts.Delete, Select: opts.Selection(), Single: opts.Node != "",
		StartedAt: m.StartedAt, FinishedAt: m.FinishedAt}
	ps, _ := d.(plugin.PathSelector)
	withPaths := len(req.Select) > 0 && ps != nil && ps.SelectsPaths()
	source := func(na *plugin.NodeAssignment) error {
		part := wire.NodePart(m, na.Source)
		if part == nil || na.Clear {
			return nil
		}
		na.Meta = part.Plugin
		if withPaths {
			files, err := o.catalog.LoadFiles(ctx, part)
			if err != nil {
				return fmt.Errorf("backup %s, node %s: %w", m.BackupID, part.NodeID, err)
			}
			for _, f := range files {
				na.Paths = append(na.Paths, f.Path)
			}
		}
		return nil
	}
	for _, n := range slices.Sorted(maps.Keys(assign)) {
		in := assign[n]
		na := plugin.NodeAssignment{Node: n, Source: in.SourceNode, Clear: in.Clear}
		if err := source(&na); err != nil {
			return req, err
		}
		req.Nodes = append(req.Nodes, na)
	}
	for _, b := range unplaced {
		na := plugin.NodeAssignment{Source: b}
		if err := source(&na); err != nil {
			return req, err
		}
		req.Unplaced = append(req.Unplaced, na)
	}
	return req, nil
}

// checkRestoreRequest refuses what is wrong with a restore request on its
// face: a relative target, an empty selection (an unset shell variable
// must not widen a table restore to a full one), clearing nodes into a
// target, --delete without a target.
func checkRestoreRequest(target string, opts api.RestoreOptions) error {
	if target != "" && !filepath.IsAbs(target) {
		return fmt.Errorf("%w: target %q must be an absolute path", wire.ErrBadRequest, target)
	}
	if opts.Select != nil && opts.Tables != nil {
		return fmt.Errorf("%w: give select or tables (its older name), not both", wire.ErrBadRequest)
	}
	if sel := opts.Selection(); sel != nil && len(sel) == 0 {
		return fmt.Errorf("%w: the selection is empty: name at least one pattern (a path glob, or ks.table for cassandra), or leave it out to restore everything", wire.ErrBadRequest)
	}
	for _, t := range opts.Selection() {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf("%w: the selection holds an empty pattern", wire.ErrBadRequest)
		}
	}
	if target != "" && opts.ClearUnmapped {
		return fmt.Errorf("%w: clear_unmapped empties nodes' roots; it does not go with a target", wire.ErrBadRequest)
	}
	if opts.Delete && target == "" {
		return fmt.Errorf("%w: delete applies to a restore into a target (a restore into the roots always removes what the backup lacks)", wire.ErrBadRequest)
	}
	return nil
}

// StartDelete starts the deletion of backupIDs.
func (o *Operations) StartDelete(ctx context.Context, id string, backupIDs []string) (*fsm.Operation, bool, error) {
	ids := slices.Clone(backupIDs)
	sort.Strings(ids)
	ids = slices.Compact(ids)
	if op, err := o.existing(id, fsm.KindDelete, func(p fsm.Params) bool {
		return slices.Equal(ids, p.BackupIDs)
	}); op != nil || err != nil {
		return op, true, err
	}
	if len(ids) == 0 {
		return nil, false, fmt.Errorf("%w: no backup ids given", wire.ErrBadRequest)
	}
	for _, b := range ids {
		if err := o.checkBackup(ctx, b); err != nil {
			return nil, false, err
		}
	}
	return o.start(ctx, id, fsm.KindDelete, fsm.Params{BackupIDs: ids}, "")
}

// StartGC starts a garbage collection.
func (o *Operations) StartGC(ctx context.Context, id string) (*fsm.Operation, bool, error) {
	return o.startWithOptions(ctx, id, fsm.KindGC, nil)
}

// StartCleanup starts a cleanup: the retention policy (the request's or the
// configured one), then garbage collection.
func (o *Operations) StartCleanup(ctx context.Context, id string, opts api.CleanupOptions) (*fsm.Operation, bool, error) {
	policy := o.engine.cfg.Retention
	if opts.Policy != nil {
		policy = *opts.Policy
	}
	if err := policy.Validate(); err != nil {
		return nil, false, fmt.Errorf("%w: %v (configure retention_* or pass a policy)", wire.ErrBadRequest, err)
	}
	opts.Policy = &policy // fixed now, so the operation does not depend on a later config
	raw, err := json.Marshal(opts)
	if err != nil {
		return nil, false, err
	}
	if op, err := o.existing(id, fsm.KindCleanup, func(p fsm.Params) bool { return bytes.Equal(p.Options, raw) }); op != nil || err != nil {
		return op, true, err
	}
	// The decision is made once, now, and fixed in the plan: a forget step
	// repeated after a leader change deletes (and records) the same
	// backups, where deciding again over what is left would forget, in the
	// history, those the first attempt deleted.
	decisions, err := decideRetention(ctx, o.catalog, policy, o.engine.now().UTC())
	if err != nil {
		return nil, false, err
	}
	return o.startPlanned(ctx, id, fsm.KindCleanup, fsm.Params{Options: raw}, "", cleanupPlan(newForgetInput(policy, decisions)))
}

// StartVerify starts a repository check.
func (o *Operations) StartVerify(ctx context.Context, id string, opts api.VerifyOptions) (*fsm.Operation, bool, error) {
	if opts.ReadDataSubset < 0 || opts.ReadDataSubset > 1 {
		return nil, false, fmt.Errorf("%w: read_data_subset %v must be in (0, 1]", wire.ErrBadRequest, opts.ReadDataSubset)
	}
	return o.startWithOptions(ctx, id, fsm.KindVerify, opts)
}

// StartRepair starts a repair of the index, the packs or the snapshots,
// under the exclusive repository lock.
func (o *Operations) StartRepair(ctx context.Context, id string, opts api.RepairOptions) (*fsm.Operation, bool, error) {
	switch opts.Kind {
	case storage.RepairIndex, storage.RepairPacks, storage.RepairSnapshots:
	default:
		return nil, false, fmt.Errorf("%w: repair kind %q: want index, packs or snapshots", wire.ErrBadRequest, opts.Kind)
	}
	if opts.Forget && opts.Kind != storage.RepairSnapshots {
		return nil, false, fmt.Errorf("%w: forget applies to repair snapshots only", wire.ErrBadRequest)
	}
	return o.startWithOptions(ctx, id, fsm.KindRepair, opts)
}

func (o *Operations) startWithOptions(ctx context.Context, id string, kind fsm.OpKind, opts any) (*fsm.Operation, bool, error) {
	var raw json.RawMessage
	if opts != nil {
		var err error
		if raw, err = json.Marshal(opts); err != nil {
			return nil, false, err
		}
	}
	params := fsm.Params{Options: raw}
	if op, err := o.existing(id, kind, func(p fsm.Params) bool { return bytes.Equal(p.Options, raw) }); op != nil || err != nil {
		return op, true, err
	}
	return o.start(ctx, id, kind, params, "")
}

// CleanupPreview says what a cleanup with policy (or the configured one)
// would keep and delete now. It changes nothing.
func (o *Operations) CleanupPreview(ctx context.Context, policy *storage.RetentionPolicy) (*api.CleanupPreview, error) {
	p := o.engine.cfg.Retention
	if policy != nil {
		p = *policy
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", wire.ErrBadRequest, err)
	}
	ds, err := decideRetention(ctx, o.catalog, p, o.engine.now().UTC())
	if err != nil {
		return nil, err
	}
	if ds == nil {
		ds = []storage.Decision{}
	}
	return &api.CleanupPreview{Policy: p, Decisions: ds}, nil
}

func (o *Operations) checkBackup(ctx context.Context, backupID string) error {
	if !storage.ValidBackupID(backupID) {
		return fmt.Errorf("%w: invalid backup id %q", wire.ErrBadRequest, backupID)
	}
	_, err := o.catalog.GetManifest(ctx, backupID)
	return err
}

// existing returns the operation a retried request already created, so
// a retry does not re-validate against a repository that has moved on
// (e.g. "latest" now names a newer backup).
func (o *Operations) existing(id string, kind fsm.OpKind, sameRequest func(fsm.Params) bool) (*fsm.Operation, error) {
	if id == "" {
		return nil, nil
	}
	op := o.store.FSM().Operation(id)
	switch {
	case op == nil:
		return nil, nil
	case op.Kind != kind:
		return nil, fmt.Errorf("%w: %s is a %s operation", fsm.ErrIDConflict, id, op.Kind)
	case !sameRequest(op.Params):
		return nil, fmt.Errorf("%w: %s was started with other parameters", fsm.ErrIDConflict, id)
	}
	return op, nil
}

func (o *Operations) start(ctx context.Context, id string, kind fsm.OpKind, params fsm.Params, backupID string) (*fsm.Operation, bool, error) {
	return o.startPlanned(ctx, id, kind, params, backupID, nil)
}

// startPlanned starts an operation with plan, or the kind's fixed plan.
func (o *Operations) startPlanned(ctx context.Context, id string, kind fsm.OpKind, params fsm.Params, backupID string, plan []fsm.Step) (*fsm.Operation, bool, error) {
	if id == "" {
		id = newOpID(kind)
	} else if !fsm.ValidOpID(id) {
		return nil, false, fmt.Errorf("%w: invalid operation id %q (1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit)", wire.ErrBadRequest, id)
	}
	if !o.store.IsLeader() {
		return nil, false, wire.ErrNotLeader
	}
	// A new leader may not have applied every committed entry yet: the
	// time stamped below must follow the latest one in the log, not in a
	// lagging FSM (a chaos run caught a backup created 42 µs before the
	// one committed ahead of it, after a leader change).
	if err := o.store.Barrier(ctx); err != nil {
		return nil, false, err
	}
	now := o.engine.stamp()
	params.CallbackURL = o.callback
	op := &fsm.Operation{ID: id, Kind: kind, Params: params, BackupID: backupID, Steps: plan}
	switch kind {
	case fsm.KindBackup:
		nodes, err := o.memberList()
		if err != nil {
			return nil, false, err
		}
		op.BackupID = newBackupID(id, now)
		op.Steps = backupPlan(nodes)
	case fsm.KindRestore:
	case fsm.KindDelete:
		op.Steps = deletePlan()
	case fsm.KindGC:
		op.Steps = gcPlan()
	case fsm.KindCleanup:
		if op.Steps == nil {
			op.Steps = cleanupPlan(nil)
		}
	case fsm.KindVerify:
		op.Steps = verifyPlan()
	case fsm.KindRepair:
		op.Steps = repairPlan()
	case fsm.KindDrill:
	}
	if err := o.checkRepositories(op.Steps); err != nil {
		return nil, false, err
	}
	resp, err := o.engine.apply(ctx, fsm.Command{Type: fsm.CmdStart, Op: op, Time: now})
	if err != nil {
		return nil, false, err
	}
	return resp.Op, resp.Existing, nil
}

func newOpID(kind fsm.OpKind) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return string(kind) + "-" + hex.EncodeToString(b[:])
}

// ListBackups pages through the repository's backups, newest first,
// starting after cursor (a backup id).
func (o *Operations) ListBackups(ctx context.Context, limit int, cursor string) ([]storage.Summary, string, error) {
	ids, err := o.catalog.ListBackupIDs(ctx)
	if err != nil {
		return nil, "", err
	}
	slices.Reverse(ids)
	if cursor != "" {
		i := sort.Search(len(ids), func(i int) bool { return ids[i] < cursor })
		ids = ids[i:]
	}
	var out []storage.Summary
	next := ""
	for i, id := range ids {
		if limit > 0 && len(out) == limit {
			next = ids[i-1]
			break
		}
		m, err := o.catalog.GetManifest(ctx, id)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				continue // deleted while we listed
			}
			return nil, "", fmt.Errorf("backup %s: %w", id, err)
		}
		out = append(out, m.Summarize())
	}
	return out, next, nil
}
