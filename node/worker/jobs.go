package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// job is one step running on this node on behalf of a coordinator. It
// outlives the request that started it: a new coordinator that takes over
// mid-step finds it and waits for it instead of starting over.
type job struct {
	req      wire.StepRequest
	done     chan struct{}
	cancel   context.CancelFunc
	started  time.Time
	finished time.Time
	result   json.RawMessage
	err      error
	progress atomic.Pointer[fsm.Progress]
}

func (j *job) status() wire.JobStatus {
	st := wire.JobStatus{State: wire.JobRunning, Progress: j.progress.Load()}
	select {
	case <-j.done:
	default:
		return st
	}
	if j.err != nil {
		st.State, st.Error, st.Permanent = wire.JobFailed, j.err.Error(), wire.IsPermanent(j.err)
		if errors.Is(j.err, wire.ErrDamaged) {
			st.Damaged, st.Result = true, j.result
		}
		return st
	}
	st.State, st.Result = wire.JobDone, j.result
	return st
}

type jobKey struct {
	op   string
	step int
}

// Jobs runs the steps coordinators ask of this node, one job per
// (operation, step). Starting a step that runs already attaches to it;
// one that succeeded returns its result; one that failed runs again.
type Jobs struct {
	ctx    context.Context // the agent's lifetime
	repoID string          // this node's repository (steps of another are refused)
	worker wire.Worker
	fence  *Fence
	log    *slog.Logger

	mu   sync.Mutex
	jobs map[jobKey]*job
	// audit records every job's interval (bounded), so a checker can
	// prove that jobs of different operations never overlapped here.
	audit []JobInterval
}

