package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/plugin/files"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// faultRepo is a real repository whose operations fail with the error set
// for them (nil: the real operation).
type faultRepo struct {
	*storage.Repository
	sync, adopt, saveBlob, loadBlob, saveFiles, flush, loadFiles, lock, putArchive error
}

func (r *faultRepo) SyncIndex(ctx context.Context) error {
	if r.sync != nil {
		return r.sync
	}
	return r.Repository.SyncIndex(ctx)
}

func (r *faultRepo) AdoptOrphanPacks(ctx context.Context, since time.Time) (int, error) {
	if r.adopt != nil {
		return 0, r.adopt
	}
	return r.Repository.AdoptOrphanPacks(ctx, since)
}

func (r *faultRepo) SaveBlob(ctx context.Context, t storage.BlobType, id storage.ObjectID, data []byte) (int64, error) {
	if r.saveBlob != nil {
		return 0, r.saveBlob
	}
	return r.Repository.SaveBlob(ctx, t, id, data)
}

func (r *faultRepo) LoadBlob(ctx context.Context, id storage.ObjectID) ([]byte, error) {
	if r.loadBlob != nil {
		return nil, r.loadBlob
	}
	return r.Repository.LoadBlob(ctx, id)
}

func (r *faultRepo) SaveFiles(ctx context.Context, f []storage.FileEntry) ([]storage.ObjectID, error) {
	if r.saveFiles != nil {
		return nil, r.saveFiles
	}
	return r.Repository.SaveFiles(ctx, f)
}

func (r *faultRepo) Flush(ctx context.Context) error {
	if r.flush != nil {
		return r.flush
	}
	return r.Repository.Flush(ctx)
}

func (r *faultRepo) LoadFiles(ctx context.Context, n *storage.NodeManifest) ([]storage.FileEntry, error) {
	if r.loadFiles != nil {
		return nil, r.loadFiles
	}
	return r.Repository.LoadFiles(ctx, n)
}

func (r *faultRepo) Lock(ctx context.Context, id string, kind storage.LockKind, owner string) error {
	if r.lock != nil {
		return r.lock
	}
	return r.Repository.Lock(ctx, id, kind, owner)
}

func (r *faultRepo) PutLogArchiveLocked(ctx context.Context, lockID string, a *storage.LogArchive) error {
	if r.putArchive != nil {
		return r.putArchive
	}
	return r.Repository.PutLogArchiveLocked(ctx, lockID, a)
}

// fileChunks lists the chunks of the regular files among entries.
func fileChunks(entries []storage.FileEntry) []storage.ObjectID {
	var ids []storage.ObjectID
	for _, e := range entries {
		if e.Type == storage.TypeFile {
			ids = append(ids, e.Chunks...)
		}
	}
	return ids
}

// snapshotted is a files node with the snapshot of operation "b" taken
// (not uploaded).
func snapshotted(t *testing.T) (*filesNode, wire.StepRef) {
	t.Helper()
	n := newFilesNode(t)
	ref := wire.StepRef{OpID: "b", Epoch: 1, Step: 1}
	if _, err := n.w.Snapshot(context.Background(), ref, wire.SnapshotOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	return n, ref
}

func TestUploadRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("no snapshot", func(t *testing.T) {
		n := newFilesNode(t)
		_, err := n.w.Upload(ctx, wire.StepRef{OpID: "never-snapshotted", Epoch: 1}, nil, nil)
		if !wire.IsPermanent(err) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "never-snapshotted") {
			t.Fatalf("err %v, want a permanent not-exist naming the operation", err)
		}
		if _, err := os.Stat(n.w.snapshotDir("never-snapshotted")); !os.IsNotExist(err) {
			t.Errorf("a refused upload created the snapshot dir (%v)", err)
		}
	})
	t.Run("stale epoch", func(t *testing.T) {
		n, ref := snapshotted(t)
		if err := n.w.fence.Admit(wire.StepRef{OpID: "newer", Epoch: 5}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.w.Upload(ctx, ref, nil, nil); !errors.Is(err, wire.ErrStaleEpoch) {
			t.Fatalf("err %v, want ErrStaleEpoch", err)
		}
		if _, err := os.Stat(n.w.uploadMarker(ref.OpID, wire.StepUpload)); !os.IsNotExist(err) {
			t.Errorf("a refused upload left its marker (%v)", err)
		}
	})
	t.Run("unreadable record", func(t *testing.T) {
		n, ref := snapshotted(t)
		n.w.last = nil // as after a restart
		if err := os.WriteFile(n.w.recordPath(ref.OpID), []byte(`{"op_id":"b","entries":[`), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := n.w.Upload(ctx, ref, nil, nil)
		var se *json.SyntaxError
		if !wire.IsPermanent(err) || !errors.As(err, &se) || !strings.Contains(err.Error(), "snapshot record of b") {
			t.Fatalf("err %v, want a permanent error naming the record", err)
		}
	})
	t.Run("snapshot dir removed", func(t *testing.T) {
		// The record is still in memory, but the directory it describes
		// is gone: the upload fails instead of uploading nothing.
		n, ref := snapshotted(t)
		if err := os.RemoveAll(n.w.snapshotDir(ref.OpID)); err != nil {
			t.Fatal(err)
		}
		_, err := n.w.Upload(ctx, ref, nil, nil)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "upload marker") {
			t.Fatalf("err %v, want the marker's not-exist", err)
		}
	})
}

