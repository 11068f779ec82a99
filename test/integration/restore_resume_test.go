package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
)

// TestRestoreResumesAfterSIGKILL kills the agent in the middle of a
// restore; the restarted agent finishes the same operation, keeps the files
// already restored instead of downloading them again, and the result is
// exact.
func TestRestoreResumesAfterSIGKILL(t *testing.T) {
	const files = 400 // 1 MiB each
	a := newAgent(t, agentOpts{extra: []string{"--download-concurrency", "2"}})
	r := newRand(42)
	for i := range files {
		writeFile(t, filepath.Join(a.root, fmt.Sprintf("d%d/f%03d", i%4, i)), randomBytes(r, 1<<20), 0o644)
	}
	want := describeTree(t, a.root)
	op := a.backupWait()

	target := filepath.Join(t.TempDir(), "target")
	code, body := a.post("/v1/restores", `{"id":"restore-me","backup_id":"`+op.BackupID+`","target":"`+target+`"}`)
	if code != 202 {
		t.Fatalf("start restore: %d %v", code, body)
	}
	restored := func() int {
		n := 0
		filepath.WalkDir(target, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.Contains(filepath.Base(p), "crayfish-tmp") {
				n++
			}
			return nil
		})
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for restored() < files/10 {
		if time.Now().After(deadline) {
			t.Fatalf("restore did not progress:\n%s", a.logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.kill()
	done := restored()
	if done >= files {
		t.Fatalf("the restore finished before the kill (%d files); nothing to resume", done)
	}
	t.Logf("killed with %d of %d files restored", done, files)

	a.start()
	fin := a.waitOp("restore-me", 2*time.Minute)
	if fin.State != fsm.OpSucceeded {
		t.Fatalf("resumed restore %s: %s", fin.State, fin.Error)
	}
	var rr restoreResult
	step := stepResult(t, fin, "restore", &rr)
	if step.Attempts != 2 {
		t.Fatalf("restore step attempts %d, want 2", step.Attempts)
	}
	if rr.Kept < int64(done) || rr.Downloaded > int64(files-done) {
		t.Fatalf("resumed restore kept %d and downloaded %d; %d files were already in place", rr.Kept, rr.Downloaded, done)
	}
	compareTrees(t, want, describeTree(t, target))
}
