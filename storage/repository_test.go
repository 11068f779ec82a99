package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/crypto"
)

func TestInitOpenAndKeys(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	if !r.Config().Encrypted() || r.Config().Version != RepositoryVersion {
		t.Fatalf("config %+v", r.Config())
	}
	if _, err := Init(ctx, url, InitOptions{Secret: password, Scrypt: cheapScrypt}); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	if _, err := Open(ctx, url, OpenOptions{}); !errors.Is(err, ErrNeedSecret) {
		t.Fatalf("open without secret: %v", err)
	}
	if _, err := Open(ctx, url, OpenOptions{Secret: Secret{Password: []byte("wrong")}}); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("open with wrong password: %v", err)
	}
	// A key file added later opens it too; the password key can then go.
	material := crypto.GenerateKeyMaterial()
	k, err := r.AddKey(ctx, Secret{KeyMaterial: material}, "ops", cheapScrypt)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, url, OpenOptions{Secret: Secret{KeyMaterial: material}})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	keys, _ := r2.Keys(ctx)
	if len(keys) != 2 {
		t.Fatalf("keys %+v", keys)
	}
	if err := r2.RemoveKey(ctx, k.ID); err == nil {
		t.Fatal("removed the key in use")
	}
	var pwKey string
	for _, kk := range keys {
		if !kk.Current {
			pwKey = kk.ID
		}
	}
	if err := r2.RemoveKey(ctx, pwKey); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, url, OpenOptions{Secret: password}); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("removed password still opens: %v", err)
	}
	if err := r2.RemoveKey(ctx, k.ID); err == nil {
		t.Fatal("removed the last key")
	}
}

func TestInitRefusesPlaintextUnlessAsked(t *testing.T) {
	url := "file://" + filepath.Join(t.TempDir(), "repo")
	if _, err := Init(context.Background(), url, InitOptions{}); !errors.Is(err, ErrNeedSecret) {
		t.Fatalf("init without secret: %v", err)
	}
	r, err := Init(context.Background(), url, InitOptions{NoEncryption: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ids := saveAll(t, r, [][]byte{[]byte("plain")})
	r2, err := Open(context.Background(), url, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if b, err := r2.LoadBlob(context.Background(), ids[0]); err != nil || string(b) != "plain" {
		t.Fatalf("%q %v", b, err)
	}
}

func TestOpenRefusesUnknownVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := `{"format":"crayfish","version":99,"id":"00","hash":"sha256"}`
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), "file://"+dir, OpenOptions{Secret: password})
	if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("open v99: %v", err)
	}
	if _, err := Open(context.Background(), "file://"+filepath.Join(t.TempDir(), "none"), OpenOptions{}); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("open empty: %v", err)
	}
}

