package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node"
	"github.com/crayfish-backup/crayfish/storage"
)

// indexedChunks opens the repository (the agent is dead) and counts how
// many of ids its index lists.
func indexedChunks(t *testing.T, a *agent, ids []storage.ObjectID) int {
	t.Helper()
	secret, err := node.LoadSecret("", a.keyFile, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	r, err := storage.Open(context.Background(), a.repo, storage.OpenOptions{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	for _, id := range ids {
		if r.HasBlob(id) {
			n++
		}
	}
	return n
}

// TestResumeAfterSIGKILL kills the agent while a throttled backup uploads
// (in its snapshot step, which saves the chunks as it reads them),
// restarts it on the same data dir, and checks that the same operation
// finishes, the interrupted step runs once more and chunks already
// indexed in the repository are not uploaded again.
func TestResumeAfterSIGKILL(t *testing.T) {
	const files = 120 // 1 MiB each: one chunk each, ten 12 MiB packs
	a := newAgent(t, agentOpts{extra: []string{"--upload-bytes-per-second", fmt.Sprint(8 << 20), "--upload-concurrency", "2"}})
	r := rand.New(rand.NewPCG(3, 4))
	var ids []storage.ObjectID
	for i := range files {
		data := randomBytes(r, 1<<20)
		ids = append(ids, sha256.Sum256(data))
		writeFile(t, filepath.Join(a.root, fmt.Sprintf("sstable-%03d.db", i)), data, 0o644)
	}
	want := describeTree(t, a.root)

	code, body := a.post("/v1/backups", `{"id":"resume-me"}`)
	if code != 202 || body["id"] != "resume-me" {
		t.Fatalf("start backup: %d %v", code, body)
	}
	// Wait until an index checkpoint has been written, then kill.
	indexDir := filepath.Join(strings.TrimPrefix(a.repo, "file://"), "index")
	deadline := time.Now().Add(90 * time.Second)
	for {
		entries, _ := os.ReadDir(indexDir)
		// A segment still being written is the file driver's
		// <name>.<nanos>.tmp until its rename: not a checkpoint yet.
		if slices.ContainsFunc(entries, func(e os.DirEntry) bool {
			return !strings.HasSuffix(e.Name(), ".tmp") && !strings.HasSuffix(e.Name(), ".attrs")
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no index checkpoint during upload:\n%s", a.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.kill()
	present := indexedChunks(t, a, ids)
	if present == 0 || present >= files {
		t.Fatalf("%d of %d chunks indexed at the kill; the test needs some, not all", present, files)
	}
	t.Logf("killed with %d of %d chunks indexed", present, files)

	a.start()
	op := a.waitOp("resume-me", 3*time.Minute)
	if op.State != fsm.OpSucceeded {
		t.Fatalf("resumed op %s: %s", op.State, op.Error)
	}
	snap := stepResult(t, op, "snapshot", nil)
	if snap.Attempts != 2 {
		t.Fatalf("snapshot step attempts %d, want 2 (interrupted, resumed)", snap.Attempts)
	}
	var up uploadResult
	upStep := stepResult(t, op, "upload", &up)
	if upStep.Attempts != 1 {
		t.Fatalf("upload step ran %d times; a finished step must not be redone", upStep.Attempts)
	}
	if up.AlreadyPresent != int64(present) || up.Uploaded != int64(files-present) {
		t.Fatalf("resumed upload: %+v; %d chunks were already indexed", up, present)
	}
	// The lock step ran under the first coordinator only.
	if lock := stepResult(t, op, "lock", nil); op.Epoch <= lock.Epoch {
		t.Fatalf("resumed op epoch %d not above the first coordinator's %d", op.Epoch, lock.Epoch)
	}
	if n := indexedChunks(t, a, ids); n != files {
		t.Fatalf("after the backup %d of %d chunks are indexed", n, files)
	}

	target := filepath.Join(t.TempDir(), "restored")
	if res := a.cli("restore", op.BackupID, "--target", target, "--wait"); res.code != 0 {
		t.Fatalf("restore: %s", res.stderr)
	}
	compareTrees(t, want, describeTree(t, target))
}
