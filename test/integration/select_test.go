package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRestoreSelection: --select restores a single file or a subdirectory
// of a files backup, into a target or into the root; a restore into the
// root with a selection mirrors only the selected part and leaves every
// other path alone, even paths the backup lacks; a pattern that matches
// nothing, an empty one, and an empty selection are refused before
// anything starts.
func TestRestoreSelection(t *testing.T) {
	a := newAgent(t, agentOpts{})
	makeTree(t, a.root, 20, 64<<10)
	op := a.backupWait()
	before := restoreOpCount(t, a)

	// One file into a target: only it (and its directory) is written.
	target := filepath.Join(t.TempDir(), "one")
	res := a.cli("restore", op.BackupID, "--target", target, "--select", "scripts/run.sh", "--wait")
	if res.code != 0 {
		t.Fatalf("restore one file: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	got := describeTree(t, target)
	if len(got) != 2 || got["scripts/run.sh"].kind != "file" {
		t.Fatalf("a one-file restore wrote %v", keysOf(got))
	}
	if b, err := os.ReadFile(filepath.Join(target, "scripts", "run.sh")); err != nil || string(b) != "#!/bin/sh\necho hi\n" {
		t.Fatalf("restored file %q %v", b, err)
	}

	// A subdirectory into the root, after damage inside and outside it.
	want := describeTree(t, a.root)
	writeFile(t, filepath.Join(a.root, "small", "d01", "f00001.dat"), []byte("damaged"), 0o644)
	writeFile(t, filepath.Join(a.root, "small", "d01", "new-inside.txt"), []byte("not in the backup"), 0o644)
	writeFile(t, filepath.Join(a.root, "scripts", "run.sh"), []byte("changed outside the selection"), 0o755)
	writeFile(t, filepath.Join(a.root, "keep-me.txt"), []byte("outside the selection"), 0o644)
	res = a.cli("restore", op.BackupID, "--select", "small/d01", "--wait")
	if res.code != 0 {
		t.Fatalf("restore a subdirectory: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	now := describeTree(t, a.root)
	for p, e := range want {
		if strings.HasPrefix(p, "small/d01") && now[p] != e {
			t.Errorf("%s not restored: %+v, want %+v", p, now[p], e)
		}
	}
	if _, ok := now["small/d01/new-inside.txt"]; ok {
		t.Error("a file the backup lacks inside the selection was kept by a mirror restore")
	}
	if b, _ := os.ReadFile(filepath.Join(a.root, "scripts", "run.sh")); string(b) != "changed outside the selection" {
		t.Errorf("a file outside the selection was overwritten: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(a.root, "keep-me.txt")); string(b) != "outside the selection" {
		t.Errorf("a file outside the selection and the backup was touched: %q", b)
	}

	// Refusals: nothing starts.
	started := restoreOpCount(t, a)
	if started != before+2 {
		t.Fatalf("%d restores started, want 2", started-before)
	}
	for _, args := range [][]string{
		{"--select", "small/d01,nothing/here*"},
		{"--select", "/etc/passwd"},
	} {
		res := a.cli(append([]string{"restore", op.BackupID}, args...)...)
		if res.code == 0 || !strings.Contains(res.stderr, strings.Split(strings.TrimPrefix(args[1], "small/d01,"), ",")[0]) {
			t.Errorf("restore %v: exit %d, stderr %q; want a refusal naming the pattern", args, res.code, res.stderr)
		}
	}
	for _, body := range []string{
		`{"backup_id":"` + op.BackupID + `","select":[]}`,
		`{"backup_id":"` + op.BackupID + `","select":[" "]}`,
		`{"backup_id":"` + op.BackupID + `","select":["a"],"tables":["b"]}`,
	} {
		if code, _ := a.post("/v1/restores", body); code != 400 {
			t.Errorf("POST %s: %d, want 400", body, code)
		}
	}
	if res := a.cli("restore", op.BackupID, "--select", ""); res.code != 2 {
		t.Errorf("an empty --select: exit %d, want 2 (usage)", res.code)
	}
	if n := restoreOpCount(t, a); n != started {
		t.Errorf("a refused restore started an operation (%d, want %d)", n, started)
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
