package storage

import (
	"context"
	"testing"
	"time"
)

// testManifest is a valid manifest with file lists loaded.
func testManifest(backupID string) *Manifest {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	hello := HashBytes([]byte("hello"))
	files := []FileEntry{
		{Path: "data", Type: TypeDir, Mode: 0o755, MTime: t0},
		{Path: "data/a.db", Type: TypeFile, Size: 5, Mode: 0o644, MTime: t0, Content: hello, Chunks: []ObjectID{hello}},
		{Path: "data/empty", Type: TypeFile, Mode: 0o600, MTime: t0},
		{Path: "data/link", Type: TypeSymlink, Mode: 0o777, MTime: t0, LinkTarget: "a.db"},
		{Path: "implied/parent/file", Type: TypeFile, Size: 5, Mode: 0o644, MTime: t0, Content: hello, Chunks: []ObjectID{hello}},
	}
	return &Manifest{
		FormatVersion: ManifestFormatVersion,
		BackupID:      backupID,
		OperationID:   "op-1",
		Epoch:         3,
		Plugin:        "files",
		StartedAt:     t0,
		FinishedAt:    t0.Add(time.Minute),
		Nodes: []NodeManifest{
			{
				NodeID:  "node-a",
				Stats:   NodeStats{Files: 3, Dirs: 1, Symlinks: 1, Bytes: 10, UploadedFiles: 1, UploadedBytes: 5, StoredBytes: 6},
				Entries: int64(len(files)),
				Tree:    []ObjectID{HashBytes([]byte("tree"))},
				Files:   files,
			},
			{NodeID: "node-b", Files: []FileEntry{}},
		},
	}
}

// putOrphanPack uploads a pack of one blob that no index lists (as a
// crashed writer leaves one) and returns its key.
func putOrphanPack(t testing.TB, r *Repository, content string) string {
	t.Helper()
	w := r.newPackWriter()
	data := []byte(content)
	if _, err := w.Add(HashBytes(data), 0, data); err != nil {
		t.Fatal(err)
	}
	b, _, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	k := packKey(BlobData, HashBytes(b))
	if err := r.be.Put(context.Background(), k, b, false); err != nil {
		t.Fatal(err)
	}
	return k
}
