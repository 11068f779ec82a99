package worker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/plugin"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// shippingPlugin is the files plugin with closed logs under dir/logs.
type shippingPlugin struct {
	plugin.Plugin
	root      string
	recordErr error
	off       bool // no log kept as configured
}

func (p *shippingPlugin) ClosedLogs(context.Context) (plugin.Logs, error) {
	if p.off {
		return plugin.Logs{}, nil
	}
	es, err := os.ReadDir(filepath.Join(p.root, "logs"))
	if err != nil {
		return plugin.Logs{}, err
	}
	logs := plugin.Logs{Root: p.root}
	for _, e := range es {
		info, _ := e.Info()
		logs.Files = append(logs.Files, plugin.LogFile{Path: "logs/" + e.Name(), ClosedAt: info.ModTime(), Size: info.Size()})
	}
	return logs, nil
}

func (p *shippingPlugin) LogRecord(_ context.Context, files []plugin.LogFile) (json.RawMessage, error) {
	if p.recordErr != nil {
		return nil, p.recordErr
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Path)
	}
	return json.Marshal(map[string]any{"files": names})
}

func TestShipLogs(t *testing.T) {
	ctx := context.Background()
	n := newFilesNode(t)
	logDir := t.TempDir()
	sp := &shippingPlugin{Plugin: n.w.plugins.Own(), root: logDir}
	n.w.plugins = NewPluginSet("files", map[string]plugin.Plugin{"files": sp})
	closed := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	addLog := func(name, content string, at time.Time) {
		write(t, filepath.Join(logDir, "logs", name), content)
		if err := os.Chtimes(filepath.Join(logDir, "logs", name), at, at); err != nil {
			t.Fatal(err)
		}
	}
	// Shipping off in the plugin's configuration: nothing shipped, and
	// the metrics say it is off.
	sp.off = true
	if a, err := n.w.ShipLogs(ctx); a != nil || err != nil || n.w.LogShipStatus().Enabled {
		t.Fatalf("with the plugin's log off: %v %v %+v", a, err, n.w.LogShipStatus())
	}
	sp.off = false
	addLog("seg-1", "first segment", closed)
	addLog("seg-2", "second segment", closed.Add(time.Minute))
	write(t, filepath.Join(logDir, "other", "not-a-log"), "x")

	// A round whose record fails ships nothing and says how long the
	// oldest file has waited.
	sp.recordErr = errors.New("database down")
	if _, err := n.w.ShipLogs(ctx); err == nil {
		t.Fatal("a round whose record failed succeeded")
	}
	if st := n.w.LogShipStatus(); !st.Enabled || st.Failures != 1 || !st.OldestPending.Equal(closed) || st.Archives != 0 {
		t.Fatalf("status after a failed round %+v", st)
	}
	sp.recordErr = nil

	a, err := n.w.ShipLogs(ctx)
	if err != nil || a == nil {
		t.Fatalf("ship: %v %v", a, err)
	}
	if !a.From.Equal(closed) || !a.To.Equal(closed.Add(time.Minute)) || a.Node.NodeID != "n1" || a.Plugin != "files" {
		t.Fatalf("archive %+v", a)
	}
	got, err := n.repo.GetLogArchive(ctx, a.ID)
	if err != nil || !strings.Contains(string(got.Node.Plugin), "logs/seg-2") {
		t.Fatalf("stored archive %+v %v", got, err)
	}
	files, err := n.repo.LoadFiles(ctx, &got.Node)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		if f.Type == storage.TypeFile {
			paths = append(paths, f.Path)
		}
	}
	if strings.Join(paths, ",") != "logs/seg-1,logs/seg-2" {
		t.Fatalf("archived files %v", paths)
	}
	if st := n.w.LogShipStatus(); !st.OldestPending.IsZero() || st.Files != 2 || st.Archives != 1 || st.LastSuccess.IsZero() {
		t.Fatalf("status after shipping %+v", st)
	}

	// Nothing new: no archive. A new file: an archive of it alone.
	if again, err := n.w.ShipLogs(ctx); err != nil || again != nil {
		t.Fatalf("a round with nothing new: %v %v", again, err)
	}
	addLog("seg-3", "third segment", closed.Add(2*time.Minute))
	a3, err := n.w.ShipLogs(ctx)
	if err != nil || a3 == nil || a3.Node.Stats.Files != 1 || !a3.From.Equal(closed.Add(2*time.Minute)) {
		t.Fatalf("third: %+v %v", a3, err)
	}
	if ids, _ := n.repo.ListLogArchiveIDs(ctx); len(ids) != 2 {
		t.Fatalf("log archives %v", ids)
	}
	if io := n.w.IOStats(); io.BytesUploaded != int64(len("first segment")+len("second segment")+len("third segment")) {
		t.Fatalf("uploaded bytes %+v", io)
	}

	// A restore step downloads from a log archive as from a backup.
	dest := t.TempDir()
	res, err := n.w.Restore(ctx, wire.StepRef{OpID: "r1", Epoch: 1, Step: 1},
		wire.RestoreRequest{LogArchive: a.ID, SourceNode: "n1", Target: dest}, nil)
	if err != nil {
		t.Fatalf("restore from a log archive: %+v %v", res, err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "logs", "seg-2")); err != nil || string(b) != "second segment" {
		t.Fatalf("restored seg-2: %q %v", b, err)
	}
	if io := n.w.IOStats(); io.BytesDownloaded != int64(len("first segment")+len("second segment")) {
		t.Fatalf("downloaded bytes %+v", io)
	}
}
