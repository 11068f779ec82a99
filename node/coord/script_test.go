package coord

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata/engine scripts")

// TestEngineScripts runs the scripts of testdata/engine, in the style of
// etcd-raft's data-driven tests: each sets up nodes, scripts failures of
// node calls and of the log, starts operations, and compares what the
// FSM recorded (every step's state and attempts, the epochs claimed, the
// calls each node saw, the repository's manifests and locks) with the
// text after "----". go test ./node/coord -run TestEngineScripts -args
// -update rewrites that text; review its diff like code.
func TestEngineScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/engine/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts (%v)", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScript(t, f) })
	}
}

func runScript(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	script, want, ok := strings.Cut(string(b), "\n----\n")
	if !ok && !*update {
		t.Fatalf("%s has no ---- line", path)
	}
	sc := newScene()
	var out strings.Builder
	for n, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := sc.do(t, strings.Fields(line), &out); err != nil {
			t.Fatalf("%s:%d: %s: %v", path, n+1, line, err)
		}
	}
	got := out.String()
	if *update {
		if err := os.WriteFile(path, []byte(script+"\n----\n"+got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != want {
		t.Errorf("%s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// scene is one script's cluster: the nodes' scripted workers, the log
// and the engine on it.
type scene struct {
	nodes   []string
	workers map[string]*scriptWorker
	log     *memLog
	ops     *Operations
	repo    *memManifests
	// logFails: command type → remaining failures and their kind.
	mu       sync.Mutex
	logFails map[fsm.CommandType][]string
}

func newScene() *scene {
	return &scene{workers: map[string]*scriptWorker{}, log: newMemLog(), logFails: map[fsm.CommandType][]string{}}
}

func (sc *scene) do(t *testing.T, args []string, out *strings.Builder) error {
	switch args[0] {
	case "nodes":
		sc.nodes = args[1:]
		for _, n := range sc.nodes {
			sc.workers[n] = &scriptWorker{node: n, fails: map[string][]string{}, calls: map[string]int{}}
		}
	case "fail": // fail CALL NODE TIMES KIND
		if len(args) != 5 {
			return errors.New("want: fail CALL NODE TIMES KIND")
		}
		w, ok := sc.workers[args[2]]
		times, err := strconv.Atoi(args[3])
		if !ok || err != nil {
			return fmt.Errorf("unknown node %s or count %s", args[2], args[3])
		}
		for range times {
			w.fails[args[1]] = append(w.fails[args[1]], args[4])
		}
	case "log-fail": // log-fail COMMAND TIMES KIND [AFTER]: after AFTER such commands went through
		times, err := strconv.Atoi(args[2])
		if err != nil || len(args) < 4 {
			return errors.New("want: log-fail COMMAND TIMES notleader|unknown [AFTER]")
		}
		after := 0
		if len(args) > 4 {
			after, _ = strconv.Atoi(args[4])
		}
		typ := fsm.CommandType(args[1])
		for range after {
			sc.logFails[typ] = append(sc.logFails[typ], "pass")
		}
		for range times {
			sc.logFails[typ] = append(sc.logFails[typ], args[3])
		}
	case "start": // start KIND ID [BACKUP]
		if sc.ops == nil {
			sc.startEngine(t)
		}
		op, err := sc.start(args[1:])
		if err != nil {
			fmt.Fprintf(out, "start %s %s: refused: %v\n", args[1], args[2], err)
			return nil
		}
		sc.print(out, waitDone(t, sc.log, op.ID))
	default:
		return fmt.Errorf("unknown command %s", args[0])
	}
	return nil
}

func (sc *scene) startEngine(t *testing.T) {
	sc.log.fail = sc.logFail
	sc.ops, _, sc.repo = startEngineOn(t, sc.log, sc.nodes, func(n string) (wire.Worker, error) {
		if w, ok := sc.workers[n]; ok {
			return w, nil
		}
		return nil, fmt.Errorf("%w: %s", wire.ErrNodeUnreachable, n)
	})
}

// logFail fails a scripted command: "notleader" as a deposed leader does
// (this node then wins the next election at once), "unknown" as a commit
// whose outcome was lost.
func (sc *scene) logFail(cmd fsm.Command) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	q := sc.logFails[cmd.Type]
	if len(q) == 0 {
		return nil
	}
	sc.logFails[cmd.Type] = q[1:]
	switch q[0] {
	case "pass":
		return nil
	case "notleader":
		go func() { sc.log.setLeader(false); sc.log.setLeader(true) }()
		return fmt.Errorf("%w: scripted", wire.ErrNotLeader)
	}
	return fmt.Errorf("%w: scripted", wire.ErrUnknownOutcome)
}

func (sc *scene) start(args []string) (*fsm.Operation, error) {
	ctx := context.Background()
	var (
		op  *fsm.Operation
		err error
	)
	switch args[0] {
	case "backup":
		op, _, err = sc.ops.StartBackup(ctx, args[1])
	case "restore":
		backup := ""
		if len(args) > 2 {
			backup = sc.backupOf(args[2])
		}
		op, _, err = sc.ops.StartRestore(ctx, args[1], backup, "", api.RestoreOptions{})
	case "gc":
		op, _, err = sc.ops.StartGC(ctx, args[1])
	case "verify":
		op, _, err = sc.ops.StartVerify(ctx, args[1], api.VerifyOptions{})
	case "cleanup":
		keep, _ := strconv.Atoi(args[2])
		op, _, err = sc.ops.StartCleanup(ctx, args[1], api.CleanupOptions{Policy: &storage.RetentionPolicy{KeepLast: keep}})
	default:
		return nil, fmt.Errorf("unknown kind %s", args[0])
	}
	return op, err
}

// backupOf is the backup id the backup operation id took.
func (sc *scene) backupOf(opID string) string {
	if op := sc.log.FSM().Operation(opID); op != nil {
		return op.BackupID
	}
	return opID
}

func (sc *scene) print(out *strings.Builder, op *fsm.Operation) {
	fmt.Fprintf(out, "%s %s: %s", op.Kind, op.ID, op.State)
	if op.Error != "" {
		fmt.Fprintf(out, " (%s)", op.Error)
	}
	fmt.Fprintln(out)
	for _, st := range op.Steps {
		name := st.Name
		if st.Node != "" {
			name += " " + st.Node
		}
		fmt.Fprintf(out, "  %-14s %s attempts=%d", name, st.State, st.Attempts)
		if st.Error != "" {
			fmt.Fprintf(out, " error=%q", st.Error)
		}
		if st.Name == wire.StepRelease && strings.Contains(string(st.Result), `"deferred":true`) {
			out.WriteString(" deferred")
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "claims=%d", sc.log.count(fsm.CmdClaim))
	for _, n := range sc.nodes {
		fmt.Fprintf(out, " %s[%s]", n, sc.workers[n].summary())
	}
	sc.repo.mu.Lock()
	fmt.Fprintf(out, "\nmanifests=%d locks=%s\n", len(sc.repo.m), strings.Join(sc.repo.locks, ","))
	sc.repo.locks = nil
	sc.repo.mu.Unlock()
}

// scriptWorker is a node whose calls fail as scripted, in order, then
// succeed.
type scriptWorker struct {
	node  string
	mu    sync.Mutex
	fails map[string][]string // call → kinds of its next failures
	calls map[string]int
}

func (w *scriptWorker) call(name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls[name]++
	q := w.fails[name]
	if len(q) == 0 {
		return nil
	}
	w.fails[name] = q[1:]
	switch q[0] {
	case "transient":
		return fmt.Errorf("%s on %s: connection reset", name, w.node)
	case "permanent":
		return wire.Permanent(fmt.Errorf("%s on %s: disk on fire", name, w.node))
	case "damaged":
		return wire.Permanent(wire.MarkDamaged(fmt.Errorf("%w: 1 file on %s not restored", wire.ErrDamaged, w.node)))
	case "stale":
		return fmt.Errorf("%w: scripted", wire.ErrStaleEpoch)
	case "unreachable":
		return wire.Permanent(fmt.Errorf("%w: %s", wire.ErrNodeUnreachable, w.node))
	}
	return fmt.Errorf("unknown failure kind %s", q[0])
}

func (w *scriptWorker) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(w.calls)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, w.calls[k]))
	}
	return strings.Join(parts, " ")
}

func (w *scriptWorker) Snapshot(_ context.Context, ref wire.StepRef, _ wire.SnapshotOptions, p wire.ProgressFunc) (wire.SnapshotResult, error) {
	if err := w.call("snapshot"); err != nil {
		return wire.SnapshotResult{}, err
	}
	return wire.SnapshotResult{Files: 2, Bytes: 10}, nil
}

func (w *scriptWorker) Upload(_ context.Context, ref wire.StepRef, skip []storage.ObjectID, _ wire.ProgressFunc) (wire.UploadResult, error) {
	if err := w.call("upload"); err != nil {
		return wire.UploadResult{}, err
	}
	return wire.UploadResult{Uploaded: 1, Entries: 2, Tree: []storage.ObjectID{storage.HashBytes([]byte(w.node))}}, nil
}

// Chunks counts (and scripts) the count call, the first of a dedup step.
func (w *scriptWorker) Chunks(_ context.Context, _ wire.StepRef, q wire.ChunksQuery) (wire.ChunksResult, error) {
	if q.Partitions == 0 {
		if err := w.call("chunks"); err != nil {
			return wire.ChunksResult{}, err
		}
	}
	return fakeChunks([]wire.ChunkRef{{ID: storage.HashBytes([]byte("shared")), Size: 10}}, q), nil
}

// AssignChunks and UploadDeduped keep nothing: the scripts are about
// failures and leaders, not which node uploads a chunk.
func (w *scriptWorker) AssignChunks(context.Context, wire.StepRef, wire.ChunkAssignment) error {
	return nil
}

func (w *scriptWorker) UploadDeduped(ctx context.Context, ref wire.StepRef, _ wire.DedupRef, p wire.ProgressFunc) (wire.UploadResult, error) {
	return w.Upload(ctx, ref, nil, p)
}

func (w *scriptWorker) Restore(context.Context, wire.StepRef, wire.RestoreRequest, wire.ProgressFunc) (wire.RestoreResult, error) {
	err := w.call("restore")
	return wire.RestoreResult{Files: 2}, err
}

func (w *scriptWorker) Release(context.Context, wire.StepRef) error { return w.call("release") }
