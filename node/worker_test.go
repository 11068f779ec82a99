package node

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSweepSnapshots(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	w := &LocalWorker{cfg: cfg, log: slog.New(slog.DiscardHandler)}
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

// TestRestoreWithoutRootRefused: a cassandra node has no root; a files
// restore without a target must not fall back to the working directory.
func TestRestoreWithoutRootRefused(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Plugin = t.TempDir(), "cassandra"
	fence, err := OpenFence(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	w := &LocalWorker{cfg: cfg, nodeID: "n1", fence: fence, log: slog.New(slog.DiscardHandler)}
	_, err = w.Restore(context.Background(), StepRef{OpID: "op", Epoch: 1}, RestoreRequest{BackupID: "b", Clear: true}, nil)
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "no root") {
		t.Fatalf("restore without root: %v", err)
	}
}
