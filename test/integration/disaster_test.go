package integration

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/crayfish-backup/crayfish/node/api"
)

// TestNewAgentRestoresFromRepositoryAlone loses the first agent's data dir
// entirely; a new agent with an empty data dir and another name, pointed at
// the same repository, lists the backups and restores the latest.
func TestNewAgentRestoresFromRepositoryAlone(t *testing.T) {
	repo, key := initRepo(t)
	a := newAgent(t, agentOpts{repo: repo, keyFile: key})
	makeTree(t, a.root, 200, 2<<20)
	a.backupWait()
	writeFile(t, filepath.Join(a.root, "second.txt"), []byte("second backup"), 0o644)
	want := describeTree(t, a.root)
	op2 := a.backupWait()
	a.stop()

	b := newAgent(t, agentOpts{nodeID: "replacement", repo: repo, keyFile: key})
	res := b.cli("list", "--output", "json")
	if res.code != 0 {
		t.Fatalf("list on new agent: %s", res.stderr)
	}
	var list api.BackupList
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Backups) != 2 || list.Backups[0].BackupID != op2.BackupID {
		t.Fatalf("new agent lists %+v", list.Backups)
	}
	if res := b.cli("restore", "--wait"); res.code != 0 {
		t.Fatalf("restore latest on new agent: %s\n%s", res.stderr, b.logs())
	}
	compareTrees(t, want, describeTree(t, b.root))
}
