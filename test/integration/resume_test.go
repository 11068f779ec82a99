package integration

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
)

// TestResumeAfterSIGKILL kills the agent while a throttled backup uploads,
// restarts it on the same data dir, and checks that the same operation
// finishes, the snapshot step is not redone and objects already in the
// repository are not uploaded again.
func TestResumeAfterSIGKILL(t *testing.T) {
	const files = 40
	a := newAgent(t, agentOpts{extra: []string{"--upload-bytes-per-second", fmt.Sprint(4 << 20), "--upload-concurrency", "2"}})
	r := rand.New(rand.NewPCG(3, 4))
	for i := range files {
		writeFile(t, filepath.Join(a.root, fmt.Sprintf("sstable-%02d.db", i)), randomBytes(r, 1<<20), 0o644)
	}
	want := describeTree(t, a.root)

	code, body := a.post("/v1/backups", `{"id":"resume-me"}`)
	if code != 202 || body["id"] != "resume-me" {
		t.Fatalf("start backup: %d %v", code, body)
	}
	// Wait until some, not all, objects are in the repository.
	deadline := time.Now().Add(60 * time.Second)
	for countObjects(t, a.repo) < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("upload did not progress:\n%s", a.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.kill()
	present := countObjects(t, a.repo)
	if present >= files {
		t.Fatalf("all %d objects were uploaded before the kill; throttle too weak", present)
	}
	t.Logf("killed with %d of %d objects uploaded", present, files)

	a.start()
	op := a.waitOp("resume-me", 2*time.Minute)
	if op.State != fsm.OpSucceeded {
		t.Fatalf("resumed op %s: %s", op.State, op.Error)
	}
	snap := stepResult(t, op, "snapshot", nil)
	if snap.Attempts != 1 {
		t.Fatalf("snapshot step ran %d times; a finished step must not be redone", snap.Attempts)
	}
	var up uploadResult
	upStep := stepResult(t, op, "upload", &up)
	if upStep.Attempts != 2 {
		t.Fatalf("upload step attempts %d, want 2 (interrupted, resumed)", upStep.Attempts)
	}
	if up.AlreadyPresent != int64(present) || up.Uploaded != int64(files-present) {
		t.Fatalf("resumed upload: %+v; %d objects were already in the repository", up, present)
	}
	if n := countObjects(t, a.repo); n != files {
		t.Fatalf("repository holds %d objects, want %d", n, files)
	}
	if op.Epoch <= snap.Epoch {
		t.Fatalf("resumed op epoch %d not above the first coordinator's %d", op.Epoch, snap.Epoch)
	}

	target := filepath.Join(t.TempDir(), "restored")
	if res := a.cli("restore", op.BackupID, "--target", target, "--wait"); res.code != 0 {
		t.Fatalf("restore: %s", res.stderr)
	}
	compareTrees(t, want, describeTree(t, target))
}
