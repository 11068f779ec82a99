package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/plugin/files"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// fakeWorker is an in-memory Worker whose upload fails as scripted.
type fakeWorker struct {
	mu         sync.Mutex
	uploadErrs []error // returned by successive Upload calls, then nil
	calls      map[string]int
	refs       []wire.StepRef
	chunks     []wire.ChunkRef    // what Chunks reports
	skipped    []storage.ObjectID // the skip list of the last Upload
	kept       fakeKept           // the dedup assignments kept
}

func (w *fakeWorker) record(name string, ref wire.StepRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.calls == nil {
		w.calls = map[string]int{}
	}
	w.calls[name]++
	w.refs = append(w.refs, ref)
}

func (w *fakeWorker) count(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[name]
}

func (w *fakeWorker) Snapshot(_ context.Context, ref wire.StepRef, _ wire.SnapshotOptions, p wire.ProgressFunc) (wire.SnapshotResult, error) {
	w.record("snapshot", ref)
	p(fsm.Progress{FilesDone: 1, FilesTotal: 1})
	return wire.SnapshotResult{Files: 1, Bytes: 3}, nil
}

func (w *fakeWorker) Upload(_ context.Context, ref wire.StepRef, skip []storage.ObjectID, _ wire.ProgressFunc) (wire.UploadResult, error) {
	w.record("upload", ref)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.skipped = skip
	if len(w.uploadErrs) > 0 {
		err := w.uploadErrs[0]
		w.uploadErrs = w.uploadErrs[1:]
		return wire.UploadResult{}, err
	}
	return wire.UploadResult{Uploaded: 1, UploadedBytes: 3, Entries: 1, Tree: []storage.ObjectID{storage.HashBytes([]byte("tree"))}}, nil
}

func (w *fakeWorker) Restore(_ context.Context, ref wire.StepRef, _ wire.RestoreRequest, _ wire.ProgressFunc) (wire.RestoreResult, error) {
	w.record("restore", ref)
	return wire.RestoreResult{}, nil
}

func (w *fakeWorker) Chunks(_ context.Context, ref wire.StepRef, q wire.ChunksQuery) (wire.ChunksResult, error) {
	w.record("chunks", ref)
	return fakeChunks(w.chunks, q), nil
}

func (w *fakeWorker) AssignChunks(_ context.Context, ref wire.StepRef, a wire.ChunkAssignment) error {
	w.record("assign", ref)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kept.assign(w.chunks, a)
}

func (w *fakeWorker) UploadDeduped(ctx context.Context, ref wire.StepRef, d wire.DedupRef, p wire.ProgressFunc) (wire.UploadResult, error) {
	w.mu.Lock()
	skip, err := w.kept.skip(d)
	w.mu.Unlock()
	if err != nil {
		return wire.UploadResult{}, wire.Permanent(err)
	}
	return w.Upload(ctx, ref, skip, p)
}

func (w *fakeWorker) Release(_ context.Context, ref wire.StepRef) error {
	w.record("release", ref)
	return nil
}

// memManifests is an in-memory ManifestStore and Catalog.
type memManifests struct {
	mu      sync.Mutex
	m       map[string]*storage.Manifest
	locks   []string
	present map[storage.ObjectID]bool // blobs HasBlob reports
	logs    map[string]*storage.LogArchive
}

func (s *memManifests) ListLogArchiveIDs(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.logs)), nil
}

func (s *memManifests) GetLogArchive(_ context.Context, id string) (*storage.LogArchive, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.logs[id]; ok {
		return a, nil
	}
	return nil, storage.ErrNotFound
}

func (s *memManifests) DeleteLogArchive(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.logs, id)
	return nil
}

func (s *memManifests) PutManifestLocked(_ context.Context, _ string, m *storage.Manifest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[m.BackupID] = m
	return nil
}

func (s *memManifests) GetManifest(_ context.Context, id string) (*storage.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.m[id]; ok {
		return m, nil
	}
	return nil, storage.ErrNotFound
}

func (s *memManifests) DeleteManifest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

func (s *memManifests) ListBackupIDs(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.m)), nil
}

// The lock calls are recorded so tests can check the plan takes and frees
// the operation's repository lock.
func (s *memManifests) Lock(_ context.Context, id string, kind storage.LockKind, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locks = append(s.locks, "lock "+id+" "+string(kind))
	return nil
}