// After a restart (a new LocalWorker, nothing in memory) Upload reads the
// record from disk; one written before the record had Dir uploads from
// the snapshot's tree directory.
func TestUploadRecordFromDiskAfterRestart(t *testing.T) {
	ctx := context.Background()
	n, ref := snapshotted(t)
	snapRec, err := n.w.loadRecord(ref.OpID)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(n.w.snapshotDir(ref.OpID), "tree"); snapRec.Dir != want {
		t.Fatalf("record dir %q, want %q", snapRec.Dir, want)
	}
	// Drop "dir" from the record on disk.
	b, err := os.ReadFile(n.w.recordPath(ref.OpID))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "dir")
	if b, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.w.recordPath(ref.OpID), b, 0o600); err != nil {
		t.Fatal(err)
	}

	old := n.w
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	n.w = NewLocalWorker(old.cfg, old.plugins, n.repo, old.fence, slog.New(slog.DiscardHandler))
	up, err := n.w.Upload(ctx, ref, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up.Uploaded != 4 || up.AlreadyPresent != 0 || up.Entries != int64(len(snapRec.Entries)) || len(up.Tree) == 0 {
		t.Fatalf("upload %+v, want the 4 chunks and %d entries", up, len(snapRec.Entries))
	}
	got, err := n.repo.LoadFiles(ctx, &storage.NodeManifest{NodeID: "n1", Entries: up.Entries, Tree: up.Tree})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(snapRec.Entries) {
		t.Fatalf("file list of %d entries, want %d", len(got), len(snapRec.Entries))
	}
	for _, id := range fileChunks(got) {
		if !n.repo.HasBlob(id) {
			t.Errorf("chunk %v not stored", id)
		}
	}
}