func TestBlobsRoundTripPacksAndReopen(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	rng := rand.New(rand.NewPCG(1, 1))
	var blobs [][]byte
	for i := range 3000 { // 3,000 small blobs must become a handful of packs
		blobs = append(blobs, randBytes(rng, 1+i%2048))
	}
	blobs = append(blobs, bytes.Repeat([]byte("compressible "), 300000), randBytes(rng, ChunkSize), nil)
	ids := saveAll(t, r, blobs)
	// Saving again stores nothing new.
	if n, err := r.SaveBlob(ctx, BlobData, ids[0], blobs[0]); err != nil || n != 0 {
		t.Fatalf("re-save: %d %v", n, err)
	}
	packs := countFiles(t, url, "data")
	if packs == 0 || packs > 4 {
		t.Fatalf("%d blobs in %d packs", len(blobs), packs)
	}
	r2, err := Open(ctx, url, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	for i, id := range ids {
		if !r2.HasBlob(id) {
			t.Fatalf("blob %d not indexed after reopen", i)
		}
		b, err := r2.LoadBlob(ctx, id)
		if err != nil || !bytes.Equal(b, blobs[i]) {
			t.Fatalf("blob %d: %v", i, err)
		}
	}
	if _, err := r2.LoadBlob(ctx, HashBytes([]byte("never stored"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	if _, err := r.SaveBlob(ctx, BlobData, HashBytes([]byte("a")), []byte("b")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("blob whose id lies: %v", err)
	}
}

func TestCorruptPackIsDetected(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	ids := saveAll(t, r, [][]byte{bytes.Repeat([]byte("x"), 5000), []byte("other")})
	var packPath string
	filepath.WalkDir(filepath.Join(strings.TrimPrefix(url, "file://"), "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			packPath = p
		}
		return nil
	})
	b, err := os.ReadFile(packPath)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 0xff // inside the first record
	if err := os.WriteFile(packPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, url, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	_, err1 := r2.LoadBlob(ctx, ids[0])
	_, err2 := r2.LoadBlob(ctx, ids[1])
	if !errors.Is(err1, ErrCorrupt) && !errors.Is(err2, ErrCorrupt) {
		t.Fatalf("flipped byte not detected: %v / %v", err1, err2)
	}
	if err1 != nil && !strings.Contains(err1.Error(), ids[0].String()) {
		t.Fatalf("error does not name the blob: %v", err1)
	}
}

func TestSnapshotsAndFileLists(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	m := testManifest("20260102T030405.000001Z-abc")
	for i := range m.Nodes {
		tree, err := r.SaveFiles(ctx, m.Nodes[i].Files)
		if err != nil {
			t.Fatal(err)
		}
		m.Nodes[i].Tree, m.Nodes[i].Entries = tree, int64(len(m.Nodes[i].Files))
	}
	if err := r.PutManifest(ctx, m); !errors.Is(err, ErrNotFound) {
		t.Fatalf("snapshot before flush must refuse unflushed trees... got %v", err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := r.PutManifest(ctx, m); err != nil {
		t.Fatalf("idempotent re-put: %v", err)
	}
	other := *m
	other.OperationID = "someone-else"
	if err := r.PutManifest(ctx, &other); !errors.Is(err, ErrExists) {
		t.Fatalf("different snapshot, same id: %v", err)
	}
	r2, err := Open(ctx, url, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	got, err := r2.GetManifestWithFiles(ctx, m.BackupID)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(m)
	gotJSON, _ := json.Marshal(got)
	if !bytes.Equal(wantJSON, gotJSON) {
		t.Fatalf("manifest round trip:\n%s\n%s", wantJSON, gotJSON)
	}
	snap, err := r2.GetManifest(ctx, m.BackupID)
	if err != nil || snap.Nodes[0].Files != nil || snap.Summarize().Stats.Files != 3 {
		t.Fatalf("snapshot: %+v %v", snap, err)
	}
	// Listing and deletion.
	m2 := testManifest("20260102T030405.000002Z-def")
	m2.Nodes = nil
	if err := r.PutManifest(ctx, m2); err != nil {
		t.Fatal(err)
	}
	ids, err := r2.ListBackupIDs(ctx)
	if err != nil || len(ids) != 2 || ids[0] != m.BackupID {
		t.Fatalf("list: %v %v", ids, err)
	}
	if err := r2.DeleteManifest(ctx, m.BackupID); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.GetManifest(ctx, m.BackupID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted snapshot: %v", err)
	}
	if err := r2.DeleteManifest(ctx, m.BackupID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("double delete: %v", err)
	}
	// A snapshot object moved to another id fails authentication.
	dir := strings.TrimPrefix(url, "file://")
	b, _ := os.ReadFile(filepath.Join(dir, "snapshots", m2.BackupID))
	os.WriteFile(filepath.Join(dir, "snapshots", "20260101T000000.000000Z-zzz"), b, 0o644)
	if _, err := r2.GetManifest(ctx, "20260101T000000.000000Z-zzz"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("renamed snapshot accepted: %v", err)
	}
}

// TestFaultsFailClearlyOrSucceed: transient backend errors are retried;
// persistent ones surface as errors, and what was flushed stays readable.
func TestFaultsFailClearlyOrSucceed(t *testing.T) {
	ctx := context.Background()
	url := "file://" + filepath.Join(t.TempDir(), "repo")
	base, err := backend.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	faulty := backend.NewFaulty(base, 7)
	r, err := Init(ctx, url, InitOptions{Secret: password, Scrypt: cheapScrypt})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	fast := backend.RetryPolicy{Attempts: 5, Sleep: func(context.Context, time.Duration) error { return nil }}
	r, err = Open(ctx, url, OpenOptions{Secret: password, Backend: faulty, Retry: fast})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	transient := errors.New("503 slow down")
	faulty.FailNext(backend.OpPut, 3, transient)
	ids := saveAll(t, r, [][]byte{[]byte("survives transient errors")})
	faulty.FailNext(backend.OpPut, 100, transient)
	id := HashBytes([]byte("never lands"))
	if _, err := r.SaveBlob(ctx, BlobData, id, []byte("never lands")); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err == nil {
		t.Fatal("flush succeeded although every put failed")
	}
	faulty.FailNext(backend.OpPut, 0, nil)
	r2, err := Open(ctx, url, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if b, err := r2.LoadBlob(ctx, ids[0]); err != nil || string(b) != "survives transient errors" {
		t.Fatalf("flushed blob after faults: %q %v", b, err)
	}
	if r2.HasBlob(id) {
		t.Fatal("a blob whose pack never landed is indexed")
	}
	// What the failed flush left behind does not break the repository.
	rep, err := r2.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("repository after faults does not verify: %+v %v", rep.Problems, err)
	}
}

func TestInitAfterInterruptedInitAndDowngrade(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	url := "file://" + dir
	r, err := Init(ctx, url, InitOptions{Secret: password, Scrypt: cheapScrypt})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	// Simulate a crash between the key and the config.
	if err := os.Remove(filepath.Join(dir, "config")); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(ctx, url, InitOptions{Secret: password, Scrypt: cheapScrypt}); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("init over an interrupted init: %v", err)
	}
	// An unencrypted repository opened with a secret may be a downgraded one.
	url2 := "file://" + filepath.Join(t.TempDir(), "plain")
	p, err := Init(ctx, url2, InitOptions{NoEncryption: true})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := Open(ctx, url2, OpenOptions{Secret: password}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not encrypted") {
		t.Fatalf("unencrypted repository opened with a password: %v", err)
	}
}

// TestLoadBlobAfterRepackElsewhere: another handle's GC repacks a blob;
// this handle, holding the old location, still loads it.
func TestLoadBlobAfterRepackElsewhere(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	keep, drop := []byte("keep me"), []byte("drop me")
	ids := saveAll(t, r, [][]byte{keep, drop})
	files := []FileEntry{{Path: "k", Type: TypeFile, Size: int64(len(keep)), Content: ids[0], Chunks: ids[:1]}}
	tree, err := r.SaveFiles(ctx, files)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m := &Manifest{FormatVersion: ManifestFormatVersion, BackupID: "20260101T000000.000000Z-a", OperationID: "op",
		Plugin: "files", Nodes: []NodeManifest{{NodeID: "n", Entries: 1, Tree: tree}}}
	if err := r.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	other, err := Open(ctx, url, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Lock(ctx, "gc", LockExclusive, "test"); err != nil {
		t.Fatal(err)
	}
	rep, err := other.GC(ctx, GCOptions{MaxUnusedFraction: -1, LockID: "gc"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksRepacked == 0 || rep.DeadBlobs == 0 {
		t.Fatalf("gc did not repack: %+v", rep)
	}
	b, err := r.LoadBlob(ctx, ids[0])
	if err != nil || !bytes.Equal(b, keep) {
		t.Fatalf("load after repack by another handle: %q %v", b, err)
	}
}
