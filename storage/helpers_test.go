package storage

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage/crypto"
)

// The helpers every test file of package storage shares: repositories in
// a temp dir, backups staged and committed, listings of the files, runs
// under the exclusive lock. Keep them here rather than copying them.

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

// putOrphanPack uploads a data pack of the given blobs that no index
// lists (as a crashed writer leaves one) and returns its key.
func putOrphanPack(t testing.TB, r *Repository, contents ...[]byte) string {
	t.Helper()
	w := r.newPackWriter(BlobData)
	for _, data := range contents {
		if _, err := w.Add(HashBytes(data), 0, data); err != nil {
			t.Fatal(err)
		}
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

// putBackup stores one backup whose files are the given chunks (one
// single-chunk file each) without flushing or committing.
func stageBackup(t testing.TB, r *Repository, backupID string, chunks [][]byte) *Manifest {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var files []FileEntry
	for i, c := range chunks {
		id := HashBytes(c)
		if _, err := r.SaveBlob(ctx, BlobData, id, c); err != nil {
			t.Fatal(err)
		}
		files = append(files, FileEntry{Path: fmt.Sprintf("f%04d", i), Type: TypeFile, Size: int64(len(c)),
			Mode: 0o644, MTime: t0, Content: id, Chunks: []ObjectID{id}})
	}
	tree, err := r.SaveFiles(ctx, files)
	if err != nil {
		t.Fatal(err)
	}
	return &Manifest{FormatVersion: ManifestFormatVersion, BackupID: backupID, OperationID: "op-" + backupID,
		Plugin: "files", StartedAt: t0, FinishedAt: t0,
		Nodes: []NodeManifest{{NodeID: "n1", Entries: int64(len(files)), Tree: tree}}}
}

func commit(t testing.TB, r *Repository, ms ...*Manifest) {
	t.Helper()
	ctx := context.Background()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := r.PutManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// checkBackup loads the backup's file list and every chunk through r.
func checkBackup(t testing.TB, r *Repository, backupID string) {
	t.Helper()
	ctx := context.Background()
	m, err := r.GetManifestWithFiles(ctx, backupID)
	if err != nil {
		t.Fatalf("backup %s: %v", backupID, err)
	}
	for _, n := range m.Nodes {
		for _, f := range n.Files {
			for _, c := range f.Chunks {
				b, err := r.LoadBlob(ctx, c)
				if err != nil {
					t.Fatalf("backup %s, %s: %v", backupID, f.Path, err)
				}
				if HashBytes(b) != c {
					t.Fatalf("backup %s, %s: wrong content", backupID, f.Path)
				}
			}
		}
	}
}

func cleanVerify(t testing.TB, r *Repository) {
	t.Helper()
	rep, err := r.Verify(context.Background(), VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("verify: %d problems, first %+v", len(rep.Problems), rep.Problems[0])
	}
}

type fileState struct {
	size int64
	mod  time.Time
}

// repoFiles lists every object file of a file:// repository.
func repoFiles(t testing.TB, url string) map[string]fileState {
	t.Helper()
	root := strings.TrimPrefix(url, "file://")
	out := map[string]fileState{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".tmp") {
			info, _ := d.Info()
			rel, _ := filepath.Rel(root, p)
			out[filepath.ToSlash(rel)] = fileState{info.Size(), info.ModTime()}
		}
		return nil
	})
	return out
}

func keysWith(files map[string]fileState, prefix string) []string {
	var ks []string
	for k := range files {
		if strings.HasPrefix(k, prefix) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

func randChunks(rng *rand.Rand, n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = randBytes(rng, size)
	}
	return out
}

// exclusively runs fn holding an exclusive lock named id (released
// afterwards) and fails the test on its error.
func exclusively[T any](t testing.TB, r *Repository, id string, fn func(ctx context.Context, lockID string) (T, error)) T {
	t.Helper()
	ctx := context.Background()
	if err := r.Lock(ctx, id, LockExclusive, "test"); err != nil {
		t.Fatal(err)
	}
	defer r.Unlock(ctx, id)
	v, err := fn(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func gcLocked(t testing.TB, r *Repository, opts GCOptions) GCReport {
	t.Helper()
	return exclusively(t, r, "gc", func(ctx context.Context, id string) (GCReport, error) {
		opts.LockID = id
		return r.GC(ctx, opts)
	})
}

// threeBackups: b1, b2, b3 each flushed on its own (own packs); shared
// blobs first stored by b1. b2's own blobs are only in b2's packs.
func threeBackups(t testing.TB, r *Repository) (shared [][]byte, own [3][][]byte) {
	rng := rand.New(rand.NewPCG(7, 7))
	shared = randChunks(rng, 20, 3000)
	for i := range own {
		own[i] = randChunks(rng, 20, 3000)
		commit(t, r, stageBackup(t, r, fmt.Sprintf("b%d", i+1), append(append([][]byte(nil), shared...), own[i]...)))
	}
	return shared, own
}

func dedupChunks(cs [][]byte) [][]byte {
	seen := map[ObjectID]bool{}
	var out [][]byte
	for _, c := range cs {
		if id := HashBytes(c); !seen[id] {
			seen[id] = true
			out = append(out, c)
		}
	}
	return out
}

// shortLocks makes locks go stale after d (and never refresh by themselves
// during the test).
func shortLocks(t *testing.T, d time.Duration) {
	stale, refresh := lockStaleAfter, lockRefreshEvery
	lockStaleAfter, lockRefreshEvery = d, time.Hour
	t.Cleanup(func() { lockStaleAfter, lockRefreshEvery = stale, refresh })
}

func openRepo(t testing.TB, url string) *Repository {
	t.Helper()
	r, err := Open(context.Background(), url, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// backdate sets the modification time of the object key of a file://
// repository to d ago.
func backdate(t *testing.T, url, key string, d time.Duration) {
	t.Helper()
	p := filepath.Join(strings.TrimPrefix(url, "file://"), filepath.FromSlash(key))
	when := time.Now().Add(-d)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
}

func lockIDs(t *testing.T, r *Repository) []string {
	t.Helper()
	ls, err := r.Locks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	return ids
}

var (
	cheapScrypt = crypto.ScryptParams{N: 1 << 10, R: 8, P: 1}
	password    = Secret{Password: []byte("correct horse")}
)

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newFileRepo(t *testing.T) (string, *Repository) {
	t.Helper()
	url := "file://" + filepath.Join(t.TempDir(), "repo")
	r, err := Init(context.Background(), url, InitOptions{Secret: password, Scrypt: cheapScrypt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return url, r
}

func saveAll(t *testing.T, r *Repository, blobs [][]byte) []ObjectID {
	t.Helper()
	var ids []ObjectID
	for _, b := range blobs {
		id := ObjectID(sha256.Sum256(b))
		if _, err := r.SaveBlob(context.Background(), BlobData, id, b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ids
}

func countFiles(t *testing.T, url, sub string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(strings.TrimPrefix(url, "file://"), sub), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".tmp") {
			n++
		}
		return nil
	})
	return n
}

func repairLocked(t *testing.T, r *Repository, kind string, opts RepairOptions) RepairReport {
	t.Helper()
	return exclusively(t, r, "repair", func(ctx context.Context, id string) (RepairReport, error) {
		opts.LockID = id
		return r.Repair(ctx, kind, opts)
	})
}

// flipInPack flips one byte inside blob id's record in its pack and
// returns the pack's key.
func flipInPack(t *testing.T, url string, r *Repository, id ObjectID) string {
	t.Helper()
	r.mu.Lock()
	loc, ok := r.idx.Lookup(id)
	r.mu.Unlock()
	if !ok {
		t.Fatalf("blob %s not indexed", id)
	}
	key := packKey(BlobType(loc.PackType), loc.Pack)
	p := filepath.Join(strings.TrimPrefix(url, "file://"), key)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[loc.Offset+loc.StoredLen/2] ^= 0x20
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// sameListing fails unless the repository's objects (names, sizes,
// modification times) are as before, locks aside.
func sameListing(t *testing.T, before, after map[string]fileState) {
	t.Helper()
	for k := range before {
		if strings.HasPrefix(k, "locks/") {
			delete(before, k)
		}
	}
	for k := range after {
		if strings.HasPrefix(k, "locks/") {
			delete(after, k)
		}
	}
	if !maps.Equal(before, after) {
		t.Fatalf("a dry run changed the repository:\nbefore %v\nafter  %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
}

// twoBackups: b1 and b2 flushed separately, sharing nothing: each has its
// own data pack, meta pack and index segment.
func twoBackups(t *testing.T) (string, *Repository, map[string][]string) {
	t.Helper()
	url, r := newFileRepo(t)
	rng := rand.New(rand.NewPCG(5, 5))
	files := map[string][]string{}
	for _, id := range []string{"b1", "b2"} {
		before := repoFiles(t, url)
		commit(t, r, stageBackup(t, r, id, randChunks(rng, 10, 5000)))
		for k := range repoFiles(t, url) {
			if _, ok := before[k]; !ok {
				files[id] = append(files[id], k)
			}
		}
	}
	return url, r, files
}

func only(files []string, prefix string) string {
	for _, f := range files {
		if strings.HasPrefix(f, prefix) {
			return f
		}
	}
	return ""
}

func problemsOf(t *testing.T, r *Repository, opts VerifyOptions) VerifyReport {
	t.Helper()
	rep, err := r.Verify(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Logf("problem %+v", p)
	}
	return rep
}
