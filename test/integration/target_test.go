package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

// restoreOpCount counts the restore operations an agent knows.
func restoreOpCount(t *testing.T, a *agent) int { return opCount(t, a, fsm.KindRestore) }

// opCount counts the operations of kind an agent knows.
func opCount(t *testing.T, a *agent, kind fsm.OpKind) int {
	t.Helper()
	var l api.OperationList
	if code := a.getJSON("/v1/operations?limit=1000", &l); code != 200 {
		t.Fatalf("list operations: HTTP %d", code)
	}
	n := 0
	for _, op := range l.Operations {
		if op.Kind == kind {
			n++
		}
	}
	return n
}

// previewOf runs `restore --dry-run --output json` with args.
func previewOf(t *testing.T, a *agent, args ...string) api.RestorePreview {
	t.Helper()
	res := a.cli(append([]string{"restore", "--dry-run", "--output", "json"}, args...)...)
	if res.code != 0 {
		t.Fatalf("restore --dry-run %v: exit %d\n%s%s", args, res.code, res.stdout, res.stderr)
	}
	var p api.RestorePreview
	if err := json.Unmarshal([]byte(res.stdout), &p); err != nil {
		t.Fatalf("dry-run output: %v\n%s", err, res.stdout)
	}
	return p
}

// TestRestoreTargetSafety: a restore into --target adds and overwrites but
// deletes only with --delete; --dry-run changes nothing and counts right;
// targets that would reach the agent's data dir, its repository, / or a
// system directory are refused before anything is written (no operation
// started, nothing created); empty selections are refused.
func TestRestoreTargetSafety(t *testing.T) {
	a := newAgent(t, agentOpts{})
	makeTree(t, a.root, 40, 1<<20)
	want := describeTree(t, a.root)
	op := a.backupWait()

	// A target holding someone's own file and a stale copy of a backed-up one.
	target := filepath.Join(t.TempDir(), "inspect")
	writeFile(t, filepath.Join(target, "mine", "notes.txt"), []byte("not in the backup"), 0o600)
	writeFile(t, filepath.Join(target, "scripts", "run.sh"), []byte("stale"), 0o755)
	before := describeTree(t, target)

	p := previewOf(t, a, op.BackupID, "--target", target)
	if len(p.Nodes) != 1 {
		t.Fatalf("preview has %d nodes", len(p.Nodes))
	}
	n := p.Nodes[0]
	files := 0
	for _, e := range want {
		if e.kind == "file" {
			files++
		}
	}
	if n.Mode != "additive" || n.Overwrite != 1 || n.Create != int64(files-1) || n.Delete != 0 || !n.Fits || n.FreeBytes == 0 || n.DownloadBytes < 1<<20 {
		t.Fatalf("additive preview %+v (backup has %d files)", n, files)
	}
	p = previewOf(t, a, op.BackupID, "--target", target, "--delete")
	n = p.Nodes[0]
	if n.Mode != "mirror" || n.Delete != 2 || strings.Join(n.DeletePaths, ",") != "mine,mine/notes.txt" {
		t.Fatalf("--delete preview %+v: want mine and mine/notes.txt deleted", n)
	}
	compareTrees(t, before, describeTree(t, target)) // the dry runs changed nothing
	if res := a.cli("restore", op.BackupID, "--dry-run", "--target", target); res.code != 0 || !strings.Contains(res.stdout, "overwrite:  1 files") {
		t.Fatalf("text dry run: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}

	// Additive: the backup's files arrive, the user's file stays.
	if res := a.cli("restore", op.BackupID, "--target", target, "--wait"); res.code != 0 {
		t.Fatalf("restore --target: %s", res.stderr)
	}
	if got := readFileString(t, filepath.Join(target, "mine", "notes.txt")); got != "not in the backup" {
		t.Fatalf("the target's own file was changed: %q", got)
	}
	withMine := describeTree(t, target)
	delete(withMine, "mine")
	delete(withMine, "mine/notes.txt")
	compareTrees(t, want, withMine)
	// --delete mirrors.
	if res := a.cli("restore", op.BackupID, "--target", target, "--delete", "--wait"); res.code != 0 {
		t.Fatalf("restore --target --delete: %s", res.stderr)
	}
	compareTrees(t, want, describeTree(t, target))

	// Misaimed targets: refused with a 400 before any operation starts.
	dataBefore := topNames(t, a.dataDir)
	repoDir := strings.TrimPrefix(a.repo, "file://")
	repoBefore := describeTree(t, repoDir)
	links := t.TempDir()
	toData := filepath.Join(links, "to-data")
	toParent := filepath.Join(links, "to-parent")
	if err := os.Symlink(a.dataDir, toData); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(a.dataDir), toParent); err != nil {
		t.Fatal(err)
	}
	ops := restoreOpCount(t, a)
	for _, c := range []struct{ target, why string }{
		{toData, "is the agent's data dir"},
		{filepath.Join(toData, "sub"), "lies inside the agent's data dir"},
		{toParent, "contains the agent's data dir"},
		{filepath.Join(repoDir, "restored-here"), "lies inside the repository"},
		{filepath.Dir(repoDir), "contains the repository"},
		{"/", "is the filesystem root"},
		{"/etc", "system directory"},
		{"/etc/crayfish-restore-test", "system directory"},
		{"/usr/local/crayfish-restore-test", "system directory"},
	} {
		for _, extra := range [][]string{{"--wait"}, {"--dry-run"}, {"--delete", "--wait"}} {
			res := a.cli(append([]string{"restore", op.BackupID, "--target", c.target}, extra...)...)
			if res.code == 0 || !strings.Contains(res.stderr, c.why) || !strings.Contains(res.stderr, "unsafe restore target") {
				t.Fatalf("restore --target %s %v: exit %d, want a refusal saying %q:\n%s%s", c.target, extra, res.code, c.why, res.stdout, res.stderr)
			}
		}
	}
	if _, err := os.Lstat("/etc/crayfish-restore-test"); err == nil {
		t.Fatal("a refused restore created /etc/crayfish-restore-test")
	}
	if _, err := os.Lstat(filepath.Join(repoDir, "restored-here")); err == nil {
		t.Fatal("a refused restore created a directory in the repository")
	}
	if got := restoreOpCount(t, a); got != ops {
		t.Fatalf("refused restores started %d operations", got-ops)
	}
	compareTrees(t, repoBefore, describeTree(t, repoDir))
	if after := topNames(t, a.dataDir); after != dataBefore {
		t.Fatalf("the data dir changed: %s, was %s", after, dataBefore)
	}

	// Empty selections are refused in the CLI and the API alike.
	for _, args := range [][]string{{"--tables", ""}, {"--tables", "ks.t,,"}, {"--node", ""}, {"--target", ""}} {
		res := a.cli(append([]string{"restore", op.BackupID, "--wait"}, args...)...)
		if res.code != 2 || !strings.Contains(res.stderr, "empty") {
			t.Fatalf("restore %v: exit %d, want a usage error naming the empty value:\n%s", args, res.code, res.stderr)
		}
	}
	for _, body := range []string{`{"tables":[]}`, `{"tables":[""]}`, `{"tables":["ks.t"," "]}`} {
		code, resp := a.post("/v1/restores", body)
		if code != 400 || !strings.Contains(fmt.Sprint(resp["error"]), "empty") {
			t.Fatalf("POST /v1/restores %s: %d %v, want 400", body, code, resp)
		}
	}
	if got := restoreOpCount(t, a); got != ops {
		t.Fatalf("refused requests started %d operations", got-ops)
	}
}

// TestRestoreTargetSeveralNodes: three nodes restoring into one target
// (a shared filesystem) each write into their own directory; {node}
// places it explicitly; a target swapped for a symlink into a node's data
// dir after the leader checked it is refused by the node itself.
func TestRestoreTargetSeveralNodes(t *testing.T) {
	c := startCluster(t, 3, "t", "", "", "--node-timeout", "60s")
	fillRoots(t, c.agents, 256<<10)
	want := map[string]map[string]entryDesc{}
	for _, a := range c.agents {
		want[a.nodeID] = describeTree(t, a.root)
	}
	op := c.follower().backupWait()

	shared := filepath.Join(t.TempDir(), "shared")
	if res := c.follower().cli("restore", op.BackupID, "--target", shared, "--wait"); res.code != 0 {
		t.Fatalf("restore into one target: %s", res.stderr)
	}
	for _, a := range c.agents {
		compareTrees(t, want[a.nodeID], describeTree(t, filepath.Join(shared, a.nodeID)))
	}
	placed := filepath.Join(t.TempDir(), "placed")
	if res := c.leader().cli("restore", op.BackupID, "--target", placed+"/{node}/tree", "--wait"); res.code != 0 {
		t.Fatalf("restore with {node}: %s", res.stderr)
	}
	for _, a := range c.agents {
		compareTrees(t, want[a.nodeID], describeTree(t, filepath.Join(placed, a.nodeID, "tree")))
	}

	// The leader checks the target while t3 is down (it cannot ask t3);
	// then the target becomes a symlink to t3's data dir before t3 runs
	// its step. With --delete, a restore there would wipe t3's state.
	leader := c.leader()
	victim := c.follower()
	victim.kill()
	swapped := filepath.Join(t.TempDir(), "swapped")
	body := fmt.Sprintf(`{"id":"swap-1","backup_id":%q,"node":%q,"target":%q,"delete":true}`, op.BackupID, victim.nodeID, swapped)
	if code, resp := leader.post("/v1/restores", body); code != 202 {
		t.Fatalf("start restore on a node that is down: %d %v", code, resp)
	}
	if err := os.Symlink(victim.dataDir, swapped); err != nil {
		t.Fatal(err)
	}
	// While the node is down, status says why the step waits and until when.
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := leader.cli("status", "swap-1")
		if strings.Contains(res.stdout, "waiting for "+victim.nodeID+": unreachable since") && strings.Contains(res.stdout, "gives up at") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not say why the restore waits:\n%s%s", res.stdout, res.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	dataBefore := topNames(t, victim.dataDir)
	victim.launch()
	done := leader.waitOp("swap-1", 2*time.Minute)
	if done.State != fsm.OpFailed || !strings.Contains(done.Error, "unsafe restore target") {
		t.Fatalf("restore into a swapped symlink: %s %q, want failed as unsafe", done.State, done.Error)
	}
	if after := topNames(t, victim.dataDir); after != dataBefore {
		t.Fatalf("%s's data dir changed: %s, was %s", victim.nodeID, after, dataBefore)
	}
}

// topNames lists the names directly in dir, sorted and comma-separated
// (a running agent's data dir changes below them, not at the top).
func topNames(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".tmp") {
			names = append(names, e.Name())
		}
	}
	return strings.Join(names, ",")
}