// Chunks another node uploads (skip) are counted present and not stored.
func TestUploadSkipsChunksOfOtherNodes(t *testing.T) {
	ctx := context.Background()
	n, ref := snapshotted(t)
	rec, err := n.w.loadRecord(ref.OpID)
	if err != nil {
		t.Fatal(err)
	}
	chunks := fileChunks(rec.Entries)
	if len(chunks) != 4 {
		t.Fatalf("%d chunks, want 4", len(chunks))
	}
	skip := chunks[:2]
	up, err := n.w.Upload(ctx, ref, skip, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up.Uploaded != 2 || up.AlreadyPresent != 2 {
		t.Fatalf("upload %+v, want 2 uploaded and 2 present", up)
	}
	for i, id := range chunks {
		if got, want := n.repo.HasBlob(id), !slices.Contains(skip, id); got != want {
			t.Errorf("chunk %d stored=%v, want %v", i, got, want)
		}
	}
}

// Upload's repository failures are returned as they are (retryable), or
// wrapped with what failed; a changed snapshot copy is permanent.
func TestUploadRepositoryFailures(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("storage unavailable")
	for _, tc := range []struct {
		name   string
		fault  func(r *faultRepo)
		prior  bool   // an earlier attempt left the upload marker
		phrase string // in the error
	}{
		{"sync index", func(r *faultRepo) { r.sync = boom }, false, ""},
		{"adopt orphans", func(r *faultRepo) { r.adopt = boom }, true, ""},
		{"save blob", func(r *faultRepo) { r.saveBlob = boom }, false, ""},
		{"save files", func(r *faultRepo) { r.saveFiles = boom }, false, "save file list"},
		{"flush", func(r *faultRepo) { r.flush = boom }, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ref := snapshotted(t)
			if tc.prior {
				if _, err := n.w.Upload(ctx, ref, nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			r := &faultRepo{Repository: n.repo}
			tc.fault(r)
			n.w.repo = r
			_, err := n.w.Upload(ctx, ref, nil, nil)
			if !errors.Is(err, boom) || wire.IsPermanent(err) || !strings.Contains(err.Error(), tc.phrase) {
				t.Fatalf("err %v, want a retryable %v (%q)", err, boom, tc.phrase)
			}
			// A retry on a healthy repository completes the upload.
			n.w.repo = n.repo
			up, err := n.w.Upload(ctx, ref, nil, nil)
			if err != nil || up.Uploaded+up.AlreadyPresent != 4 || len(up.Tree) == 0 {
				t.Fatalf("retry: %+v %v", up, err)
			}
		})
	}
}

// A snapshot copy changed after the snapshot cannot be uploaded as
// recorded: permanent, so the coordinator takes a new backup.
func TestUploadChangedSnapshotIsPermanent(t *testing.T) {
	n, ref := snapshotted(t)
	rec, err := n.w.loadRecord(ref.OpID)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rec.Dir, "top.txt"), []byte("TOP"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = n.w.Upload(context.Background(), ref, nil, nil)
	if !wire.IsPermanent(err) || !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), "top.txt") {
		t.Fatalf("err %v, want a permanent ErrCorrupt naming top.txt", err)
	}
}

func TestNodeFiles(t *testing.T) {
	ctx := context.Background()
	n := newFilesNode(t)
	const id = "20261204T000000.000000Z-000001"
	n.backup(t, "b", id)
	m, err := n.repo.GetManifest(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if src, f, err := n.w.nodeFiles(ctx, wire.RestoreRequest{BackupID: id, Clear: true}, m); src != "" || f != nil || err != nil {
		t.Errorf("a cleared node: %q %v %v, want nothing", src, f, err)
	}
	src, f, err := n.w.nodeFiles(ctx, wire.RestoreRequest{BackupID: id}, m)
	if err != nil || src != "n1" || len(fileChunks(f)) != 4 {
		t.Errorf("own files: %q, %d entries, %v", src, len(f), err)
	}
	// A single-node backup restores onto a node of any name (a
	// replacement agent), and names the node the files came from; one
	// of several nodes only onto its own.
	if src, f, err := n.w.nodeFiles(ctx, wire.RestoreRequest{BackupID: id, SourceNode: "n9"}, m); err != nil || src != "n1" || len(fileChunks(f)) != 4 {
		t.Errorf("another name, single-node backup: source %q, %d entries, %v; want n1's", src, len(f), err)
	}
	two := *m
	two.Nodes = append(slices.Clone(m.Nodes), storage.NodeManifest{NodeID: "n2"})
	_, _, err = n.w.nodeFiles(ctx, wire.RestoreRequest{BackupID: id, SourceNode: "n9"}, &two)
	if !wire.IsPermanent(err) || !strings.Contains(err.Error(), "no data for node n9") {
		t.Errorf("a node not in the backup: %v, want permanent", err)
	}
	if src, f, err := n.w.nodeFiles(ctx, wire.RestoreRequest{BackupID: id, SourceNode: "n1"}, &two); err != nil || src != "n1" || len(fileChunks(f)) != 4 {
		t.Errorf("n1 of a two-node backup: %q, %d entries, %v", src, len(f), err)
	}
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{storage.ErrCorrupt, true}, {storage.ErrNotFound, true}, {storage.ErrInvalidManifest, true},
		{errors.New("connection reset"), false},
	} {
		n.w.repo = &faultRepo{Repository: n.repo, loadFiles: tc.err}
		_, _, err := n.w.nodeFiles(ctx, wire.RestoreRequest{BackupID: id}, m)
		if !errors.Is(err, tc.err) || wire.IsPermanent(err) != tc.permanent {
			t.Errorf("LoadFiles failing with %v: %v, want permanent=%v", tc.err, err, tc.permanent)
		}
	}
}

