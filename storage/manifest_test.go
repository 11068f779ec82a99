package storage

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testManifest(backupID string) *Manifest {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
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
				NodeID: "node-a",
				Stats:  NodeStats{Files: 2, Dirs: 1, Symlinks: 1, Bytes: 5, UploadedFiles: 1, UploadedBytes: 5, StoredBytes: 6},
				Files: []FileEntry{
					{Path: "data", Type: TypeDir, Mode: 0o755, MTime: t0},
					{Path: "data/a.db", Type: TypeFile, Size: 5, Mode: 0o644, MTime: t0, Content: HashBytes([]byte("hello"))},
					{Path: "data/empty", Type: TypeFile, Mode: 0o600, MTime: t0},
					{Path: "data/link", Type: TypeSymlink, Mode: 0o777, MTime: t0, LinkTarget: "a.db"},
					{Path: "implied/parent/file", Type: TypeFile, Size: 5, Mode: 0o644, MTime: t0, Content: HashBytes([]byte("hello"))},
				},
			},
			{NodeID: "node-b", Files: []FileEntry{}},
		},
	}
}

func TestManifestRoundTrip(t *testing.T) {
	backends(t, func(t *testing.T, r *Repository) {
		ctx := context.Background()
		m := testManifest("20260102T030405Z-abc")
		if err := r.PutManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		got, err := r.GetManifest(ctx, m.BackupID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("GetManifest returned\n%+v\nput\n%+v", got, m)
		}

		// A retried commit of the same manifest succeeds, also from a copy.
		if err := r.PutManifest(ctx, m); err != nil {
			t.Fatalf("idempotent re-put: %v", err)
		}
		if err := r.PutManifest(ctx, got); err != nil {
			t.Fatalf("re-put of the read-back manifest: %v", err)
		}

		// A different manifest under the same id is refused, and the first stays.
		other := testManifest(m.BackupID)
		other.OperationID = "op-2"
		if err := r.PutManifest(ctx, other); !errors.Is(err, ErrExists) {
			t.Fatalf("put of a different manifest with the same id: err = %v, want ErrExists", err)
		}
		if got, _ := r.GetManifest(ctx, m.BackupID); got.OperationID != "op-1" {
			t.Fatal("the first manifest was replaced")
		}
	})
}

func TestPutManifestInvalid(t *testing.T) {
	r := newFileRepo(t)
	m := testManifest("../../x")
	if err := r.PutManifest(context.Background(), m); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("PutManifest with a bad backup id: err = %v", err)
	}
	m = testManifest("20260101-a")
	m.Nodes[0].Files[1].Path = "../escape"
	if err := r.PutManifest(context.Background(), m); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("PutManifest with a hostile path: err = %v", err)
	}
	if got := storedFiles(t, repoDir(r)); len(got) != 1 {
		t.Fatalf("invalid manifests were written: %v", got)
	}
}

func TestListBackupIDs(t *testing.T) {
	backends(t, func(t *testing.T, r *Repository) {
		ctx := context.Background()
		ids, err := r.ListBackupIDs(ctx)
		if err != nil || len(ids) != 0 {
			t.Fatalf("ListBackupIDs of an empty repository = %v, %v", ids, err)
		}
		for _, id := range []string{"20260103T000000Z-c", "20260101T000000Z-a", "20260102T000000Z-b", "20251231T235959Z-z"} {
			if err := r.PutManifest(ctx, testManifest(id)); err != nil {
				t.Fatal(err)
			}
		}
		// Objects are not manifests.
		put(t, r, []byte("an object"))
		// Leftovers that are not manifests: a driver temporary file, a nested key.
		for _, key := range []string{"manifests/20260104T000000Z-d.18a2b3c4d5e6f.tmp", "manifests/sub/x"} {
			if err := r.bucket.WriteAll(ctx, key, []byte("junk"), nil); err != nil {
				t.Fatal(err)
			}
		}
		ids, err = r.ListBackupIDs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"20251231T235959Z-z", "20260101T000000Z-a", "20260102T000000Z-b", "20260103T000000Z-c"}
		if !reflect.DeepEqual(ids, want) {
			t.Fatalf("ListBackupIDs = %v, want %v", ids, want)
		}
	})
}

