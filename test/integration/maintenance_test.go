package integration

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

func (a *agent) listBackups() []string {
	a.t.Helper()
	res := a.cli("list", "--all", "--output", "json")
	if res.code != 0 {
		a.t.Fatalf("list: %s", res.stderr)
	}
	var l api.BackupList
	if err := json.Unmarshal([]byte(res.stdout), &l); err != nil {
		a.t.Fatal(err)
	}
	var ids []string
	for _, b := range l.Backups {
		ids = append(ids, b.BackupID)
	}
	return ids
}

// offline runs a direct-repository command (no agent) against a's repository.
func (a *agent) offline(args ...string) cliResult {
	a.t.Helper()
	cmd := exec.Command(binary, append(args, "--repository", a.repo, "--key-file", a.keyFile)...)
	out, err := cmd.Output()
	res := cliResult{stdout: string(out)}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code, res.stderr = ee.ExitCode(), string(ee.Stderr)
	} else if err != nil {
		a.t.Fatal(err)
	}
	return res
}

func repoBytes(t *testing.T, url string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(strings.TrimPrefix(url, "file://"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// TestCleanupGCVerify: a retention policy previewed, then applied; space
// comes back; the kept backups still restore; verify passes, and after a
// byte is flipped in a pack verify (agent and offline) names the damage.
func TestCleanupGCVerify(t *testing.T) {
	a := newAgent(t, agentOpts{})
	trees := map[string]map[string]entryDesc{}
	var order []string
	for i := range 4 {
		// Each backup carries 3 MiB of content of its own.
		writeFile(t, filepath.Join(a.root, "gen.bin"), randomBytes(newRand(uint64(i)), 3<<20), 0o644)
		writeFile(t, filepath.Join(a.root, "keep", "shared.txt"), []byte("shared by all"), 0o644)
		op := a.backupWait()
		trees[op.BackupID] = describeTree(t, a.root)
		order = append(order, op.BackupID)
	}

	res := a.cli("cleanup", "--keep-last", "2", "--dry-run", "--output", "json")
	if res.code != 0 {
		t.Fatalf("cleanup --dry-run: %s", res.stderr)
	}
	var prev api.CleanupPreview
	if err := json.Unmarshal([]byte(res.stdout), &prev); err != nil {
		t.Fatal(err)
	}
	if len(prev.Decisions) != 4 || !prev.Decisions[0].Keep || !prev.Decisions[1].Keep || prev.Decisions[2].Keep || prev.Decisions[3].Keep {
		t.Fatalf("preview: %+v", prev.Decisions)
	}
	if got := a.listBackups(); len(got) != 4 {
		t.Fatalf("dry run deleted something: %v", got)
	}
	if res := a.cli("cleanup", "--wait"); res.code == 0 || !strings.Contains(res.stderr, "keeps nothing") {
		t.Fatalf("cleanup without any policy must refuse: %d %s", res.code, res.stderr)
	}

	before := repoBytes(t, a.repo)
	res = a.cli("cleanup", "--keep-last", "2", "--wait", "--output", "json")
	if res.code != 0 {
		t.Fatalf("cleanup: %s\n%s", res.stderr, tail(a.logs(), 2000))
	}
	var op fsm.Operation
	json.Unmarshal([]byte(res.stdout), &op)
	var forget struct{ Deleted []string }
	stepResult(t, &op, "forget", &forget)
	if fmt.Sprint(forget.Deleted) != fmt.Sprint([]string{order[1], order[0]}) && fmt.Sprint(forget.Deleted) != fmt.Sprint([]string{order[0], order[1]}) {
		t.Fatalf("forget deleted %v, want the two oldest %v", forget.Deleted, order[:2])
	}
	after := repoBytes(t, a.repo)
	if after > before-5<<20 {
		t.Fatalf("gc freed too little: %d → %d bytes (two backups of 3 MiB unique data were deleted)", before, after)
	}
	if got := a.listBackups(); fmt.Sprint(got) != fmt.Sprint([]string{order[3], order[2]}) {
		t.Fatalf("after cleanup: %v", got)
	}
	for _, id := range order[2:] {
		target := filepath.Join(t.TempDir(), "r")
		if res := a.cli("restore", id, "--target", target, "--wait"); res.code != 0 {
			t.Fatalf("restore %s after gc: %s", id, res.stderr)
		}
		compareTrees(t, trees[id], describeTree(t, target))
	}
	if res := a.cli("verify", "--read-data", "--wait"); res.code != 0 {
		t.Fatalf("verify of a healthy repository: %s", res.stderr)
	}

	// Damage one data pack.
	var packs []string
	filepath.WalkDir(filepath.Join(strings.TrimPrefix(a.repo, "file://"), "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			packs = append(packs, p)
		}
		return nil
	})
	if len(packs) == 0 {
		t.Fatal("no data packs")
	}
	b, _ := os.ReadFile(packs[0])
	b[len(b)/3] ^= 0x40
	os.WriteFile(packs[0], b, 0o644)

	res = a.cli("verify", "--read-data", "--wait")
	if res.code == 0 || !strings.Contains(res.stderr, "problems found") {
		t.Fatalf("agent verify missed a flipped byte: %d %s", res.code, res.stderr)
	}
	a.stop()
	res = a.offline("verify", "--read-data")
	if res.code == 0 || !strings.Contains(res.stdout, filepath.Base(packs[0])) {
		t.Fatalf("offline verify: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, order[2]) && !strings.Contains(res.stdout, order[3]) {
		t.Fatalf("offline verify does not name the broken backups:\n%s", res.stdout)
	}
}

// TestKeysAndWrongPassword: keys rotate without rewriting data; a wrong
// secret is a clear error and changes nothing.
func TestKeysAndWrongPassword(t *testing.T) {
	a := newAgent(t, agentOpts{})
	writeFile(t, filepath.Join(a.root, "f"), []byte("secret data"), 0o644)
	want := describeTree(t, a.root)
	a.backupWait()
	a.stop()

	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("a new passphrase\n"), 0o600)
	if res := a.offline("key", "add", "--new-password-file", pw, "--label", "ops"); res.code != 0 {
		t.Fatalf("key add: %s", res.stderr)
	}
	res := exec.Command(binary, "key", "list", "--repository", a.repo, "--password-file", pw, "--output", "json")
	out, err := res.Output()
	if err != nil {
		t.Fatalf("key list with the new password: %v", err)
	}
	var keys []struct {
		ID      string
		Current bool
	}
	json.Unmarshal(out, &keys)
	if len(keys) != 2 {
		t.Fatalf("keys: %s", out)
	}
	var original string
	for _, k := range keys {
		if !k.Current {
			original = k.ID
		}
	}
	// Remove the key-file key using the password; the key file stops working.
	if out, err := exec.Command(binary, "key", "remove", original, "--repository", a.repo, "--password-file", pw).CombinedOutput(); err != nil {
		t.Fatalf("key remove: %v %s", err, out)
	}
	before := repoBytes(t, a.repo)
	r := a.offline("verify")
	if r.code == 0 || !strings.Contains(r.stderr, "wrong password") {
		t.Fatalf("removed key file still opens the repository: %d %s", r.code, r.stderr)
	}
	if repoBytes(t, a.repo) != before {
		t.Fatal("a failed open wrote to the repository")
	}
	// The agent, with the password, restores everything.
	b := newAgent(t, agentOpts{repo: a.repo, extra: []string{"--password-file", pw}})
	target := filepath.Join(t.TempDir(), "r")
	if res := b.cli("restore", "--target", target, "--wait"); res.code != 0 {
		t.Fatalf("restore with the new password: %s", res.stderr)
	}
	compareTrees(t, want, describeTree(t, target))
}

// TestGCRacesBackups runs offline garbage collections in a loop while the
// agent backs up a changing tree and deletes old backups; afterwards every
// remaining backup restores exactly and the repository verifies.
func TestGCRacesBackups(t *testing.T) {
	a := newAgent(t, agentOpts{})
	trees := map[string]map[string]entryDesc{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var gcRuns, gcLocked int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			res := a.offline("gc")
			switch {
			case res.code == 0:
				gcRuns++
			case strings.Contains(res.stderr, "locked"):
				gcLocked++
				time.Sleep(20 * time.Millisecond)
			default:
				t.Errorf("offline gc failed: %s", res.stderr)
				return
			}
		}
	}()
	var ids []string
	for i := range 8 {
		writeFile(t, filepath.Join(a.root, fmt.Sprintf("f%d", i%3)), randomBytes(newRand(uint64(100+i)), 1<<20), 0o644)
		writeFile(t, filepath.Join(a.root, "stable"), []byte("unchanged"), 0o644)
		want := describeTree(t, a.root)
		res := a.cli("backup", "--wait", "--output", "json")
		if res.code != 0 {
			// A backup may lose its lock race against gc: that is a clean
			// failure, and the next one goes on.
			if !strings.Contains(res.stderr, "locked") {
				t.Fatalf("backup %d: %s", i, res.stderr)
			}
			continue
		}
		var op fsm.Operation
		json.Unmarshal([]byte(res.stdout), &op)
		trees[op.BackupID] = want
		ids = append(ids, op.BackupID)
		if len(ids) > 3 {
			if res := a.cli("delete", ids[0], "--wait"); res.code != 0 {
				t.Fatalf("delete: %s", res.stderr)
			}
			delete(trees, ids[0])
			ids = ids[1:]
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("gc ran %d times, found the repository locked %d times", gcRuns, gcLocked)
	if gcRuns == 0 || len(ids) == 0 {
		t.Fatalf("the race did not happen: %d gc runs, %d backups", gcRuns, len(ids))
	}
	if res := a.offline("gc"); res.code != 0 && !strings.Contains(res.stderr, "locked") {
		t.Fatalf("final gc: %s", res.stderr)
	}
	for _, id := range ids {
		target := filepath.Join(t.TempDir(), "r")
		if res := a.cli("restore", id, "--target", target, "--wait"); res.code != 0 {
			t.Fatalf("restore %s: %s", id, res.stderr)
		}
		compareTrees(t, trees[id], describeTree(t, target))
	}
	a.stop()
	if res := a.offline("verify", "--read-data"); res.code != 0 {
		t.Fatalf("verify after the race: %s\n%s", res.stdout, res.stderr)
	}
}
