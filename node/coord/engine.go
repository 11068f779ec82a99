package coord

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/internal/wait"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// RepositoryOps is what the coordinator needs of the repository.
type RepositoryOps interface {
	PutManifestLocked(ctx context.Context, lockID string, m *storage.Manifest) error
	GetManifest(ctx context.Context, backupID string) (*storage.Manifest, error)
	DeleteManifest(ctx context.Context, backupID string) error
	ListBackupIDs(ctx context.Context) ([]string, error)
	ListLogArchiveIDs(ctx context.Context) ([]string, error)
	GetLogArchive(ctx context.Context, id string) (*storage.LogArchive, error)
	DeleteLogArchive(ctx context.Context, id string) error
	Lock(ctx context.Context, id string, kind storage.LockKind, owner string) error
	RefreshLock(ctx context.Context, id string) error
	Unlock(ctx context.Context, id string) error
	GC(ctx context.Context, opts storage.GCOptions) (storage.GCReport, error)
	Verify(ctx context.Context, opts storage.VerifyOptions) (storage.VerifyReport, error)
	Repair(ctx context.Context, kind string, opts storage.RepairOptions) (storage.RepairReport, error)
	SyncIndex(ctx context.Context) error
	HasBlob(id storage.ObjectID) bool
}

// Engine is the coordinator: while this node leads, it drives the active
// operation step by step, recording every step in the FSM, and resumes an
// operation a previous leader (or a previous run of this node) left
// unfinished.
type Engine struct {
	nodeID  string
	repoID  string // the repository's id, sent with every node step
	store   Log
	workers func(node string) (wire.Worker, error)
	repo    RepositoryOps
	cfg     Config
	log     *slog.Logger
	metrics Metrics
	now     func() time.Time

	// fenceNodes, if set, tells every other node the new epoch as soon as
	// it is claimed, so a deposed coordinator's late calls are refused even
	// by nodes the new one has not needed yet.
	fenceNodes func(ctx context.Context, epoch uint64)

	progressInterval time.Duration
	lockRefreshEvery time.Duration

	// whileLeading run beside the operations during each leadership.
	whileLeading []func(ctx context.Context, epoch uint64)
}

// WhileLeading adds f to what runs during each leadership of this node,
// once its epoch is claimed, until the leadership ends (the scheduler,
// the completion notifier). Call it before Run.
func (e *Engine) WhileLeading(f func(ctx context.Context, epoch uint64)) {
	e.whileLeading = append(e.whileLeading, f)
}

// EngineOptions are an Engine's parts.
type EngineOptions struct {
	Config Config
	// RepoID is the repository's id, sent with every node step.
	RepoID string
	Log    Log
	Repo   RepositoryOps
	// Workers returns the worker of a node (this one's own included).
	Workers func(node string) (wire.Worker, error)
	// FenceNodes, if set, tells every other node a newly claimed epoch.
	FenceNodes func(ctx context.Context, epoch uint64)
	Metrics    Metrics
	Logger     *slog.Logger
	// Now is the clock whose times the leader stamps into commands.
	Now func() time.Time
	// ProgressInterval bounds progress entries (one per interval a step);
	// LockRefreshEvery is how often a held repository lock is rewritten.
	ProgressInterval time.Duration
	LockRefreshEvery time.Duration
}

// NewEngine returns the coordinator engine.
func NewEngine(o EngineOptions) *Engine {
	e := &Engine{nodeID: o.Config.NodeID, repoID: o.RepoID, store: o.Log, workers: o.Workers, repo: o.Repo, cfg: o.Config,
		log: o.Logger, metrics: o.Metrics, now: o.Now, fenceNodes: o.FenceNodes,
		progressInterval: o.ProgressInterval, lockRefreshEvery: o.LockRefreshEvery}
	if e.metrics == nil {
		e.metrics = nopMetrics{}
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.progressInterval <= 0 {
		e.progressInterval = time.Second
	}
	if e.lockRefreshEvery <= 0 {
		e.lockRefreshEvery = storage.LockRefreshEvery
	}
	return e
}

// Run follows leadership until ctx ends, leading while this node is leader.
func (e *Engine) Run(ctx context.Context) {
	var (
		wg     sync.WaitGroup
		cancel context.CancelFunc = func() {}
	)
	stop := func() {
		cancel()
		wg.Wait()
	}
	defer stop()
	start := func() {
		stop()
		var lctx context.Context
		lctx, cancel = context.WithCancel(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.lead(lctx)
		}()
	}
	if e.store.IsLeader() {
		start()
	}
	leaderCh := e.store.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-leaderCh:
			// true after true means leadership was lost and regained in
			// between: start over with a new epoch.
			if isLeader {
				e.log.Info("gained leadership")
				start()
			} else {
				e.log.Info("lost leadership")
				stop()
			}
		}
	}
}

