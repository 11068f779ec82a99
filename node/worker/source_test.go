package worker

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// subPlugin stages every file into the subdirectory its input names and
// records the directory its Restore got.
type subPlugin struct{ got *string }

func (subPlugin) Snapshot(context.Context, string, string) (plugin.Source, error) {
	return plugin.Source{}, nil
}
func (subPlugin) Release(context.Context, string) error { return nil }
func (subPlugin) Stage(step plugin.RestoreStep) (plugin.Stage, error) {
	var in struct{ Sub string }
	err := json.Unmarshal(step.Input, &in)
	return plugin.Stage{Needed: true, Sub: in.Sub}, err
}
func (s subPlugin) Restore(_ context.Context, _ plugin.RestoreStep, dir string) (json.RawMessage, error) {
	*s.got = dir
	return nil, nil
}

// TestRestoreAnotherSourceIntoSub: a restore step with another source
// node (a restore onto another number of nodes) downloads that node's
// tree, into the stage's subdirectory of the staging dir; the plugin
// still gets the staging dir. A subdirectory leaving it is refused.
func TestRestoreAnotherSourceIntoSub(t *testing.T) {
	n := newFilesNode(t)
	n.backup(t, "b1", "20261204T000000.000000Z-000001")
	first, err := n.repo.GetManifest(context.Background(), "20261204T000000.000000Z-000001")
	if err != nil {
		t.Fatal(err)
	}
	// The second backed-up node's tree: the root with every file changed
	// (the backup helper wants four new chunks).
	for p, c := range map[string]string{"etc/app.conf": "port=2", "etc/db/x.db": "rows2", "var/log/a.log": "log2", "top.txt": "old2's"} {
		write(t, filepath.Join(n.root, p), c)
	}
	n.backup(t, "b2", "20261204T000000.000000Z-000002")
	second, err := n.repo.GetManifest(context.Background(), "20261204T000000.000000Z-000002")
	if err != nil {
		t.Fatal(err)
	}
	old2 := second.Nodes[0]
	old2.NodeID = "old2"
	m := &storage.Manifest{FormatVersion: storage.ManifestFormatVersion, BackupID: "20261204T000000.000000Z-000003", OperationID: "o3",
		Plugin: "sub", StartedAt: time.Unix(1, 0), FinishedAt: time.Unix(2, 0),
		Nodes: []storage.NodeManifest{first.Nodes[0], old2}}
	if err := n.repo.PutManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	var got string
	n.w.plugins = NewPluginSet("files", map[string]plugin.Plugin{"files": n.w.plugins.Own(), "sub": subPlugin{&got}})
	restore := func(source, sub string) (wire.RestoreResult, error) {
		in, _ := json.Marshal(map[string]string{"Sub": sub})
		return n.w.Restore(context.Background(), wire.StepRef{OpID: "r", Epoch: 1, Step: 1},
			wire.RestoreRequest{BackupID: m.BackupID, SourceNode: source, Plugin: in}, nil)
	}
	res, err := restore("old2", "sources/old2")
	if err != nil || res.SourceNode != "old2" || res.Files != 4 {
		t.Fatalf("restore of old2's files: %+v %v", res, err)
	}
	staging := n.w.stagingDir("r")
	if got != staging {
		t.Errorf("the plugin got %s, want the staging dir %s", got, staging)
	}
	if b, _ := os.ReadFile(filepath.Join(staging, "sources", "old2", "top.txt")); string(b) != "old2's" {
		t.Errorf("sources/old2/top.txt = %q, want old2's tree", b)
	}
	if _, err := restore("n1", "sources/n1"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(staging, "sources", "n1", "top.txt")); string(b) != "top" {
		t.Errorf("sources/n1/top.txt = %q, want n1's tree", b)
	}
	if b, _ := os.ReadFile(filepath.Join(staging, "sources", "old2", "top.txt")); string(b) != "old2's" {
		t.Errorf("staging n1's files changed old2's: %q", b)
	}
	for _, bad := range []string{"../x", "/abs"} {
		if _, err := restore("old2", bad); !wire.IsPermanent(err) {
			t.Errorf("sub %q: %v, want a permanent refusal", bad, err)
		}
	}
	if _, err := restore("nobody", ""); !wire.IsPermanent(err) {
		t.Errorf("a source the backup lacks: %v, want a permanent refusal", err)
	}
}