// JobInterval is one job's lifetime on this node.
type JobInterval struct {
	OpID     string    `json:"op_id"`
	Step     int       `json:"step"`
	Name     string    `json:"name"`
	Epoch    uint64    `json:"epoch"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Error    string    `json:"error,omitempty"`
}

const maxAudit = 10000

// Audit returns the intervals of finished jobs, oldest first.
func (js *Jobs) Audit() []JobInterval {
	js.mu.Lock()
	defer js.mu.Unlock()
	return append([]JobInterval{}, js.audit...)
}

// NewJobs returns an empty job table whose jobs run until ctx ends.
// repoID is this node's repository: steps for another are refused.
func NewJobs(ctx context.Context, worker wire.Worker, fence *Fence, repoID string, log *slog.Logger) *Jobs {
	return &Jobs{ctx: ctx, worker: worker, fence: fence, repoID: repoID, log: log, jobs: map[jobKey]*job{}}
}

// keepFinished is how long a finished job's outcome stays answerable.
const keepFinished = time.Hour

// Start starts or attaches to the step of req.
//
// A node works for one operation at a time: the FSM runs one operation at
// a time, so a job of another operation still running here is left over
// from a step that was skipped or abandoned (a sibling failed, the
// operation ended without it). Starting a job of a new operation cancels
// such jobs and waits for them to stop first.
func (js *Jobs) Start(req wire.StepRequest) (wire.JobStatus, error) {
	if req.Ref.Repo != "" && js.repoID != "" && req.Ref.Repo != js.repoID {
		return wire.JobStatus{}, wire.Permanent(fmt.Errorf("%w: %w: this node writes to repository %s, the coordinator's is %s; step %s of %s refused",
			wire.ErrBadRequest, wire.ErrOtherRepository, js.repoID, req.Ref.Repo, req.Name, req.Ref.OpID))
	}
	if err := js.fence.Admit(req.Ref); err != nil {
		return wire.JobStatus{}, err
	}
	if wire.Immediate(req.Name) {
		return js.immediate(req), nil
	}
	key := jobKey{req.Ref.OpID, req.Ref.Step}
	js.mu.Lock()
	defer js.mu.Unlock()
	js.pruneLocked()
	for {
		var other *job
		for _, j := range js.jobs {
			if j.req.Ref.OpID != req.Ref.OpID && j.finished.IsZero() {
				other = j
				break
			}
		}
		if other == nil {
			break
		}
		js.log.Info("cancelling a job of an earlier operation", "op", other.req.Ref.OpID, "step", other.req.Name, "for", req.Ref.OpID)
		other.cancel()
		js.mu.Unlock()
		<-other.done
		js.mu.Lock()
	}
	if j, ok := js.jobs[key]; ok {
		if j.req.Name != req.Name {
			return wire.JobStatus{}, wire.Permanent(fmt.Errorf("%w: step %d of %s is %s here, not %s", wire.ErrBadRequest, req.Ref.Step, req.Ref.OpID, j.req.Name, req.Name))
		}
		if st := j.status(); st.State != wire.JobFailed || errors.Is(j.err, wire.ErrStaleEpoch) && req.Ref.Epoch <= j.req.Ref.Epoch {
			return st, nil
		}
	}
	ctx, cancel := context.WithCancel(js.ctx)
	j := &job{req: req, done: make(chan struct{}), cancel: cancel, started: time.Now()}
	js.jobs[key] = j
	go js.run(ctx, j)
	return j.status(), nil
}

// immediate answers a quick node call (wire.Immediate) at once, in the
// request, and keeps nothing: the dedup step makes many of them per step,
// each asking something new.
func (js *Jobs) immediate(req wire.StepRequest) wire.JobStatus {
	res, err := runStepOn(js.ctx, js.worker, req, nil)
	var b []byte
	if err == nil {
		b, err = json.Marshal(res)
	}
	if err != nil {
		return wire.JobStatus{State: wire.JobFailed, Error: err.Error(), Permanent: wire.IsPermanent(err)}
	}
	return wire.JobStatus{State: wire.JobDone, Result: b}
}

// Status returns the job of (op, step) if this node knows it.
func (js *Jobs) Status(ctx context.Context, ref wire.StepRef, wait time.Duration) (wire.JobStatus, bool, error) {
	if err := js.fence.Check(ref); err != nil {
		return wire.JobStatus{}, false, err
	}
	js.mu.Lock()
	j, ok := js.jobs[jobKey{ref.OpID, ref.Step}]
	js.mu.Unlock()
	if !ok {
		return wire.JobStatus{}, false, nil
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-j.done:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return j.status(), true, nil
}

func (js *Jobs) pruneLocked() {
	for k, j := range js.jobs {
		if !j.finished.IsZero() && time.Since(j.finished) > keepFinished {
			delete(js.jobs, k)
		}
	}
}

func (js *Jobs) run(ctx context.Context, j *job) {
	defer j.cancel()
	report := func(p fsm.Progress) { j.progress.Store(&p) }
	res, err := runStepOn(ctx, js.worker, j.req, report)
	if err == nil {
		j.result, err = json.Marshal(res)
	} else if errors.Is(err, wire.ErrDamaged) {
		// The failure's result names the damage: keep it for the
		// coordinator.
		j.result, _ = json.Marshal(res)
	}
	js.mu.Lock()
	j.err, j.finished = err, time.Now()
	iv := JobInterval{OpID: j.req.Ref.OpID, Step: j.req.Ref.Step, Name: j.req.Name, Epoch: j.req.Ref.Epoch,
		Started: j.started.UTC(), Finished: j.finished.UTC()}
	if err != nil {
		iv.Error = err.Error()
	}
	if len(js.audit) >= maxAudit {
		js.audit = js.audit[1:]
	}
	js.audit = append(js.audit, iv)
	idle := true
	for _, o := range js.jobs {
		idle = idle && !o.finished.IsZero()
	}
	js.mu.Unlock()
	close(j.done)
	if idle {
		// An agent waits between operations on a database's host: give
		// the buffers of the step back to the system rather than keep its
		// peak for hours (the runtime would return them only slowly).
		debug.FreeOSMemory()
	}
	if err != nil {
		js.log.Warn("step failed on this node", "op", j.req.Ref.OpID, "step", j.req.Name, "err", err)
	}
}

// runStepOn performs a node step with w.
func runStepOn(ctx context.Context, w wire.Worker, req wire.StepRequest, progress wire.ProgressFunc) (any, error) {
	switch req.Name {
	case wire.StepSnapshot:
		var opts wire.SnapshotOptions
		if req.Snapshot != nil {
			opts = *req.Snapshot
		}
		return w.Snapshot(ctx, req.Ref, opts, progress)
	case wire.StepUpload:
		if req.Dedup != nil {
			return w.UploadDeduped(ctx, req.Ref, *req.Dedup, progress)
		}
		return w.Upload(ctx, req.Ref, req.Skip, progress)
	case wire.StepRelease:
		return struct{}{}, w.Release(ctx, req.Ref)
	case wire.StepRestore:
		if req.Restore == nil {
			return nil, wire.Permanent(fmt.Errorf("%w: restore step without restore request", wire.ErrBadRequest))
		}
		return w.Restore(ctx, req.Ref, *req.Restore, progress)
	case wire.StepChunks:
		var q wire.ChunksQuery
		if req.Chunks != nil {
			q = *req.Chunks
		}
		return w.Chunks(ctx, req.Ref, q)
	case wire.StepAssign:
		if req.Assign == nil {
			return nil, wire.Permanent(fmt.Errorf("%w: assign call without an assignment", wire.ErrBadRequest))
		}
		return struct{}{}, w.AssignChunks(ctx, req.Ref, *req.Assign)
	}
	return nil, wire.Permanent(fmt.Errorf("%w: unknown node step %q", wire.ErrBadRequest, req.Name))
}

// Do runs one of this node's own steps through its job table, exactly
// like a coordinator on another node would: the same attach-on-resume,
// one-operation-at-a-time and audit rules apply to the leader's node
// (wire.Caller(jobs.Do) is its Worker).
func (js *Jobs) Do(ctx context.Context, req wire.StepRequest, progress wire.ProgressFunc, out any) error {
	st, err := js.Start(req)
	for err == nil && st.State == wire.JobRunning {
		if progress != nil && st.Progress != nil {
			progress(*st.Progress)
		}
		var ok bool
		st, ok, err = js.Status(ctx, req.Ref, time.Second)
		if err == nil && !ok {
			st, err = js.Start(req) // pruned meanwhile: start again
		}
		if err == nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err != nil {
		return err
	}
	if progress != nil && st.Progress != nil {
		progress(*st.Progress)
	}
	if st.State == wire.JobFailed && wire.Immediate(req.Name) {
		err := errors.New(st.Error)
		if st.Permanent {
			err = wire.Permanent(err)
		}
		return err
	}
	if st.State == wire.JobFailed {
		js.mu.Lock()
		jerr := js.jobs[jobKey{req.Ref.OpID, req.Ref.Step}].err
		js.mu.Unlock()
		if st.Damaged && len(st.Result) > 0 {
			_ = json.Unmarshal(st.Result, out) // best effort: the error stands either way
		}
		return jerr
	}
	return json.Unmarshal(st.Result, out)
}
