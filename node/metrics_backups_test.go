package node

import (
	"context"
	"errors"
	"testing"

	"github.com/crayfish-backup/crayfish/storage"
)

type fakeCatalog struct {
	ids     []string
	fail    error
	reads   int
	damaged []storage.DamagedBlob
}

func (f *fakeCatalog) ListDamaged(context.Context) ([]storage.DamagedBlob, error) {
	return f.damaged, f.fail
}

func (f *fakeCatalog) ListBackupIDs(context.Context) ([]string, error) { return f.ids, f.fail }

func (f *fakeCatalog) GetManifest(_ context.Context, id string) (*storage.Manifest, error) {
	f.reads++
	plugin := "files"
	if id[0] == 'c' {
		plugin = "cassandra"
	}
	return &storage.Manifest{BackupID: id, Plugin: plugin}, nil
}

// TestBackupCounter: backups counted by plugin, each manifest read once,
// a failed listing keeps the last counts.
func TestBackupCounter(t *testing.T) {
	cat := &fakeCatalog{ids: []string{"c1", "c2", "f1"}}
	b := &repoCounter{repo: cat}
	expect(t, b, `
crayfish_backups{plugin="cassandra"} 2
crayfish_backups{plugin="files"} 1
crayfish_repository_damaged_blobs 0`)
	cat.ids = []string{"c2", "f1", "f2"}
	cat.damaged = []storage.DamagedBlob{{}, {Superseded: true}, {}}
	expect(t, b, `
crayfish_backups{plugin="cassandra"} 1
crayfish_backups{plugin="files"} 2
crayfish_repository_damaged_blobs 2`)
	if cat.reads != 4 {
		t.Errorf("%d manifests read, want 4 (each once)", cat.reads)
	}
	cat.fail = errors.New("storage down")
	expect(t, b, `crayfish_backups{plugin="files"} 2`)
}
