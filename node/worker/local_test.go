package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/plugin/files"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// filesNode is a worker with the files plugin over root, on a real
// file:// repository.
type filesNode struct {
	w    *LocalWorker
	repo *storage.Repository
	root string
	data string
}

func newFilesNode(t *testing.T) *filesNode {
	t.Helper()
	ctx := context.Background()
	base := t.TempDir()
	n := &filesNode{root: filepath.Join(base, "root"), data: filepath.Join(base, "data")}
	for p, c := range map[string]string{"etc/app.conf": "port=1", "etc/db/x.db": "rows", "var/log/a.log": "log", "top.txt": "top"} {
		write(t, filepath.Join(n.root, p), c)
	}
	repo, err := storage.Init(ctx, "file://"+filepath.Join(base, "repo"), storage.InitOptions{NoEncryption: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	n.repo = repo
	if err := os.MkdirAll(n.data, 0o700); err != nil {
		t.Fatal(err)
	}
	fence, err := OpenFence(n.data)
	if err != nil {
		t.Fatal(err)
	}
	cfg := files.Driver{}.NewConfig().(*files.Config)
	cfg.Root = n.root
	env := plugin.Env{NodeID: "n1", DataDir: n.data, Log: slog.New(slog.DiscardHandler)}
	ps, err := OpenPlugins(files.Driver{}, []plugin.Driver{files.Driver{}}, func(string) plugin.Config { return cfg }, env)
	if err != nil {
		t.Fatal(err)
	}
	n.w = NewLocalWorker(Config{NodeID: "n1", DataDir: n.data, Repository: "file://" + filepath.Join(base, "repo"),
		UploadConcurrency: 2, DownloadConcurrency: 2}, ps, repo, fence, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { n.w.Close() })
	return n
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// backup runs the node's steps of a backup and commits its manifest.
func (n *filesNode) backup(t *testing.T, opID, backupID string) {
	t.Helper()
	ctx := context.Background()
	ref := wire.StepRef{OpID: opID, Epoch: 1, Step: 1}
	snap, err := n.w.Snapshot(ctx, ref, wire.SnapshotOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := n.w.Snapshot(ctx, ref, wire.SnapshotOptions{}, nil); err != nil || again.Files != snap.Files {
		t.Fatalf("a repeated snapshot: %+v %v, want %+v", again, err, snap)
	}
	chunks, err := n.w.Chunks(ctx, ref, wire.ChunksQuery{})
	if err != nil || chunks.Count != 4 {
		t.Fatalf("chunks %+v %v, want the 4 files' contents", chunks, err)
	}
	up, err := n.w.Upload(ctx, ref, nil, nil)
	if err != nil || up.Uploaded != 4 {
		t.Fatalf("upload %+v %v", up, err)
	}
	m := &storage.Manifest{FormatVersion: storage.ManifestFormatVersion, BackupID: backupID, OperationID: opID, Plugin: files.Name,
		StartedAt: time.Unix(1, 0), FinishedAt: time.Unix(2, 0),
		Nodes: []storage.NodeManifest{{NodeID: "n1", Entries: up.Entries, Tree: up.Tree, Stats: storage.NodeStats{Files: snap.Files}}}}
	if err := n.repo.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := n.w.Release(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.w.snapshotDir(opID)); !os.IsNotExist(err) {
		t.Fatalf("the snapshot dir outlived its release (%v)", err)
	}
}

func (n *filesNode) restore(input, target string) (wire.RestoreResult, error) {
	req := wire.RestoreRequest{BackupID: "20261204T000000.000000Z-000001", Target: target}
	if input != "" {
		req.Plugin = json.RawMessage(input)
	}
	return n.w.Restore(context.Background(), wire.StepRef{OpID: "r", Epoch: 1, Step: 1}, req, nil)
}

// TestLocalWorkerFilesRoundTrip: snapshot, upload, restore into a target
// (additive), into the root with a selection (a mirror of the selected
// part only), and the refusals: an unsafe target, a stale epoch.
func TestLocalWorkerFilesRoundTrip(t *testing.T) {
	n := newFilesNode(t)
	n.backup(t, "b", "20261204T000000.000000Z-000001")

	target := filepath.Join(t.TempDir(), "t")
	write(t, filepath.Join(target, "mine.txt"), "not in the backup")
	res, err := n.restore(``, target)
	if err != nil || res.Files != 4 || res.Downloaded != 4 || res.Removed != 0 {
		t.Fatalf("restore into a target: %+v %v", res, err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "mine.txt")); string(b) != "not in the backup" {
		t.Error("an additive restore touched a file the backup lacks")
	}
	res, err = n.restore(`{"delete":true}`, target)
	if err != nil || res.Removed != 1 || res.Kept != 4 {
		t.Fatalf("restore into a target with delete: %+v %v", res, err)
	}

	// The root, changed inside and outside the selection.
	write(t, filepath.Join(n.root, "etc/app.conf"), "port=2")
	write(t, filepath.Join(n.root, "etc/new.conf"), "new")
	write(t, filepath.Join(n.root, "top.txt"), "changed")
	if _, err := n.restore(`{"select":["etc"]}`, ""); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"etc/app.conf": "port=1", "top.txt": "changed", "etc/db/x.db": "rows"} {
		if b, _ := os.ReadFile(filepath.Join(n.root, p)); string(b) != want {
			t.Errorf("%s = %q, want %q", p, b, want)
		}
	}
	if _, err := os.Stat(filepath.Join(n.root, "etc/new.conf")); !os.IsNotExist(err) {
		t.Error("a file the backup lacks survived a mirror of its directory")
	}

	for _, bad := range []string{n.data, filepath.Join(n.data, "x"), "/etc/crayfish-test"} {
		if _, err := n.restore(``, bad); !wire.IsPermanent(err) || !errors.Is(err, wire.ErrUnsafeTarget) {
			t.Errorf("target %s: %v, want a permanent ErrUnsafeTarget", bad, err)
		}
	}
	if _, err := n.restore(`{"select":7}`, ""); !wire.IsPermanent(err) {
		t.Errorf("a malformed plugin input: %v, want permanent", err)
	}
	if _, err := n.w.Restore(context.Background(), wire.StepRef{OpID: "r", Epoch: 1}, wire.RestoreRequest{BackupID: "20261204T000000.000000Z-000009"}, nil); !errors.Is(err, storage.ErrNotFound) || !wire.IsPermanent(err) {
		t.Errorf("an unknown backup: %v, want a permanent not found", err)
	}
	// A newer coordinator was admitted: the old one's calls are refused.
	if _, err := n.w.Snapshot(context.Background(), wire.StepRef{OpID: "x", Epoch: 5}, wire.SnapshotOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := n.restore(``, target); !errors.Is(err, wire.ErrStaleEpoch) {
		t.Errorf("a stale epoch: %v", err)
	}
}

// TestLocalWorkerRefusesAnotherDatabase: a backup of a plugin this node
// does not run (and that is not portable) is refused before anything is
// downloaded.
func TestLocalWorkerRefusesAnotherDatabase(t *testing.T) {
	n := newFilesNode(t)
	ctx := context.Background()
	m := &storage.Manifest{FormatVersion: storage.ManifestFormatVersion, BackupID: "20261204T000000.000000Z-000002", OperationID: "o",
		Plugin: "cassandra", StartedAt: time.Unix(1, 0), FinishedAt: time.Unix(2, 0)}
	if err := n.repo.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	_, err := n.w.Restore(ctx, wire.StepRef{OpID: "r", Epoch: 1}, wire.RestoreRequest{BackupID: m.BackupID, Plugin: json.RawMessage(`{"action":"reset"}`)}, nil)
	if !wire.IsPermanent(err) || !strings.Contains(err.Error(), "cassandra") {
		t.Fatalf("a cassandra backup on a files node: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(n.data, "restore")); len(entries) != 0 {
		t.Errorf("staged %v for a refused restore", entries)
	}
}
