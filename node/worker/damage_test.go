package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// recordingPlugin stages every file into the staging dir and remembers
// whether Restore ran.
type recordingPlugin struct{ restored bool }

func (p *recordingPlugin) Snapshot(context.Context, string, string) (plugin.Source, error) {
	return plugin.Source{}, nil
}
func (p *recordingPlugin) Release(context.Context, string) error { return nil }
func (p *recordingPlugin) Stage(plugin.RestoreStep) (plugin.Stage, error) {
	return plugin.Stage{Needed: true}, nil
}
func (p *recordingPlugin) Restore(context.Context, plugin.RestoreStep, string) (json.RawMessage, error) {
	p.restored = true
	return nil, nil
}

// DamagedUnits names data/<ks>/<table>-<id>/ files as ks.table.
func (p *recordingPlugin) DamagedUnits(paths []string) []string {
	var out []string
	for _, f := range paths {
		if parts := strings.Split(f, "/"); len(parts) == 4 && parts[0] == "data" {
			table, _, _ := strings.Cut(parts[2], "-")
			out = append(out, parts[1]+"."+table)
		}
	}
	return out
}

// TestPluginRestoreRefusesDamagedFiles: a plugin restore whose staged
// files include one with a chunk the repository lacks fails for good
// before the plugin runs, naming the file, its chunk and its table, and
// stages every other file.
func TestPluginRestoreRefusesDamagedFiles(t *testing.T) {
	ctx := context.Background()
	repo, err := storage.Init(ctx, "file://"+filepath.Join(t.TempDir(), "repo"), storage.InitOptions{NoEncryption: true})
	if err != nil {
		t.Fatal(err)
	}
	good := map[string][]byte{"cassandra/schema.cql": []byte("CREATE TABLE ks.t1 (k int PRIMARY KEY);"), "data/ks/t1-aaa/nb-1-big-Data.db": []byte("t1 rows")}
	var files []storage.FileEntry
	for p, c := range good {
		id := storage.HashBytes(c)
		if _, err := repo.SaveBlob(ctx, storage.BlobData, id, c); err != nil {
			t.Fatal(err)
		}
		files = append(files, storage.FileEntry{Path: p, Type: storage.TypeFile, Mode: 0o644, MTime: time.Unix(1, 0), Size: int64(len(c)), Content: id, Chunks: []storage.ObjectID{id}})
	}
	lost := []byte("t2 rows never stored")
	lostID := storage.HashBytes(lost)
	files = append(files, storage.FileEntry{Path: "data/ks/t2-bbb/nb-1-big-Data.db", Type: storage.TypeFile, Mode: 0o644, MTime: time.Unix(1, 0),
		Size: int64(len(lost)), Content: lostID, Chunks: []storage.ObjectID{lostID}})
	slices.SortFunc(files, func(a, b storage.FileEntry) int { return strings.Compare(a.Path, b.Path) })
	tree, err := repo.SaveFiles(ctx, files)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m := &storage.Manifest{FormatVersion: storage.ManifestFormatVersion, BackupID: "b1", OperationID: "op-b1", Plugin: "fake",
		StartedAt: time.Unix(1, 0), FinishedAt: time.Unix(2, 0),
		Nodes: []storage.NodeManifest{{NodeID: "n1", Entries: int64(len(files)), Tree: tree}}}
	if err := repo.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}

	cfg := Config{NodeID: "n1", DataDir: t.TempDir()}
	fence, err := OpenFence(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	rp := &recordingPlugin{}
	plugins := NewPluginSet("fake", map[string]plugin.Plugin{"fake": rp})
	w := &LocalWorker{cfg: cfg, nodeID: "n1", repo: repo, fence: fence, plugins: plugins, log: slog.New(slog.DiscardHandler)}
	ref := wire.StepRef{OpID: "op-restore", Epoch: 1}
	res, err := w.Restore(ctx, ref, wire.RestoreRequest{BackupID: "b1", Plugin: json.RawMessage(`{"action":"stage"}`)}, nil)
	if !errors.Is(err, wire.ErrDamaged) || !wire.IsPermanent(err) {
		t.Fatalf("err %v, want a permanent ErrDamaged", err)
	}
	if rp.restored {
		t.Fatal("the plugin ran on a staging dir with a damaged file")
	}
	if !strings.Contains(err.Error(), "ks.t2") || strings.Contains(err.Error(), "ks.t1") {
		t.Errorf("error %q does not name (only) the damaged table ks.t2", err)
	}
	if res.DamagedTotal != 1 || len(res.Damaged) != 1 || res.Damaged[0].Path != "data/ks/t2-bbb/nb-1-big-Data.db" ||
		res.Damaged[0].Chunks[0].ID != lostID || res.Damaged[0].Chunks[0].Problem != wire.DamageMissing {
		t.Errorf("damage %+v", res.Damaged)
	}
	if !slices.Equal(res.DamagedBlobs, []storage.ObjectID{lostID}) || res.DamagedBlobsTotal != 1 {
		t.Errorf("damaged blobs %v (total %d)", res.DamagedBlobs, res.DamagedBlobsTotal)
	}
	for p, c := range good {
		if b, err := os.ReadFile(filepath.Join(w.stagingDir(ref.OpID), p)); err != nil || string(b) != string(c) {
			t.Errorf("staged %s: %q %v", p, b, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(w.stagingDir(ref.OpID), "data/ks/t2-bbb/nb-1-big-Data.db")); !os.IsNotExist(err) {
		t.Errorf("damaged file staged under its name (%v)", err)
	}
}

// The damage a restore step records stays bounded, with true totals.
func TestRecordDamageIsBounded(t *testing.T) {
	var files []tree.DamagedFile
	for i := range 1500 {
		f := tree.DamagedFile{Path: fmt.Sprintf("f%05d", i)}
		for k := range 20 {
			f.Chunks = append(f.Chunks, tree.DamagedChunk{Index: k, ID: storage.HashBytes([]byte(fmt.Sprint(i, k))), Missing: k%2 == 0})
		}
		files = append(files, f)
	}
	var res wire.RestoreResult
	recordDamage(&res, files, func(storage.ObjectID) (storage.ObjectID, bool) { return storage.ObjectID{1}, true })
	if len(res.Damaged) != maxDamagedFiles || res.DamagedTotal != 1500 {
		t.Errorf("%d damaged files listed, total %d", len(res.Damaged), res.DamagedTotal)
	}
	if f := res.Damaged[0]; len(f.Chunks) != maxDamagedFileChunks || f.ChunksTotal != 20 || f.Chunks[0].Pack == "" || f.Chunks[1].Problem != wire.DamageCorrupt {
		t.Errorf("first file %+v", f)
	}
	if len(res.DamagedBlobs) != maxDamagedBlobs || res.DamagedBlobsTotal != 1500*20 {
		t.Errorf("%d damaged blobs listed, total %d", len(res.DamagedBlobs), res.DamagedBlobsTotal)
	}
	if b, _ := json.Marshal(res); len(b) > 4<<20 {
		t.Errorf("result is %d bytes", len(b))
	}
}