// drillPlugin is the files plugin with a drill check.
type drillPlugin struct {
	plugin.Plugin
	out  json.RawMessage
	err  error
	seen string // top.txt as the check read it
}

func (p *drillPlugin) CheckDrill(_ context.Context, dir string) (json.RawMessage, error) {
	b, _ := os.ReadFile(filepath.Join(dir, "top.txt"))
	p.seen = string(b)
	return p.out, p.err
}

func TestDrill(t *testing.T) {
	ctx := context.Background()
	n := newFilesNode(t)
	const id = "20261204T000000.000000Z-000001"
	n.backup(t, "b", id)
	dp := &drillPlugin{Plugin: n.w.plugins.Own(), out: json.RawMessage(`{"sstables":3}`)}
	n.w.plugins = NewPluginSet(files.Name, map[string]plugin.Plugin{files.Name: dp})
	ref := wire.StepRef{OpID: "d", Epoch: 1, Step: 2}
	drill := func(req wire.RestoreRequest) (wire.RestoreResult, error) {
		t.Helper()
		req.Drill = true
		res, err := n.w.Restore(ctx, ref, req, nil)
		if _, serr := os.Stat(filepath.Join(n.data, "drill")); !os.IsNotExist(serr) {
			t.Errorf("drill scratch space left after %v (%v)", err, serr)
		}
		return res, err
	}

	res, err := drill(wire.RestoreRequest{BackupID: id})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verified != 4 || res.VerifiedBytes != int64(len("port=1rowslogtop")) || res.SourceNode != "n1" || res.Files != 4 || res.Downloaded != 4 {
		t.Errorf("drill %+v", res)
	}
	if !strings.HasPrefix(res.Target, filepath.Join(n.data, "drill", "d")+"/") {
		t.Errorf("drill target %q not below the data dir's drill space", res.Target)
	}
	if string(res.Plugin) != `{"sstables":3}` || dp.seen != "top" {
		t.Errorf("plugin result %s, check saw top.txt=%q", res.Plugin, dp.seen)
	}
	if b, _ := os.ReadFile(filepath.Join(n.root, "top.txt")); string(b) != "top" {
		t.Errorf("the drill touched the root: top.txt = %q", b)
	}

	dp.err = errors.New("sstable digest mismatch")
	if _, err := drill(wire.RestoreRequest{BackupID: id}); !wire.IsPermanent(err) || !errors.Is(err, dp.err) || !strings.Contains(err.Error(), "drill check") {
		t.Errorf("a failing plugin check: %v, want permanent", err)
	}
	dp.err, dp.out = nil, json.RawMessage(`"`+strings.Repeat("x", plugin.MaxResult)+`"`)
	if _, err := drill(wire.RestoreRequest{BackupID: id}); !wire.IsPermanent(err) || !strings.Contains(err.Error(), "drill result") {
		t.Errorf("an oversized plugin result: %v, want permanent", err)
	}
	dp.out = nil

	if _, err := drill(wire.RestoreRequest{BackupID: "20261204T000000.000000Z-000009"}); !wire.IsPermanent(err) || !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a missing backup: %v, want a permanent not found", err)
	}
	m, err := n.repo.GetManifest(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	m.BackupID = "20261204T000000.000000Z-000002"
	m.Nodes = append(m.Nodes, storage.NodeManifest{NodeID: "n2"})
	if err := n.repo.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := drill(wire.RestoreRequest{BackupID: m.BackupID, SourceNode: "n9"}); !wire.IsPermanent(err) || !strings.Contains(err.Error(), "no data for node n9") {
		t.Errorf("a node not in the backup: %v, want permanent", err)
	}
	// A read failing for a reason a retry can fix is no damage.
	n.w.repo = &faultRepo{Repository: n.repo, loadBlob: errors.New("connection reset")}
	if res, err := drill(wire.RestoreRequest{BackupID: id}); err == nil || wire.IsPermanent(err) || errors.Is(err, wire.ErrDamaged) || res.DamagedTotal != 0 {
		t.Errorf("a transient read failure: %+v %v, want a retryable error", res, err)
	}
	n.w.repo = &faultRepo{Repository: n.repo, loadBlob: fmt.Errorf("pack gone: %w", storage.ErrNotFound)}
	if res, err := drill(wire.RestoreRequest{BackupID: id}); !wire.IsPermanent(err) || !errors.Is(err, wire.ErrDamaged) || res.DamagedTotal != 4 {
		t.Errorf("every blob missing: %v, %d damaged, want a permanent ErrDamaged of the 4 files", err, res.DamagedTotal)
	}
	n.w.repo = &faultRepo{Repository: n.repo, sync: errors.New("list failed")}
	if _, err := drill(wire.RestoreRequest{BackupID: id}); err == nil || wire.IsPermanent(err) {
		t.Errorf("an index sync failure: %v, want retryable", err)
	}
	n.w.repo = n.repo
}

