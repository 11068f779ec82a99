package integration

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/coord"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// repoObjects lists the objects of a file:// repository under prefix
// (relative keys), locks aside.
func repoObjects(t *testing.T, url, prefix string) []string {
	t.Helper()
	root := strings.TrimPrefix(url, "file://")
	var keys []string
	filepath.WalkDir(filepath.Join(root, prefix), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".tmp") {
			rel, _ := filepath.Rel(root, p)
			if !strings.HasPrefix(rel, "locks") {
				keys = append(keys, filepath.ToSlash(rel))
			}
		}
		return nil
	})
	slices.Sort(keys)
	return keys
}

// repairWait runs a repair through the agent and returns its report.
func (a *agent) repairWait(wantOK bool, args ...string) storage.RepairReport {
	a.t.Helper()
	res := a.cli(append(append([]string{"repair"}, args...), "--wait", "--output", "json")...)
	if (res.code == 0) != wantOK {
		a.t.Fatalf("repair %v: exit %d: %s\n%s", args, res.code, res.stderr, tail(a.logs(), 2000))
	}
	var op fsm.Operation
	if err := json.Unmarshal([]byte(res.stdout), &op); err != nil {
		a.t.Fatalf("repair %v printed non-JSON: %v\n%s", args, err, res.stdout)
	}
	var rep storage.RepairReport
	stepResult(a.t, &op, "repair", &rep)
	return rep
}

func newPacks(before, after []string) []string {
	var out []string
	for _, k := range after {
		if !slices.Contains(before, k) {
			out = append(out, k)
		}
	}
	return out
}