func (s *memManifests) RefreshLock(context.Context, string) error { return nil }

func (s *memManifests) Unlock(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locks = append(s.locks, "unlock "+id)
	return nil
}

func (s *memManifests) GC(context.Context, storage.GCOptions) (storage.GCReport, error) {
	return storage.GCReport{}, nil
}

func (s *memManifests) Verify(context.Context, storage.VerifyOptions) (storage.VerifyReport, error) {
	return storage.VerifyReport{}, nil
}

func (s *memManifests) Repair(_ context.Context, kind string, opts storage.RepairOptions) (storage.RepairReport, error) {
	return storage.RepairReport{Kind: kind, DryRun: opts.DryRun}, nil
}

func (s *memManifests) SyncIndex(context.Context) error { return nil }

func (s *memManifests) HasBlob(id storage.ObjectID) bool { return s.present[id] }

func (s *memManifests) LoadFiles(context.Context, *storage.NodeManifest) ([]storage.FileEntry, error) {
	return nil, nil
}

// startEngine runs the engine on an in-memory log with the fake worker.
func startEngine(t *testing.T, w wire.Worker) (*Operations, *memLog, *memManifests) {
	return startEngineWith(t, func(string) (wire.Worker, error) { return w, nil })
}

func startEngineWith(t *testing.T, workers func(string) (wire.Worker, error)) (*Operations, *memLog, *memManifests) {
	t.Helper()
	return startEngineOn(t, newMemLog(), []string{"n1"}, workers)
}

