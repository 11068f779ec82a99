package worker

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/node/wire"
)

// TestReleaseWaitsForSnapshot: a release that arrives while its
// operation's snapshot still runs (the coordinator stopped waiting when a
// sibling failed) waits for it, then removes what it made.
func TestReleaseWaitsForSnapshot(t *testing.T) {
	n := newFilesNode(t)
	ref := wire.StepRef{OpID: "op-slow", Epoch: 1, Step: 1}
	unlock := n.w.ops.lock(ref.OpID) // the snapshot, still running
	done := make(chan error, 1)
	go func() { done <- n.w.Release(context.Background(), ref) }()
	select {
	case err := <-done:
		t.Fatalf("the release ran during the snapshot (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	write(t, filepath.Join(n.w.snapshotDir(ref.OpID), "tree", "linked.db"), "pinned") // what the snapshot leaves
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.w.snapshotDir(ref.OpID)); !os.IsNotExist(err) {
		t.Fatalf("the snapshot outlived its release (%v)", err)
	}
	if len(n.w.ops.locks) != 0 {
		t.Errorf("gate keeps %d locks after use", len(n.w.ops.locks))
	}
	// Other operations do not wait.
	unlock = n.w.ops.lock("op-a")
	defer unlock()
	if err := n.w.Release(context.Background(), wire.StepRef{OpID: "op-b", Epoch: 1, Step: 2}); err != nil {
		t.Fatal(err)
	}
}
