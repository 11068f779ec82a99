package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/storage"
)

type uploadResult struct {
	Uploaded       int64 `json:"uploaded"`
	UploadedBytes  int64 `json:"uploaded_bytes"`
	AlreadyPresent int64 `json:"already_present"`
}

type restoreResult struct {
	Target     string `json:"target"`
	Downloaded int64  `json:"downloaded"`
	Kept       int64  `json:"kept"`
	Removed    int64  `json:"removed"`
}

// TestBackupModifyRestore backs up a varied tree, backs up again with
// nothing changed, changes the tree, backs up a third time, then restores
// both the first and the latest backup and compares byte for byte, mode
// and mtime.
func TestBackupModifyRestore(t *testing.T) {
	a := newAgent(t, agentOpts{})
	makeTree(t, a.root, 10000, 50<<20)
	want1 := describeTree(t, a.root)

	start := time.Now()
	op1 := a.backupWait()
	t.Logf("MEASURE first backup of %d entries (10,000 small files + 50 MiB): %v", len(want1), time.Since(start).Round(time.Millisecond))
	var up1 uploadResult
	stepResult(t, op1, "upload", &up1)
	if up1.Uploaded == 0 {
		t.Fatalf("first backup uploaded nothing: %+v", up1)
	}

	start = time.Now()
	op2 := a.backupWait()
	t.Logf("MEASURE second backup, nothing changed: %v", time.Since(start).Round(time.Millisecond))
	var up2 uploadResult
	stepResult(t, op2, "upload", &up2)
	if up2.Uploaded != 0 || up2.AlreadyPresent != up1.Uploaded+up1.AlreadyPresent {
		t.Fatalf("unchanged tree re-uploaded: first %+v second %+v", up1, up2)
	}
	if op2.BackupID == op1.BackupID {
		t.Fatalf("two backups share id %s", op1.BackupID)
	}

	// Modify: change content, add, delete, chmod, retouch.
	writeFile(t, filepath.Join(a.root, "names", "a file with spaces ünïcödé 日本.txt"), []byte("changed\n"), 0o600)
	writeFile(t, filepath.Join(a.root, "new", "added.txt"), []byte("new file"), 0o644)
	if err := os.RemoveAll(filepath.Join(a.root, "small", "d07")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(a.root, "empty.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(a.root, "scripts", "run.sh"), 0o700); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := os.Chtimes(filepath.Join(a.root, "big", "fifty.bin"), mt, mt); err != nil {
		t.Fatal(err)
	}
	want3 := describeTree(t, a.root)
	op3 := a.backupWait()
	var up3 uploadResult
	stepResult(t, op3, "upload", &up3)
	if up3.Uploaded != 2 {
		t.Fatalf("third backup uploaded %d objects, want 2 (the changed and the added file)", up3.Uploaded)
	}

	// list shows all three, newest first.
	res := a.cli("list", "--output", "json")
	if res.code != 0 {
		t.Fatalf("list: %s", res.stderr)
	}
	var list api.BackupList
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Backups) != 3 || list.Backups[0].BackupID != op3.BackupID || list.Backups[2].BackupID != op1.BackupID {
		t.Fatalf("list: %+v", list.Backups)
	}
	if list.Backups[2].Stats.Files != int64(countKind(want1, "file")) {
		t.Fatalf("first backup lists %d files, tree had %d", list.Backups[2].Stats.Files, countKind(want1, "file"))
	}

	// describe
	res = a.cli("describe", op1.BackupID, "--output", "json")
	if res.code != 0 {
		t.Fatalf("describe: %s", res.stderr)
	}
	var detail api.BackupDetail
	if err := json.Unmarshal([]byte(res.stdout), &detail); err != nil || detail.Summary.BackupID != op1.BackupID {
		t.Fatalf("describe: %v %+v", err, detail.Summary)
	}

	// Restore the first backup over the modified live tree.
	res = a.cli("restore", op1.BackupID, "--wait", "--output", "json")
	if res.code != 0 {
		t.Fatalf("restore: exit %d %s\n%s", res.code, res.stderr, tail(a.logs(), 3000))
	}
	var rop fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &rop); err != nil || rop.State != fsm.OpSucceeded {
		t.Fatalf("restore op: %v %s", err, res.stdout)
	}
	var rr restoreResult
	stepResult(t, &rop, "restore", &rr)
	if rr.Kept == 0 || rr.Removed == 0 {
		t.Fatalf("restore over a mostly-right tree should keep files and remove extras: %+v", rr)
	}
	compareTrees(t, want1, describeTree(t, a.root))

	// Restore the latest (default) into a separate target.
	target := filepath.Join(t.TempDir(), "inspect")
	res = a.cli("restore", "--target", target, "--wait")
	if res.code != 0 {
		t.Fatalf("restore latest: %s", res.stderr)
	}
	compareTrees(t, want3, describeTree(t, target))

	// The text status of a finished op names its steps.
	res = a.cli("status", op1.ID)
	if res.code != 0 || !strings.Contains(res.stdout, "snapshot") || !strings.Contains(res.stdout, "upload") {
		t.Fatalf("status text: %d %s %s", res.code, res.stdout, res.stderr)
	}
}

func countKind(m map[string]entryDesc, kind string) int {
	n := 0
	for _, e := range m {
		if e.kind == kind {
			n++
		}
	}
	return n
}