// TestDamageNeverSpreadsAndRepair: a flipped byte found by verify is
// recorded; the next backup stores the content again, verify passes and
// the old backup restores byte for byte. Then repair index after the
// index is deleted, repair packs, and repair snapshots (dry run, forget),
// through the agent and offline.
func TestDamageNeverSpreadsAndRepair(t *testing.T) {
	a := newAgent(t, agentOpts{})
	rng := newRand(12)
	for i := range 12 {
		writeFile(t, filepath.Join(a.root, "small", string(rune('a'+i))+".bin"), randomBytes(rng, 40<<10), 0o644)
	}
	writeFile(t, filepath.Join(a.root, "big.bin"), randomBytes(rng, 3<<20), 0o644)
	want := describeTree(t, a.root)
	b1 := a.backupWait().BackupID

	// Requests that name no repair, or --forget outside snapshots, are
	// refused before anything starts.
	for _, body := range []string{`{"kind":"bogus"}`, `{}`, `{"kind":"packs","forget":true}`} {
		if code, resp := a.post("/v1/repairs", body); code != 400 {
			t.Fatalf("POST /v1/repairs %s: %d %v, want 400", body, code, resp)
		}
	}

	// One flipped byte in the middle of the largest data pack.
	root := strings.TrimPrefix(a.repo, "file://")
	var victim string
	var size int64
	for _, k := range repoObjects(t, a.repo, "data") {
		if fi, err := os.Stat(filepath.Join(root, k)); err == nil && fi.Size() > size {
			victim, size = k, fi.Size()
		}
	}
	b, _ := os.ReadFile(filepath.Join(root, victim))
	b[len(b)/2] ^= 0x10
	os.WriteFile(filepath.Join(root, victim), b, 0o644)

	if res := a.cli("verify", "--read-data", "--wait"); res.code == 0 || !strings.Contains(res.stderr, "problems found") {
		t.Fatalf("verify missed the flipped byte: %d %s", res.code, res.stderr)
	}
	damaged := repoObjects(t, a.repo, "damaged")
	if len(damaged) == 0 || !strings.Contains(damaged[0], filepath.Base(victim)) {
		t.Fatalf("verify recorded no damage for %s: %v", victim, damaged)
	}

	// The node still holds the content: the next backup stores it again.
	b2op := a.backupWait()
	var up struct {
		UploadedBytes int64 `json:"uploaded_bytes"`
	}
	for _, st := range b2op.Steps {
		if st.Name == "upload" {
			json.Unmarshal(st.Result, &up)
		}
	}
	if up.UploadedBytes == 0 {
		t.Fatal("the next backup deduplicated against the damaged blob (uploaded nothing)")
	}
	t.Logf("second backup uploaded %d bytes again", up.UploadedBytes)
	if res := a.cli("verify", "--read-data", "--wait"); res.code != 0 {
		t.Fatalf("verify after the content was stored again: %s\n%s", res.stderr, res.stdout)
	}
	restoreAndCompare := func(id string) {
		t.Helper()
		target := filepath.Join(t.TempDir(), "r")
		if res := a.cli("restore", id, "--target", target, "--wait"); res.code != 0 {
			t.Fatalf("restore %s: %s\n%s", id, res.stderr, tail(a.logs(), 2000))
		}
		compareTrees(t, want, describeTree(t, target))
	}
	restoreAndCompare(b1)

	// repair index: the index deleted, verify fails; rebuilt from the
	// pack footers, everything lists, verifies and restores again.
	for _, k := range repoObjects(t, a.repo, "index") {
		os.Remove(filepath.Join(root, k))
	}
	if res := a.cli("verify", "--wait"); res.code == 0 {
		t.Fatal("verify passes without an index")
	}
	before := repoObjects(t, a.repo, "")
	if rep := a.repairWait(true, "index", "--dry-run"); rep.Index == nil || rep.Index.Blobs == 0 || rep.Index.SegmentsBefore != 0 {
		t.Fatalf("repair index --dry-run: %+v", rep.Index)
	}
	if after := repoObjects(t, a.repo, ""); !slices.Equal(before, after) {
		t.Fatalf("repair index --dry-run changed the repository: %v → %v", before, after)
	}
	if rep := a.repairWait(true, "index"); rep.Index.SegmentsAfter == 0 || rep.Index.BlobsAdded != rep.Index.Blobs {
		t.Fatalf("repair index: %+v", rep.Index)
	}
	if got := a.listBackups(); len(got) != 2 || !slices.Contains(got, b1) {
		t.Fatalf("backups after repair index: %v", got)
	}
	if res := a.cli("verify", "--read-data", "--wait"); res.code != 0 {
		t.Fatalf("verify after repair index: %s", res.stderr)
	}
	restoreAndCompare(b1)

	// repair packs: the damaged pack goes; its good blobs move, the
	// damaged one is left to its new copy.
	before = repoObjects(t, a.repo, "")
	rep := a.repairWait(true, "packs", "--dry-run")
	if rep.Packs == nil || !slices.Equal(rep.Packs.DamagedPacks, []string{victim}) || len(rep.Packs.BlobsLost) != 0 || rep.Packs.BlobsSuperseded == 0 {
		t.Fatalf("repair packs --dry-run: %+v", rep.Packs)
	}
	if after := repoObjects(t, a.repo, ""); !slices.Equal(before, after) {
		t.Fatalf("repair packs --dry-run changed the repository: %v → %v", before, after)
	}
	rep = a.repairWait(true, "packs")
	if !slices.Equal(rep.Packs.DamagedPacks, []string{victim}) || rep.Packs.RecordsRemoved == 0 {
		t.Fatalf("repair packs: %+v", rep.Packs)
	}
	if _, err := os.Stat(filepath.Join(root, victim)); !os.IsNotExist(err) {
		t.Fatalf("damaged pack %s still there: %v", victim, err)
	}
	if d := repoObjects(t, a.repo, "damaged"); len(d) != 0 {
		t.Fatalf("damage records left: %v", d)
	}
	if res := a.cli("verify", "--read-data", "--wait"); res.code != 0 {
		t.Fatalf("verify after repair packs: %s", res.stderr)
	}
	restoreAndCompare(b1)

	// repair snapshots: a backup whose only copy of a file is gone.
	lostBackup := func() string {
		t.Helper()
		p := filepath.Join(a.root, "ephemeral.bin")
		writeFile(t, p, randomBytes(rng, 200<<10), 0o644)
		packs := repoObjects(t, a.repo, "data")
		id := a.backupWait().BackupID
		os.Remove(p)
		fresh := newPacks(packs, repoObjects(t, a.repo, "data"))
		if len(fresh) != 1 {
			t.Fatalf("backup %s wrote data packs %v, want one", id, fresh)
		}
		os.Remove(filepath.Join(root, fresh[0]))
		return id
	}
	b3 := lostBackup()
	before = repoObjects(t, a.repo, "")
	rep = a.repairWait(true, "snapshots", "--dry-run", "--forget")
	if rep.Snapshots == nil || len(rep.Snapshots.Broken) != 1 || rep.Snapshots.Broken[0].ID != b3 || len(rep.Snapshots.Forgotten) != 0 {
		t.Fatalf("repair snapshots --dry-run: %+v", rep.Snapshots)
	}
	if after := repoObjects(t, a.repo, ""); !slices.Equal(before, after) {
		t.Fatalf("repair snapshots --dry-run changed the repository: %v → %v", before, after)
	}
	if res := a.cli("repair", "snapshots", "--dry-run", "--wait"); res.code != 0 || !strings.Contains(res.stdout, "broken 1") || !strings.Contains(res.stdout, b3) {
		t.Fatalf("repair snapshots --dry-run (text): exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	rep = a.repairWait(true, "snapshots", "--forget")
	if !slices.Equal(rep.Snapshots.Forgotten, []string{b3}) {
		t.Fatalf("repair snapshots --forget: %+v", rep.Snapshots)
	}
	if got := a.listBackups(); len(got) != 2 || slices.Contains(got, b3) {
		t.Fatalf("backups after forget: %v", got)
	}
	rep = a.repairWait(true, "packs") // the missing pack leaves the index
	if len(rep.Packs.MissingPacks) != 1 || len(rep.Packs.BlobsLost) == 0 {
		t.Fatalf("repair packs of a missing pack: %+v", rep.Packs)
	}
	if res := a.cli("verify", "--read-data", "--wait"); res.code != 0 {
		t.Fatalf("verify after forgetting the broken backup: %s", res.stderr)
	}

	// Offline, with --repository: the same repairs, no agent.
	b4 := lostBackup()
	a.stop()
	before = repoObjects(t, a.repo, "")
	res := a.offline("repair", "snapshots", "--dry-run")
	if res.code == 0 || !strings.Contains(res.stdout, b4) {
		t.Fatalf("offline repair snapshots --dry-run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if res := a.offline("repair", "index", "--dry-run"); res.code != 0 {
		t.Fatalf("offline repair index --dry-run: %s", res.stderr)
	}
	if after := repoObjects(t, a.repo, ""); !slices.Equal(before, after) {
		t.Fatalf("offline dry runs changed the repository: %v → %v", before, after)
	}
	if res := a.offline("repair", "snapshots", "--forget"); res.code != 0 || !strings.Contains(res.stdout, b4) {
		t.Fatalf("offline repair snapshots --forget: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if res := a.offline("repair", "packs"); res.code != 0 || !strings.Contains(res.stdout, "missing_packs") {
		t.Fatalf("offline repair packs: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	for _, k := range repoObjects(t, a.repo, "index") {
		os.Remove(filepath.Join(root, k))
	}
	if res := a.offline("repair", "index"); res.code != 0 {
		t.Fatalf("offline repair index: %s", res.stderr)
	}
	if res := a.offline("verify", "--read-data"); res.code != 0 {
		t.Fatalf("offline verify after the repairs: %s\n%s", res.stdout, res.stderr)
	}
	a.start()
	restoreAndCompare(b1)
}

// TestMissingPackStoredAgain: a data pack deleted from the repository;
// verify reports it and records its blobs as damaged; the next backup
// stores them again from the node; verify passes and the older backup
// restores byte for byte.
func TestMissingPackStoredAgain(t *testing.T) {
	a := newAgent(t, agentOpts{})
	rng := newRand(21)
	for i := range 6 {
		writeFile(t, filepath.Join(a.root, "d", string(rune('a'+i))+".bin"), randomBytes(rng, 300<<10), 0o644)
	}
	want := describeTree(t, a.root)
	b1 := a.backupWait().BackupID
	root := strings.TrimPrefix(a.repo, "file://")
	packs := repoObjects(t, a.repo, "data")
	if len(packs) == 0 {
		t.Fatal("no data pack")
	}
	for _, k := range packs {
		os.Remove(filepath.Join(root, k))
	}
	if res := a.cli("verify", "--wait"); res.code == 0 || !strings.Contains(res.stderr, "missing") {
		t.Fatalf("verify missed the deleted packs: %d %s", res.code, res.stderr)
	}
	if len(repoObjects(t, a.repo, "damaged")) == 0 {
		t.Fatal("verify recorded nothing")
	}
	a.backupWait()
	if res := a.cli("verify", "--read-data", "--wait"); res.code != 0 {
		t.Fatalf("verify after the next backup: %s\n%s", res.stderr, res.stdout)
	}
	target := filepath.Join(t.TempDir(), "r")
	if res := a.cli("restore", b1, "--target", target, "--wait"); res.code != 0 {
		t.Fatalf("restore %s: %s", b1, res.stderr)
	}
	compareTrees(t, want, describeTree(t, target))
}

// TestClusterDamageStoredAgain: in a three-node cluster every data pack
// gets one flipped byte. verify records the damaged blobs; the next
// backup's dedup step counts them as missing and each is uploaded again
// by one node that holds it; verify passes and the older backup restores
// every node byte for byte.
func TestClusterDamageStoredAgain(t *testing.T) {
	c := startCluster(t, 3, "d", "", "")
	fillRoots(t, c.agents, 1<<20)
	want := map[string]map[string]entryDesc{}
	for _, a := range c.agents {
		want[a.nodeID] = describeTree(t, a.root)
	}
	f := c.follower()
	b1 := f.backupWait().BackupID
	root := strings.TrimPrefix(c.repo, "file://")
	packs := repoObjects(t, c.repo, "data")
	for _, k := range packs {
		p := filepath.Join(root, k)
		b, _ := os.ReadFile(p)
		b[len(b)/2] ^= 0x08
		os.WriteFile(p, b, 0o644)
	}
	if res := f.cli("verify", "--read-data", "--wait"); res.code == 0 {
		t.Fatal("verify missed the flipped bytes")
	}
	if n := len(repoObjects(t, c.repo, "damaged")); n < len(packs) {
		t.Fatalf("%d damage records for %d damaged packs", n, len(packs))
	}
	op := f.backupWait()
	var dedup coord.DedupResult
	stepResult(t, op, wire.StepDedup, &dedup)
	var uploaded int64
	for n, r := range uploadResults(t, op) {
		uploaded += r.Uploaded
		t.Logf("node %s uploaded %d chunks (%d bytes) again", n, r.Uploaded, r.UploadedBytes)
	}
	if dedup.Missing == 0 || uploaded < dedup.Missing {
		t.Fatalf("dedup found %d missing chunks, nodes uploaded %d: the damaged chunks were not stored again", dedup.Missing, uploaded)
	}
	if res := f.cli("verify", "--read-data", "--wait"); res.code != 0 {
		t.Fatalf("verify after the next backup: %s\n%s", res.stderr, res.stdout)
	}
	for _, a := range c.agents {
		os.RemoveAll(filepath.Join(a.root, "shared"))
		os.RemoveAll(filepath.Join(a.root, "own"))
	}
	if res := c.follower(f).cli("restore", b1, "--wait"); res.code != 0 {
		t.Fatalf("restore %s: %s\n%s", b1, res.stderr, res.stdout)
	}
	for _, a := range c.agents {
		compareTrees(t, want[a.nodeID], describeTree(t, a.root))
	}
}