// startEngineOn runs the engine of node n1 on log, the cluster being
// members, and stops it when the test ends.
func startEngineOn(t *testing.T, log *memLog, members []string, workers func(string) (wire.Worker, error), tune ...func(*Config)) (*Operations, *memLog, *memManifests) {
	t.Helper()
	repo := &memManifests{m: map[string]*storage.Manifest{}, present: map[storage.ObjectID]bool{}, logs: map[string]*storage.LogArchive{}}
	cfg := Config{NodeID: "n1", Plugin: "files", StepAttempts: 3, StepRetryDelay: time.Millisecond, LockWait: time.Second}
	for _, f := range tune {
		f(&cfg)
	}
	e := NewEngine(EngineOptions{
		Config: cfg,
		Log:    log, Repo: repo, Workers: workers, Now: time.Now,
		ProgressInterval: time.Millisecond, LockRefreshEvery: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	ops := NewOperations(OperationsOptions{NodeID: "n1", Engine: e, Catalog: repo, Planners: testPlanners{},
		Members: func() ([]string, error) { return members, nil }})
	return ops, log, repo
}

// testPlanners registers the files plugin's planner.
type testPlanners struct{}

func (testPlanners) Driver(name string) (plugin.Driver, bool) {
	if name == files.Name {
		return files.Driver{}, true
	}
	return nil, false
}

func (testPlanners) Names() []string { return []string{files.Name} }

// backupOp is a backup operation id of the nodes, planned as the API plans it.
func backupOp(id string, nodes ...string) *fsm.Operation {
	return &fsm.Operation{ID: id, Kind: fsm.KindBackup, BackupID: newBackupID(id, time.Now()), Steps: backupPlan(nodes)}
}

// runOp starts op through the engine and waits until it ends.
func runOp(t *testing.T, ops *Operations, s Log, op *fsm.Operation) *fsm.Operation {
	t.Helper()
	if _, err := ops.engine.apply(context.Background(), fsm.Command{Type: fsm.CmdStart, Op: op}); err != nil {
		t.Fatal(err)
	}
	return waitDone(t, s, op.ID)
}

func waitDone(t *testing.T, s Log, id string) *fsm.Operation {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := s.FSM().Changed()
		if op := s.FSM().Operation(id); op != nil && op.State.Terminal() {
			return op
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("operation %s did not finish", id)
			return nil
		}
	}
}

func startWithRetry(t *testing.T, ops *Operations, id string) {
	t.Helper()
	if _, _, err := ops.StartBackup(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func TestEngineRetriesTransientFailures(t *testing.T) {
	w := &fakeWorker{uploadErrs: []error{errors.New("connection reset"), errors.New("timeout")}}
	ops, store, repo := startEngine(t, w)
	startWithRetry(t, ops, "b1")
	op := waitDone(t, store, "b1")
	if op.State != fsm.OpSucceeded {
		t.Fatalf("op %s: %s", op.State, op.Error)
	}
	if op.Steps[2].Name != wire.StepUpload || op.Steps[2].Attempts != 3 || w.count("upload") != 3 {
		t.Fatalf("upload attempts %d calls %d, want 3", op.Steps[2].Attempts, w.count("upload"))
	}
	if op.Steps[1].Progress == nil || op.Steps[1].Progress.FilesDone != 1 {
		t.Fatalf("snapshot progress not recorded: %+v", op.Steps[1].Progress)
	}
	if want := []string{"lock op-b1 shared", "unlock op-b1"}; fmt.Sprint(repo.locks) != fmt.Sprint(want) {
		t.Fatalf("repository locks %v, want %v", repo.locks, want)
	}
	m, err := repo.GetManifest(context.Background(), op.BackupID)
	if err != nil || m.OperationID != "b1" || m.Nodes[0].Stats.UploadedFiles != 1 || m.Nodes[0].Stats.Files != 1 || len(m.Nodes[0].Tree) != 1 {
		t.Fatalf("manifest %+v %v", m, err)
	}
	// Every node call carried the coordinator's current epoch.
	epoch, _ := store.FSM().Epoch()
	for _, ref := range w.refs {
		if ref.Epoch != epoch || ref.OpID != "b1" {
			t.Fatalf("node call %+v, epoch %d", ref, epoch)
		}
	}
}

func TestEnginePermanentFailureRunsCleanupAndUnlocks(t *testing.T) {
	w := &fakeWorker{uploadErrs: []error{wire.Permanent(errors.New("snapshot changed under us"))}}
	ops, store, repo := startEngine(t, w)
	startWithRetry(t, ops, "b1")
	op := waitDone(t, store, "b1")
	if op.State != fsm.OpFailed || op.Steps[2].Attempts != 1 {
		t.Fatalf("op %s upload attempts %d", op.State, op.Steps[2].Attempts)
	}
	if op.Steps[3].State != fsm.StepSkipped || op.Steps[4].State != fsm.StepDone || w.count("release") != 1 ||
		op.Steps[5].Name != wire.StepUnlock || op.Steps[5].State != fsm.StepDone {
		t.Fatalf("manifest %s release %s (%d calls) unlock %s", op.Steps[3].State, op.Steps[4].State, w.count("release"), op.Steps[5].State)
	}
	if len(repo.m) != 0 {
		t.Fatalf("a failed backup wrote a manifest")
	}
	if store.FSM().Active() != nil {
		t.Fatal("failed operation still holds the cluster lock")
	}
	// The lock is free: the next backup runs.
	startWithRetry(t, ops, "b2")
	if op := waitDone(t, store, "b2"); op.State != fsm.OpSucceeded {
		t.Fatalf("second backup %s: %s", op.State, op.Error)
	}
}

// TestEngineMultiNodeDedupAndPhases drives a three-node plan with fake
// workers: every node snapshots, the dedup step assigns each missing
// chunk held by several nodes to exactly one of them (balanced by bytes),
// chunks the repository has are left alone, and uploads get their skip
// lists.
func TestEngineMultiNodeDedupAndPhases(t *testing.T) {
	id := func(s string) storage.ObjectID { return storage.HashBytes([]byte(s)) }
	shared := []wire.ChunkRef{{ID: id("shared-big"), Size: 400}, {ID: id("shared-small"), Size: 100}}
	workers := map[string]*fakeWorker{
		"a": {chunks: append([]wire.ChunkRef{{ID: id("a-only"), Size: 50}, {ID: id("present"), Size: 999}}, shared...)},
		"b": {chunks: append([]wire.ChunkRef{{ID: id("b-only"), Size: 60}}, shared...)},
		"c": {chunks: []wire.ChunkRef{{ID: id("c-only"), Size: 70}, {ID: id("shared-small"), Size: 100}}},
	}
	ops, store, repo := startEngineWith(t, func(n string) (wire.Worker, error) { return workers[n], nil })
	repo.present[id("present")] = true
	done := runOp(t, ops, store, backupOp("b1", "a", "b", "c"))
	if done.State != fsm.OpSucceeded {
		t.Fatalf("op %s: %s", done.State, done.Error)
	}
	var res DedupResult
	stepResult := false
	for _, st := range done.Steps {
		if st.Name == wire.StepDedup {
			stepResult = json.Unmarshal(st.Result, &res) == nil
		}
	}
	if !stepResult {
		t.Fatal("no dedup result")
	}
	if res.Missing != 5 || res.Shared != 2 || res.SavedBytes != 400+2*100 {
		t.Fatalf("dedup %+v", res)
	}
	// Each shared chunk is uploaded by exactly one of its holders.
	for _, c := range shared {
		uploaders := 0
		for n, w := range workers {
			holds := false
			for _, h := range w.chunks {
				holds = holds || h.ID == c.ID
			}
			skips := false
			for _, s := range w.skipped {
				skips = skips || s == c.ID
			}
			if holds && !skips {
				uploaders++
			}
			if !holds && skips {
				t.Errorf("node %s told to skip a chunk it does not hold", n)
			}
		}
		if uploaders != 1 {
			t.Errorf("chunk %v uploaded by %d nodes", c, uploaders)
		}
	}
	var total int64
	for _, b := range res.AssignedBytes {
		total += b
	}
	if total != res.MissingBytes {
		t.Errorf("assigned %d bytes of %d missing", total, res.MissingBytes)
	}
	for n, w := range workers {
		if w.count("snapshot") != 1 || w.count("upload") != 1 || w.count("release") != 1 {
			t.Errorf("node %s calls %v", n, w.calls)
		}
	}
	m, err := repo.GetManifest(context.Background(), done.BackupID)
	if err != nil || len(m.Nodes) != 3 {
		t.Fatalf("manifest %+v %v", m, err)
	}
}

func TestMapRestore(t *testing.T) {
	cur := []NodeInfo{{"a", "z1"}, {"n2", "z2"}, {"n3", "z1"}}
	bak := []NodeInfo{{"a", "z1"}, {"old2", "z1"}, {"old3", "z2"}}
	got, err := mapRestore(cur, bak, nil, false, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "a", "n2": "old3", "n3": "old2"} // id, then zone
	for c, b := range want {
		if got[c].SourceNode != b {
			t.Errorf("%s <- %s, want %s", c, got[c].SourceNode, b)
		}
	}
	if got, err = mapRestore(cur, bak, map[string]string{"n2": "old2"}, false, ""); err != nil || got["n2"].SourceNode != "old2" || got["n3"].SourceNode != "old3" {
		t.Errorf("explicit mapping: %v %v", got, err)
	}
	// Fewer backup nodes than current ones: refused, or cleared on request.
	if _, err := mapRestore(cur, bak[:2], nil, false, ""); !errors.Is(err, wire.ErrBadRequest) {
		t.Errorf("unmapped current node: %v", err)
	}
	if got, err := mapRestore(cur, bak[:2], nil, true, ""); err != nil || !got["n2"].Clear {
		t.Errorf("clear_unmapped: %v %v", got, err)
	}
	// More backup nodes than current ones: always refused, unless one node only.
	if _, err := mapRestore(cur[:2], bak, nil, true, ""); !errors.Is(err, wire.ErrBadRequest) {
		t.Errorf("unmapped backup node: %v", err)
	}
	if got, err := mapRestore(cur[:1], bak, nil, false, "a"); err != nil || len(got) != 1 || got["a"].SourceNode != "a" {
		t.Errorf("--node a: %v %v", got, err)
	}
	for _, bad := range []map[string]string{{"zz": "a"}, {"a": "zz"}, {"a": "old2", "n2": "old2"}} {
		if _, err := mapRestore(cur, bak, bad, false, ""); !errors.Is(err, wire.ErrBadRequest) {
			t.Errorf("mapping %v: %v", bad, err)
		}
	}
}

// TestStampNeverGoesBack: a leader whose clock is behind the times in
// the log stamps later than the latest one, so backup ids keep sorting
// in start order across leaders.
func TestStampNeverGoesBack(t *testing.T) {
	m := fsm.NewMachine()
	later := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	b, err := fsm.Command{Type: fsm.CmdClaim, Node: "old-leader", Time: later}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m.Apply(&raft.Log{Index: 1, Data: b})
	log := newMemLog()
	log.machine = m
	e := &Engine{store: log, now: func() time.Time { return later.Add(-time.Hour) }}
	if got := e.stamp(); !got.After(later) {
		t.Fatalf("stamp %v is not after the log's latest time %v", got, later)
	}
	if id1, id2 := newBackupID("a", later), newBackupID("b", e.stamp()); id2 <= id1 {
		t.Fatalf("backup id %s does not sort after %s", id2, id1)
	}
	e.now = func() time.Time { return later.Add(time.Hour) }
	if got := e.stamp(); !got.Equal(later.Add(time.Hour)) {
		t.Fatalf("a clock ahead of the log is used as is: %v", got)
	}
}

// TestForgetRepeatRecordsTheSameBackups: the retention decision is fixed
// in the forget step's input, so a forget step run again after a leader
// change (the first attempt deleted some backups, or all) records every
// backup the cleanup removed, not only what was still there.
func TestForgetRepeatRecordsTheSameBackups(t *testing.T) {
	repo := &memManifests{m: map[string]*storage.Manifest{}}
	var decisions []storage.Decision
	for i, id := range []string{"b5", "b4", "b3", "b2", "b1"} {
		repo.m[id] = &storage.Manifest{BackupID: id}
		decisions = append(decisions, storage.Decision{BackupID: id, Keep: i < 2})
	}
	plan := cleanupPlan(&ForgetInput{Policy: storage.RetentionPolicy{KeepLast: 2}, Decisions: decisions})
	step := plan[1]
	if step.Name != wire.StepForget || len(step.Input) == 0 {
		t.Fatalf("cleanup plan %+v: want the decision in the forget step", plan)
	}
	e := &Engine{repo: repo}
	op := &fsm.Operation{ID: "c1", Kind: fsm.KindCleanup, Steps: plan}
	want := []string{"b3", "b2", "b1"}
	for attempt := range 2 {
		if attempt == 1 {
			repo.m["b0"] = &storage.Manifest{BackupID: "b0"} // newer than the decision: kept
		}
		res, err := e.forget(context.Background(), op, step)
		if err != nil || !slices.Equal(res.Deleted, want) {
			t.Fatalf("attempt %d: deleted %v, %v; want %v", attempt+1, res.Deleted, err, want)
		}
	}
	if len(repo.m) != 3 || repo.m["b0"] == nil || repo.m["b5"] == nil || repo.m["b4"] == nil {
		t.Fatalf("left %v", repo.m)
	}
}

// TestLeadershipEndsAfterItsFencing: the fencing a leader starts when it
// claims an epoch has ended by the time the engine stops, so nothing of
// a past leadership writes (a node's fence file) after it.
func TestLeadershipEndsAfterItsFencing(t *testing.T) {
	log := newMemLog()
	started := make(chan struct{})
	var finished atomic.Bool
	e := NewEngine(EngineOptions{Config: Config{NodeID: "n1", StepAttempts: 1}, Log: log, Repo: &memManifests{m: map[string]*storage.Manifest{}},
		Workers: func(string) (wire.Worker, error) { return nil, errors.New("no workers") },
		FenceNodes: func(ctx context.Context, epoch uint64) {
			close(started)
			<-ctx.Done()
			finished.Store(true)
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	<-started
	cancel()
	<-done
	if !finished.Load() {
		t.Fatal("the engine stopped while its fencing still ran")
	}
}

// TestRecordedGCIsBounded: a GC that condemned thousands of packs records
// its counts in full and a few of the packs by name.
func TestRecordedGCIsBounded(t *testing.T) {
	var rep storage.GCReport
	rep.Classification.Condemned.Count = 1000
	for i := range 1000 {
		rep.Classification.Condemned.Packs = append(rep.Classification.Condemned.Packs, storage.GCPack{Key: fmt.Sprint(i)})
	}
	rep.Classification.Repack.Packs = []storage.GCPack{{Key: "r"}}
	got := recordedGC(rep)
	if c := got.Classification; len(c.Condemned.Packs) != maxRecordedPacks || c.Condemned.Count != 1000 || len(c.Repack.Packs) != 1 {
		t.Fatalf("recorded %d condemned packs of %d, %d to repack", len(c.Condemned.Packs), c.Condemned.Count, len(c.Repack.Packs))
	}
	if len(rep.Classification.Condemned.Packs) != 1000 {
		t.Fatal("the report itself was cut")
	}
}