func TestDeleteManifest(t *testing.T) {
	backends(t, func(t *testing.T, r *Repository) {
		ctx := context.Background()
		id := "20260101T000000Z-a"
		if err := r.DeleteManifest(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("DeleteManifest of a missing manifest: err = %v, want ErrNotFound", err)
		}
		if err := r.PutManifest(ctx, testManifest(id)); err != nil {
			t.Fatal(err)
		}
		if err := r.DeleteManifest(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := r.GetManifest(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetManifest after delete: err = %v, want ErrNotFound", err)
		}
		if ids, _ := r.ListBackupIDs(ctx); len(ids) != 0 {
			t.Fatalf("ListBackupIDs after delete = %v", ids)
		}
		if err := r.DeleteManifest(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second DeleteManifest: err = %v, want ErrNotFound", err)
		}
		// After a delete the id may be committed again.
		if err := r.PutManifest(ctx, testManifest(id)); err != nil {
			t.Fatal(err)
		}
		if err := r.DeleteManifest(ctx, "../config"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("DeleteManifest(../config): err = %v", err)
		}
	})
}

func TestGetManifestMissing(t *testing.T) {
	backends(t, func(t *testing.T, r *Repository) {
		for _, id := range []string{"20260101T000000Z-a", "../../x", "", "../config", "a/b"} {
			if _, err := r.GetManifest(context.Background(), id); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetManifest(%q): err = %v, want ErrNotFound", id, err)
			}
		}
	})
}

func TestGetManifestHostile(t *testing.T) {
	const id = "20260101T000000Z-a"
	zjson := func(v any) []byte {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return manifestEncoder().EncodeAll(data, nil)
	}
	evil := testManifest(id)
	evil.Nodes[0].Files[1].Path = "/etc/passwd"
	wrongID := testManifest("20260101T000000Z-b")
	future := testManifest(id)
	future.FormatVersion = 1
	cases := map[string]struct {
		stored []byte
		want   string // part of the error message
	}{
		"not-zstd":      {[]byte(`{"format_version":0}`), "zstd"},
		"bad-json":      {manifestEncoder().EncodeAll([]byte(`{"backup_id":`), nil), "bad JSON"},
		"bad-object-id": {manifestEncoder().EncodeAll([]byte(`{"backup_id":"`+id+`","nodes":[{"node_id":"n","files":[{"path":"a","type":"file","size":1,"content":"zz"}]}]}`), nil), "bad JSON"},
		"trailing-json": {manifestEncoder().EncodeAll([]byte(`{"backup_id":"`+id+`"} {}`), nil), "bad JSON"},
		"absolute-path": {zjson(evil), "absolute path"},
		"wrong-id":      {zjson(wrongID), "names backup"},
		"future":        {zjson(future), "format_version 1"},
		"empty":         {nil, "bad JSON"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := newRepo(t, "mem://")
			if err := r.bucket.WriteAll(context.Background(), manifestKey(id), c.stored, nil); err != nil {
				t.Fatal(err)
			}
			_, err := r.GetManifest(context.Background(), id)
			if !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidManifest saying %q", err, c.want)
			}
			// It cannot be overwritten either.
			if err := r.PutManifest(context.Background(), testManifest(id)); !errors.Is(err, ErrExists) {
				t.Fatalf("PutManifest over a damaged manifest: err = %v, want ErrExists", err)
			}
		})
	}
}

// TestManifestOnDisk pins the stored encoding: a zstd frame of the JSON.
func TestManifestOnDisk(t *testing.T) {
	r := newFileRepo(t)
	m := testManifest("20260101T000000Z-a")
	if err := r.PutManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repoDir(r), "manifests", m.BackupID))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := getDecoder(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer putDecoder(dec)
	var raw map[string]any
	if err := json.NewDecoder(dec).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"format_version", "backup_id", "operation_id", "epoch", "plugin", "started_at", "finished_at", "nodes"} {
		if _, ok := raw[field]; !ok {
			t.Errorf("stored manifest lacks %q", field)
		}
	}
}
