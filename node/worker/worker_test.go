package worker

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

func TestSweepSnapshots(t *testing.T) {
	cfg := Config{DataDir: t.TempDir()}
	w := &LocalWorker{cfg: cfg, log: slog.New(slog.DiscardHandler), plugins: NewPluginSet("fake", map[string]plugin.Plugin{"fake": &recordingPlugin{}})}
	for _, op := range []string{"done-op", "running-op", "unknown-op"} {
		if err := os.MkdirAll(filepath.Join(w.snapshotDir(op), "tree"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(w.stagingDir(op), "data"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	n := w.SweepSnapshots(func(op string) bool { return op == "done-op" })
	if n != 2 {
		t.Fatalf("removed %d, want the snapshot and the staged restore of done-op", n)
	}
	for op, want := range map[string]bool{"done-op": false, "running-op": true, "unknown-op": true} {
		if _, err := os.Stat(w.snapshotDir(op)); (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", op, err == nil, want)
		}
		if _, err := os.Stat(w.stagingDir(op)); (err == nil) != want {
			t.Errorf("staged %s exists=%v, want %v", op, err == nil, want)
		}
	}
}