// lead claims a fencing epoch and then runs operations until ctx ends.
func (e *Engine) lead(ctx context.Context) {
	var epoch uint64
	for {
		if err := e.store.Barrier(ctx); err == nil {
			resp, err := e.apply(ctx, fsm.Command{Type: fsm.CmdClaim, Node: e.nodeID})
			if err == nil {
				epoch = resp.Epoch
				break
			}
			e.log.Warn("claiming coordinator epoch failed", "err", err)
		}
		if wait.Sleep(ctx, time.Second) != nil {
			return
		}
	}
	e.log.Info("coordinating", "epoch", epoch)
	if e.fenceNodes != nil {
		// Concurrent: resuming must not wait for dead nodes. Waited for on
		// return, so nothing of this leadership writes after it ends.
		var fencing sync.WaitGroup
		fencing.Go(func() { e.fenceNodes(ctx, epoch) })
		defer fencing.Wait()
	}
	var beside sync.WaitGroup
	defer beside.Wait()
	leading, endLeading := context.WithCancel(ctx) // ended before the wait above
	defer endLeading()
	for _, f := range e.whileLeading {
		beside.Go(func() { f(leading, epoch) })
	}
	m := e.store.FSM()
	for {
		changed := m.Changed()
		if op := m.Active(); op != nil {
			if err := e.runOperation(ctx, epoch, op.ID); err != nil {
				if ctx.Err() != nil || errors.Is(err, fsm.ErrStaleEpoch) || errors.Is(err, wire.ErrNotLeader) {
					e.log.Info("stopped coordinating", "op", op.ID, "reason", err)
					return
				}
				e.log.Error("operation stalled; retrying", "op", op.ID, "err", err)
				if wait.Sleep(ctx, time.Second) != nil {
					return
				}
			}
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// stamp is the time a new command carries: the leader's clock, but never
// earlier than a time already in the log (a new leader whose clock is
// behind the old one's keeps times and backup ids increasing).
func (e *Engine) stamp() time.Time {
	t := e.now().UTC()
	if latest := e.store.FSM().LatestTime(); !t.After(latest) {
		t = latest.Add(time.Microsecond)
	}
	return t
}

// apply stamps the time, commits cmd and folds the FSM's error into err.
func (e *Engine) apply(ctx context.Context, cmd fsm.Command) (fsm.Response, error) {
	if cmd.Time.IsZero() {
		cmd.Time = e.stamp()
	}
	resp, err := e.store.Apply(ctx, cmd)
	if err != nil {
		return resp, err
	}
	return resp, resp.Err
}

// runOperation walks the operation's plan from its first unfinished step,
// keeping its repository lock fresh meanwhile.
func (e *Engine) runOperation(ctx context.Context, epoch uint64, id string) error {
	refreshCtx, stopRefresh := context.WithCancel(ctx)
	defer stopRefresh()
	go e.refreshLock(refreshCtx, id)
	for {
		op := e.store.FSM().Operation(id)
		if op == nil || op.State.Terminal() {
			return nil
		}
		runnable := op.Runnable()
		if len(runnable) == 0 {
			resp, err := e.apply(ctx, fsm.Command{Type: fsm.CmdFinish, OpID: id, Epoch: epoch})
			if err != nil {
				return err
			}
			e.log.Info("operation finished", "op", id, "kind", resp.Op.Kind, "state", resp.Op.State, "error", resp.Op.Error)
			return nil
		}
		if err := e.runPhase(ctx, epoch, op, runnable); err != nil {
			return err
		}
	}
}

// runPhase runs steps side by side. When one fails for good the FSM skips
// its siblings, and their contexts are cancelled here.
//
// A restore step that failed on damage (ErrDamaged) has restored all it
// could: its failure is recorded only once its siblings have ended, so
// they too restore every file they can instead of being stopped.
func (e *Engine) runPhase(ctx context.Context, epoch uint64, op *fsm.Operation, steps []int) error {
	if len(steps) == 1 {
		return e.runStep(ctx, epoch, op, steps[0], nil)
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(steps))
	var (
		wg      sync.WaitGroup
		heldMu  sync.Mutex
		held    []fsm.Command
		holdCmd = func(c fsm.Command) {
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	)
	for k, i := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = e.runStep(pctx, epoch, op, i, holdCmd)
			if cur := e.store.FSM().Operation(op.ID); cur != nil && cur.Steps[i].State == fsm.StepFailed {
				cancel()
			}
		}()
	}
	wg.Wait()
	for _, c := range held {
		// Every step of the phase has ended: record each failure, none
		// skipping the others.
		c.KeepRunning = true
		if _, err := e.apply(ctx, c); err != nil && !errors.Is(err, fsm.ErrInvalidTransition) {
			// ErrInvalidTransition: a sibling's failure skipped it already.
			return err
		}
	}
	for _, err := range errs {
		// A sibling stopped because another failed: the FSM skipped it.
		if err != nil && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, fsm.ErrInvalidTransition)) {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// runStep records the intent, performs the step (retrying what is worth
// retrying) and records the outcome. If the context ends mid-step the step
// stays "running" in the FSM and the next coordinator redoes it; steps are
// idempotent. With hold set, the failure of a step on damage (ErrDamaged)
// is handed to hold instead of being applied.
func (e *Engine) runStep(ctx context.Context, epoch uint64, op *fsm.Operation, i int, hold func(fsm.Command)) error {
	step := op.Steps[i]
	delay := e.cfg.StepRetryDelay
	for attempt := 1; ; attempt++ {
		if _, err := e.apply(ctx, fsm.Command{Type: fsm.CmdStepStarted, OpID: op.ID, Epoch: epoch, Step: i}); err != nil {
			return err
		}
		ref := wire.StepRef{OpID: op.ID, Epoch: epoch, Step: i, Repo: e.repoID}
		log := e.log.With("op", op.ID, "step", step.Name, "node", step.Node, "attempt", attempt)
		log.Info("step started")
		started := time.Now()
		result, last, err := e.executeWithProgress(ctx, ref, op, step)
		e.metrics.StepDone(step.Name, time.Since(started), err)
		if err == nil && step.Name == wire.StepUpload && wire.Injected("drop-step-done") {
			return nil // the injected bug: the outcome is never recorded
		}
		if err == nil {
			_, aerr := e.apply(context.WithoutCancel(ctx), fsm.Command{Type: fsm.CmdStepDone, OpID: op.ID, Epoch: epoch, Step: i, Result: result, Progress: last})
			if !errors.Is(aerr, fsm.ErrEntryTooLarge) {
				return aerr
			}
			// Refused before it was proposed: the same entry would be
			// refused again, so the step fails for good (without result).
			err, result = wire.Permanent(aerr), nil
		}
		if ctx.Err() != nil || errors.Is(err, wire.ErrStaleEpoch) {
			return fmt.Errorf("step %s: %w", step.Name, err)
		}
		if wire.IsPermanent(err) || attempt >= stepAttempts(e.cfg.StepAttempts, step) {
			log.Error("step failed", "err", err)
			failed := fsm.Command{Type: fsm.CmdStepFailed, OpID: op.ID, Epoch: epoch, Step: i, Error: cutString(err.Error(), maxRecordedError), Result: result, Progress: last}
			if hold != nil && errors.Is(err, wire.ErrDamaged) {
				hold(failed)
				return nil
			}
			_, aerr := e.apply(ctx, failed)
			return aerr
		}
		log.Warn("step attempt failed; retrying", "err", err, "delay", delay)
		if wait.Sleep(ctx, delay) != nil {
			return ctx.Err()
		}
		delay *= 2
	}
}

// unlockAttempts is the least number of attempts of an unlock step. A
// lock left in the repository by an operation that has finished blocks
// every exclusive operation (cleanup, gc) until it goes stale (10
// minutes); releasing it is idempotent, so it is worth retrying through
// a store outage: 8 attempts wait up to 127 retry delays (about 2 minutes
// at the default 1 s). A chaos run on SeaweedFS left one behind when a
// restart of the store outlasted the 3 attempts of other steps.
const unlockAttempts = 8

func stepAttempts(configured int, step fsm.Step) int {
	if step.Name == wire.StepUnlock {
		return max(configured, unlockAttempts)
	}
	return configured
}

// executeWithProgress runs the step while a ticker commits its latest
// progress counters (at most one Raft entry per progressInterval).
func (e *Engine) executeWithProgress(ctx context.Context, ref wire.StepRef, op *fsm.Operation, step fsm.Step) (json.RawMessage, *fsm.Progress, error) {
	var latest atomic.Pointer[fsm.Progress]
	report := func(p fsm.Progress) { latest.Store(&p) }
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(e.progressInterval)
		defer t.Stop()
		var sent *fsm.Progress
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if p := latest.Load(); p != nil && p != sent {
					sent = p
					if _, err := e.apply(ctx, fsm.Command{Type: fsm.CmdStepProgress, OpID: ref.OpID, Epoch: ref.Epoch, Step: ref.Step, Progress: p}); err != nil {
						e.log.Debug("progress not recorded", "err", err)
					}
				}
			}
		}
	}()
	result, err := e.execute(ctx, ref, op, step, report)
	result, err = recordable(step, result, err)
	close(done)
	wg.Wait()
	return result, latest.Load(), err
}