// A drill of a backup with a chunk the repository lacks fails for good,
// naming the damaged file, and still removes its scratch space.
func TestDrillDamagedBackup(t *testing.T) {
	ctx := context.Background()
	n := newFilesNode(t)
	good := []byte("intact")
	goodID := storage.HashBytes(good)
	if _, err := n.repo.SaveBlob(ctx, storage.BlobData, goodID, good); err != nil {
		t.Fatal(err)
	}
	lost := []byte("never stored")
	lostID := storage.HashBytes(lost)
	entries := []storage.FileEntry{
		{Path: "a.txt", Type: storage.TypeFile, Mode: 0o644, MTime: time.Unix(1, 0), Size: int64(len(good)), Content: goodID, Chunks: []storage.ObjectID{goodID}},
		{Path: "b.txt", Type: storage.TypeFile, Mode: 0o644, MTime: time.Unix(1, 0), Size: int64(len(lost)), Content: lostID, Chunks: []storage.ObjectID{lostID}},
	}
	treeIDs, err := n.repo.SaveFiles(ctx, entries)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m := &storage.Manifest{FormatVersion: storage.ManifestFormatVersion, BackupID: "20261204T000000.000000Z-000003", OperationID: "o", Plugin: files.Name,
		StartedAt: time.Unix(1, 0), FinishedAt: time.Unix(2, 0),
		Nodes: []storage.NodeManifest{{NodeID: "n1", Entries: int64(len(entries)), Tree: treeIDs}}}
	if err := n.repo.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	res, err := n.w.Restore(ctx, wire.StepRef{OpID: "d", Epoch: 1, Step: 1}, wire.RestoreRequest{BackupID: m.BackupID, Drill: true}, nil)
	if !errors.Is(err, wire.ErrDamaged) || !wire.IsPermanent(err) {
		t.Fatalf("err %v, want a permanent ErrDamaged", err)
	}
	if res.DamagedTotal != 1 || len(res.Damaged) != 1 || res.Damaged[0].Path != "b.txt" || res.Damaged[0].Chunks[0].ID != lostID ||
		res.Damaged[0].Chunks[0].Problem != wire.DamageMissing || res.Verified != 0 {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(n.data, "drill")); !os.IsNotExist(err) {
		t.Errorf("drill scratch space left (%v)", err)
	}
}