// TestDeleteBackup deletes a backup: it disappears from the list, restoring
// it is a 404, and the remaining backup still restores.
func TestDeleteBackup(t *testing.T) {
	a := newAgent(t, agentOpts{})
	makeTree(t, a.root, 50, 1<<20)
	op1 := a.backupWait()
	writeFile(t, filepath.Join(a.root, "later.txt"), []byte("later"), 0o644)
	want2 := describeTree(t, a.root)
	op2 := a.backupWait()

	res := a.cli("delete", op1.BackupID, "--id", "del-1", "--wait")
	if res.code != 0 {
		t.Fatalf("delete: %s", res.stderr)
	}
	// Retrying the same request is idempotent; reusing its id for another is a conflict.
	if code, body := a.post("/v1/deletions", `{"id":"del-1","backup_ids":["`+op1.BackupID+`"]}`); code != 200 || body["state"] != "succeeded" {
		t.Fatalf("retry of del-1: %d %v", code, body)
	}
	if code, body := a.post("/v1/deletions", `{"id":"del-1","backup_ids":["`+op2.BackupID+`"]}`); code != 409 || body["code"] != "conflict" {
		t.Fatalf("reuse of del-1 for another backup: %d %v", code, body)
	}
	res = a.cli("list", "--output", "json")
	var list api.BackupList
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Backups) != 1 || list.Backups[0].BackupID != op2.BackupID {
		t.Fatalf("after delete list is %+v", list.Backups)
	}
	code, body := a.post("/v1/restores", `{"backup_id":"`+op1.BackupID+`"}`)
	if code != 404 || body["code"] != "not_found" {
		t.Fatalf("restore of deleted backup: %d %v", code, body)
	}
	target := filepath.Join(t.TempDir(), "t")
	if res := a.cli("restore", op2.BackupID, "--target", target, "--wait"); res.code != 0 {
		t.Fatalf("restore: %s", res.stderr)
	}
	compareTrees(t, want2, describeTree(t, target))
}

// TestOwners: as root the agent records numeric owners and gives files
// back to them on restore; as anyone else it records none.
func TestOwners(t *testing.T) {
	a := newAgent(t, agentOpts{})
	p := filepath.Join(a.root, "owned.txt")
	writeFile(t, p, []byte("owned"), 0o640)
	root := os.Geteuid() == 0
	if root {
		if err := os.Chown(p, 1234, 2345); err != nil {
			t.Fatal(err)
		}
	}
	op := a.backupWait()
	res := a.cli("describe", op.BackupID, "--files", "--output", "json")
	var d api.BackupDetail
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil {
		t.Fatal(err)
	}
	var e *storage.FileEntry
	for i := range d.Manifest.Nodes[0].Files {
		if d.Manifest.Nodes[0].Files[i].Path == "owned.txt" {
			e = &d.Manifest.Nodes[0].Files[i]
		}
	}
	if e == nil {
		t.Fatal("owned.txt not in the backup")
	}
	if !root {
		if e.UID != nil {
			t.Fatalf("non-root agent recorded owner %d", *e.UID)
		}
		return
	}
	if e.UID == nil || *e.UID != 1234 || e.GID == nil || *e.GID != 2345 {
		t.Fatalf("recorded owner %v:%v, want 1234:2345", e.UID, e.GID)
	}
	target := filepath.Join(t.TempDir(), "r")
	if res := a.cli("restore", "--target", target, "--wait"); res.code != 0 {
		t.Fatalf("restore: %s", res.stderr)
	}
	fi, err := os.Lstat(filepath.Join(target, "owned.txt"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 2345 {
		t.Fatalf("restored owner %d:%d, want 1234:2345", st.Uid, st.Gid)
	}
}

// TestIncludeExcludeConfig: the agent's include/exclude settings (a flag
// taking a comma list) select what a backup takes, read in place, and a
// restore into the root leaves what they do not select alone.
func TestIncludeExcludeConfig(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	writeFile(t, filepath.Join(root, "data", "ks", "t1", "a.db"), []byte("table"), 0o644)
	writeFile(t, filepath.Join(root, "data", "ks", "t1", "a.log"), []byte("log"), 0o644)
	writeFile(t, filepath.Join(root, "data", "tmp", "scratch"), []byte("tmp"), 0o644)
	writeFile(t, filepath.Join(root, "other", "x"), []byte("not included"), 0o644)
	a := newAgent(t, agentOpts{root: root, extra: []string{"--include", "data/**", "--exclude", "**/*.log, data/tmp", "--in-place"}})
	op := a.backupWait()
	res := a.cli("describe", op.BackupID, "--files", "--output", "json")
	var d api.BackupDetail
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range d.Manifest.Nodes[0].Files {
		if f.Type == storage.TypeFile {
			files = append(files, f.Path)
		}
	}
	if len(files) != 1 || files[0] != "data/ks/t1/a.db" {
		t.Fatalf("backup holds files %v, want only data/ks/t1/a.db", files)
	}
	writeFile(t, filepath.Join(root, "data", "ks", "t1", "a.db"), []byte("changed"), 0o644)
	writeFile(t, filepath.Join(root, "data", "ks", "t1", "b.db"), []byte("new"), 0o644)
	if res := a.cli("restore", op.BackupID, "--wait"); res.code != 0 {
		t.Fatalf("restore: %s", res.stderr)
	}
	for p, want := range map[string]string{"data/ks/t1/a.db": "table", "data/ks/t1/a.log": "log", "data/tmp/scratch": "tmp", "other/x": "not included"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
			t.Errorf("%s after restore: %q, %v; want %q", p, b, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "data", "ks", "t1", "b.db")); err == nil {
		t.Error("b.db (selected, not in the backup) survived the restore")
	}
}