func (e *Engine) execute(ctx context.Context, ref wire.StepRef, op *fsm.Operation, step fsm.Step, progress wire.ProgressFunc) (json.RawMessage, error) {
	var (
		w   wire.Worker
		err error
	)
	if step.Node != "" {
		if w, err = e.workers(step.Node); err != nil {
			return nil, err
		}
	}
	var res any
	switch step.Name {
	case wire.StepSnapshot:
		// With several nodes, the dedup step decides who uploads the chunks
		// they share.
		shared := slices.ContainsFunc(op.Steps, func(s fsm.Step) bool { return s.Name == wire.StepDedup })
		var sr wire.SnapshotResult
		sr, err = w.Snapshot(ctx, ref, wire.SnapshotOptions{Shared: shared}, progress)
		res = boundSnapshot(sr)
	case wire.StepUpload:
		d, skip, derr := dedupSkip(op, step.Node)
		switch {
		case derr != nil:
			err = derr
		case d != nil:
			res, err = w.UploadDeduped(ctx, ref, *d, progress)
		default:
			res, err = w.Upload(ctx, ref, skip, progress)
		}
	case wire.StepDedup:
		res, err = e.dedup(ctx, ref, op, progress)
	case wire.StepRelease:
		res, err = struct{}{}, w.Release(ctx, ref)
		if errors.Is(err, wire.ErrNodeUnreachable) {
			// Release is cleanup: the node drops the snapshot itself when it
			// is back (LocalWorker.SweepSnapshots); the operation's outcome
			// does not depend on it.
			res, err = ReleaseResult{Deferred: true, Warning: err.Error()}, nil
		}
	case wire.StepRestore:
		req := wire.RestoreRequest{BackupID: op.BackupID, Target: op.Params.Target}
		if len(step.Input) > 0 {
			var in wire.RestoreInput
			if err := json.Unmarshal(step.Input, &in); err != nil {
				return nil, wire.Permanent(fmt.Errorf("restore step input: %w", err))
			}
			req.SourceNode, req.Clear, req.Plugin, req.Cleanup = in.SourceNode, in.Clear, in.Plugin, in.Cleanup
			if in.Target != "" {
				req.Target = in.Target
			}
			if in.BackupID != "" {
				req.BackupID = in.BackupID
			}
			req.LogArchive = in.LogArchive
		}
		req.Earlier = earlierResults(op, ref.Step)
		var rr wire.RestoreResult
		rr, err = w.Restore(ctx, ref, req, progress)
		rr = boundRestore(rr)
		if errors.Is(err, wire.ErrDamaged) {
			// Failed for good, but the result names the damaged files.
			b, _ := json.Marshal(rr)
			return b, err
		}
		res = rr
	case wire.StepDrill:
		var in DrillInput
		if err := json.Unmarshal(step.Input, &in); err != nil {
			return nil, wire.Permanent(fmt.Errorf("drill step input: %w", err))
		}
		var rr wire.RestoreResult
		rr, err = w.Restore(ctx, ref, wire.RestoreRequest{BackupID: op.BackupID, SourceNode: in.SourceNode, Drill: true}, progress)
		rr = boundRestore(rr)
		if errors.Is(err, wire.ErrDamaged) {
			b, _ := json.Marshal(rr)
			return b, err
		}
		res = rr
	case wire.StepManifest:
		res, err = e.writeManifest(ctx, ref, op)
	case wire.StepDelete:
		res, err = e.deleteBackups(ctx, op.Params.BackupIDs)
	case wire.StepLock:
		err = e.takeLock(ctx, op)
		res = struct{}{}
	case wire.StepUnlock:
		err = e.repo.Unlock(ctx, lockID(op.ID))
		res = struct{}{}
	case wire.StepForget:
		res, err = e.forget(ctx, op, step)
	case wire.StepGC:
		var rep storage.GCReport
		rep, err = e.repo.GC(ctx, storage.GCOptions{LockID: lockID(op.ID)})
		res = recordedGC(rep)
		if errors.Is(err, storage.ErrLockLost) {
			err = wire.Permanent(err)
		}
	case wire.StepRepair:
		res, err = e.repair(ctx, op)
		if errors.Is(err, storage.ErrLockLost) || errors.Is(err, storage.ErrUnknownRepair) {
			err = wire.Permanent(err)
		}
	case wire.StepVerify:
		var rep storage.VerifyReport
		rep, err = e.verify(ctx, op)
		if err == nil && len(rep.Problems) > 0 {
			// The step fails (so --wait exits non-zero) and still records
			// the report naming the problems (the first ones, and how many).
			b, _ := json.Marshal(boundVerify(rep))
			return b, wire.Permanent(fmt.Errorf("%d problems found, first: %s %s: %s", len(rep.Problems), rep.Problems[0].Kind,
				cutString(rep.Problems[0].Object, 1<<10), cutString(rep.Problems[0].Detail, 2<<10)))
		}
		res = boundVerify(rep)
	default:
		return nil, wire.Permanent(fmt.Errorf("unknown step %q", step.Name))
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// maxRecordedPacks bounds each pack list of a GC step's recorded result:
// the Raft log keeps every operation's results, and the counts and bytes
// say what GC did (an offline `crayfish gc --dry-run --repository` lists
// up to 1,000 packs of each kind).
const maxRecordedPacks = 20

// recordedGC is rep with its pack lists cut to maxRecordedPacks.
func recordedGC(rep storage.GCReport) storage.GCReport {
	c := &rep.Classification
	for _, set := range []*storage.GCPackSet{&c.Condemned, &c.Repack, &c.UnindexedDeleted, &c.UnindexedKept} {
		if len(set.Packs) > maxRecordedPacks {
			set.Packs = set.Packs[:maxRecordedPacks:maxRecordedPacks]
		}
	}
	return rep
}

// ReleaseResult is the recorded result of a release step that could not
// reach its node.
type ReleaseResult struct {
	Deferred bool   `json:"deferred"`
	Warning  string `json:"warning"`
}

// ManifestResult is the recorded result of the manifest step.
type ManifestResult struct {
	BackupID string `json:"backup_id"`
	Files    int64  `json:"files"`
	Bytes    int64  `json:"bytes"`
}

// writeManifest writes the snapshot, the commit point of the backup, from
// the step results recorded in the FSM: every node has already stored its
// chunks and file list. A repeat finds its own snapshot and stops there.
func (e *Engine) writeManifest(ctx context.Context, ref wire.StepRef, op *fsm.Operation) (ManifestResult, error) {
	if wire.Injected("ack-before-manifest") {
		return ManifestResult{BackupID: op.BackupID}, nil // the injected bug: success without a commit point
	}
	if existing, err := e.repo.GetManifest(ctx, op.BackupID); err == nil {
		if existing.OperationID != op.ID {
			return ManifestResult{}, wire.Permanent(fmt.Errorf("backup id %s already belongs to operation %s", op.BackupID, existing.OperationID))
		}
		s := existing.Summarize()
		return ManifestResult{BackupID: op.BackupID, Files: s.Stats.Files, Bytes: s.Stats.Bytes}, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return ManifestResult{}, err
	}
	m := &storage.Manifest{
		FormatVersion: storage.ManifestFormatVersion, BackupID: op.BackupID, OperationID: op.ID,
		Epoch: ref.Epoch, Plugin: cmp.Or(e.cfg.Plugin, "files"), StartedAt: op.CreatedAt, FinishedAt: e.now().UTC(),
	}
	snaps := map[string]wire.SnapshotResult{}
	for _, st := range op.Steps {
		if st.Name == wire.StepSnapshot {
			var sr wire.SnapshotResult
			if err := json.Unmarshal(st.Result, &sr); err != nil {
				return ManifestResult{}, wire.Permanent(fmt.Errorf("snapshot result of node %s: %w", st.Node, err))
			}
			snaps[st.Node] = sr
		}
	}
	for _, st := range op.Steps {
		if st.Name != wire.StepUpload {
			continue
		}
		var up wire.UploadResult
		if err := json.Unmarshal(st.Result, &up); err != nil {
			return ManifestResult{}, wire.Permanent(fmt.Errorf("upload result of node %s: %w", st.Node, err))
		}
		sr := snaps[st.Node]
		m.Nodes = append(m.Nodes, storage.NodeManifest{
			NodeID: st.Node, Zone: sr.Zone, Entries: up.Entries, Tree: up.Tree, Plugin: sr.Plugin,
			Stats: storage.NodeStats{Files: sr.Files, Dirs: sr.Dirs, Symlinks: sr.Symlinks, Bytes: sr.Bytes,
				UploadedFiles: up.Uploaded, UploadedBytes: up.UploadedBytes, StoredBytes: up.StoredBytes},
		})
	}
	if err := e.repo.PutManifestLocked(ctx, lockID(op.ID), m); err != nil {
		// A lost lock means a garbage collection may have deleted blobs this
		// backup deduplicated against: committing is unsafe, and re-taking
		// the lock would not bring them back.
		if errors.Is(err, storage.ErrInvalidManifest) || errors.Is(err, storage.ErrLockLost) {
			return ManifestResult{}, wire.Permanent(err)
		}
		return ManifestResult{}, err
	}
	s := m.Summarize()
	e.log.Info("backup committed", "backup", m.BackupID, "files", s.Stats.Files, "bytes", s.Stats.Bytes)
	return ManifestResult{BackupID: op.BackupID, Files: s.Stats.Files, Bytes: s.Stats.Bytes}, nil
}

// DeleteResult is the recorded result of the delete step.
type DeleteResult struct {
	Deleted []string `json:"deleted"`
}

// deleteBackups removes snapshots; one already gone (an earlier attempt)
// counts as deleted. Unreferenced blobs stay until garbage collection.
func (e *Engine) deleteBackups(ctx context.Context, ids []string) (DeleteResult, error) {
	res := DeleteResult{Deleted: []string{}}
	for _, id := range ids {
		if err := e.repo.DeleteManifest(ctx, id); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return res, fmt.Errorf("delete backup %s: %w", id, err)
		}
		res.Deleted = append(res.Deleted, id)
	}
	return res, nil
}

// takeLock takes the operation's repository lock, waiting up to
// cfg.LockWait while another holder (a garbage collection, another
// cluster) has it: a backup queues behind a GC instead of failing.
func (e *Engine) takeLock(ctx context.Context, op *fsm.Operation) error {
	owner := fmt.Sprintf("crayfish %s operation %s, coordinator %s", op.Kind, op.ID, e.nodeID)
	deadline := time.Now().Add(e.cfg.LockWait) // monotonic: a wall-clock step must not stretch the wait
	delay := 500 * time.Millisecond
	for {
		err := e.repo.Lock(ctx, lockID(op.ID), lockKind(op.Kind), owner)
		if !errors.Is(err, storage.ErrLocked) || !time.Now().Add(delay).Before(deadline) {
			return err
		}
		e.log.Info("repository locked; waiting", "op", op.ID, "err", err, "retry_in", delay)
		if wait.Sleep(ctx, delay) != nil {
			return ctx.Err()
		}
		delay = min(2*delay, 15*time.Second)
	}
}

// refreshLock re-writes the operation's repository lock while it holds
// one (after its lock step, before its unlock step), so other writers and
// garbage collectors never judge it stale.
func (e *Engine) refreshLock(ctx context.Context, opID string) {
	t := time.NewTicker(e.lockRefreshEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		op := e.store.FSM().Operation(opID)
		if op == nil || !holdsLock(op) {
			continue
		}
		if err := e.repo.RefreshLock(ctx, lockID(opID)); err != nil && ctx.Err() == nil {
			e.log.Error("refreshing the repository lock failed; another process may take over the repository", "op", opID, "err", err)
		}
	}
}

// holdsLock reports whether op's lock step is done and its unlock is not.
func holdsLock(op *fsm.Operation) bool {
	locked := false
	for _, st := range op.Steps {
		switch st.Name {
		case wire.StepLock:
			locked = st.State == fsm.StepDone
		case wire.StepUnlock:
			locked = locked && st.State != fsm.StepDone
		}
	}
	return locked
}

// lockID names the repository lock an operation holds; a resumed operation
// re-takes (refreshes) the same lock.
func lockID(opID string) string { return "op-" + opID }

func (e *Engine) repair(ctx context.Context, op *fsm.Operation) (storage.RepairReport, error) {
	var opts api.RepairOptions
	if err := json.Unmarshal(op.Params.Options, &opts); err != nil {
		return storage.RepairReport{}, wire.Permanent(fmt.Errorf("repair options: %w", err))
	}
	return e.repo.Repair(ctx, opts.Kind, storage.RepairOptions{DryRun: opts.DryRun, Forget: opts.Forget, LockID: lockID(op.ID)})
}

func (e *Engine) verify(ctx context.Context, op *fsm.Operation) (storage.VerifyReport, error) {
	var opts api.VerifyOptions
	if len(op.Params.Options) > 0 {
		if err := json.Unmarshal(op.Params.Options, &opts); err != nil {
			return storage.VerifyReport{}, wire.Permanent(fmt.Errorf("verify options: %w", err))
		}
	}
	rep, err := e.repo.Verify(ctx, storage.VerifyOptions{ReadData: opts.ReadData, ReadDataSubset: opts.ReadDataSubset})
	if err != nil {
		return rep, err
	}
	// The repository against the operation history: a committed backup
	// whose snapshot vanished is damage too. No backup or delete runs
	// meanwhile (the cluster runs one operation at a time).
	ids, err := e.repo.ListBackupIDs(ctx)
	if err != nil {
		return rep, err
	}
	// First: a whole backup gone is the gravest damage, and the step's
	// error names the first problem.
	rep.Problems = append(historyProblems(e.store.FSM().Operations(0), ids), rep.Problems...)
	return rep, nil
}

// earlierResults are the plugin results of op's restore steps before
// step i, read from the replicated state: a coordinator that takes over
// sends the same.
func earlierResults(op *fsm.Operation, i int) []plugin.StepResult {
	var out []plugin.StepResult
	for _, s := range op.Steps[:min(i, len(op.Steps))] {
		if s.Name != wire.StepRestore || s.State != fsm.StepDone || len(s.Result) == 0 {
			continue
		}
		var rr wire.RestoreResult
		if json.Unmarshal(s.Result, &rr) == nil && len(rr.Plugin) > 0 {
			out = append(out, plugin.StepResult{Node: s.Node, Result: rr.Plugin})
		}
	}
	return out
}