// uploadLogs' failures leave no log archive; the archive spans its files'
// closing times whatever their order.
func TestUploadLogs(t *testing.T) {
	ctx := context.Background()
	n := newFilesNode(t)
	logDir := t.TempDir()
	write(t, filepath.Join(logDir, "logs", "seg-1"), "first")
	write(t, filepath.Join(logDir, "logs", "seg-2"), "second")
	t1 := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	logs := []plugin.LogFile{{Path: "logs/seg-2", ClosedAt: t1.Add(time.Hour)}, {Path: "logs/seg-1", ClosedAt: t1}}
	noArchive := func(what string) {
		t.Helper()
		if ids, err := n.repo.ListLogArchiveIDs(ctx); err != nil || len(ids) != 0 {
			t.Errorf("%s: log archives %v %v, want none", what, ids, err)
		}
	}

	boom := errors.New("storage unavailable")
	for _, tc := range []struct {
		name   string
		fault  func(r *faultRepo)
		phrase string
	}{
		{"lock", func(r *faultRepo) { r.lock = boom }, ""},
		{"sync index", func(r *faultRepo) { r.sync = boom }, ""},
		{"save blob", func(r *faultRepo) { r.saveBlob = boom }, ""},
		{"save files", func(r *faultRepo) { r.saveFiles = boom }, "save file list"},
		{"flush", func(r *faultRepo) { r.flush = boom }, ""},
		{"put archive", func(r *faultRepo) { r.putArchive = boom }, ""},
	} {
		r := &faultRepo{Repository: n.repo}
		tc.fault(r)
		n.w.repo = r
		if a, err := n.w.uploadLogs(ctx, logDir, logs, nil); a != nil || !errors.Is(err, boom) || !strings.Contains(err.Error(), tc.phrase) {
			t.Errorf("%s failing: %v %v", tc.name, a, err)
		}
		noArchive(tc.name)
	}
	n.w.repo = struct{ Repository }{n.repo}
	if _, err := n.w.uploadLogs(ctx, logDir, logs, nil); err == nil || !strings.Contains(err.Error(), "cannot keep log archives") {
		t.Errorf("a repository without log archives: %v", err)
	}
	n.w.repo = n.repo
	gone := append(slices.Clone(logs), plugin.LogFile{Path: "logs/seg-0", ClosedAt: t1})
	if _, err := n.w.uploadLogs(ctx, logDir, gone, nil); err == nil || !strings.Contains(err.Error(), "2 of the 3 closed log files") {
		t.Errorf("a log file gone before the upload: %v", err)
	}
	if _, err := n.w.uploadLogs(ctx, filepath.Join(logDir, "missing"), logs, nil); err == nil {
		t.Error("a missing log root: no error")
	}
	noArchive("refusals")

	a, err := n.w.uploadLogs(ctx, logDir, logs, json.RawMessage(`{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if !a.From.Equal(t1) || !a.To.Equal(t1.Add(time.Hour)) || a.Node.Stats.Files != 2 || string(a.Node.Plugin) != `{"n":2}` {
		t.Errorf("archive from %v to %v, %+v", a.From, a.To, a.Node)
	}
	if got, err := n.repo.GetLogArchive(ctx, a.ID); err != nil || !got.To.Equal(a.To) {
		t.Errorf("stored archive %+v %v", got, err)
	}
}

// A drill of a backup whose file list holds a hostile entry fails for
// good (the list is refused as it loads) and writes nothing outside its
// scratch space.
func TestDrillHostileEntry(t *testing.T) {
	ctx := context.Background()
	n := newFilesNode(t)
	c := []byte("escaped")
	id := storage.HashBytes(c)
	if _, err := n.repo.SaveBlob(ctx, storage.BlobData, id, c); err != nil {
		t.Fatal(err)
	}
	entries := []storage.FileEntry{{Path: "../../escape.txt", Type: storage.TypeFile, Mode: 0o644, MTime: time.Unix(1, 0), Size: int64(len(c)), Content: id, Chunks: []storage.ObjectID{id}}}
	treeIDs, err := n.repo.SaveFiles(ctx, entries)
	if err != nil {
		t.Skipf("the repository refuses the entry itself: %v", err)
	}
	if err := n.repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m := &storage.Manifest{FormatVersion: storage.ManifestFormatVersion, BackupID: "20261204T000000.000000Z-000004", OperationID: "o", Plugin: files.Name,
		StartedAt: time.Unix(1, 0), FinishedAt: time.Unix(2, 0),
		Nodes: []storage.NodeManifest{{NodeID: "n1", Entries: 1, Tree: treeIDs}}}
	if err := n.repo.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	_, err = n.w.Restore(ctx, wire.StepRef{OpID: "d", Epoch: 1, Step: 1}, wire.RestoreRequest{BackupID: m.BackupID, Drill: true}, nil)
	if !wire.IsPermanent(err) || !errors.Is(err, storage.ErrInvalidManifest) {
		t.Fatalf("err %v, want a permanent invalid manifest (the file list is checked as it loads)", err)
	}
	for _, p := range []string{filepath.Join(n.data, "escape.txt"), filepath.Join(n.data, "drill", "escape.txt"), filepath.Join(filepath.Dir(n.data), "escape.txt")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s written (%v)", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(n.data, "drill")); !os.IsNotExist(err) {
		t.Errorf("drill scratch space left (%v)", err)
	}
}
