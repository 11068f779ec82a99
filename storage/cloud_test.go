package storage

// The whole repository over the real wire protocols: Init, packs, index,
// snapshots, reopen, GC under a lock and Verify on s3://, gs:// and
// azblob://, against the emulators of package emulators (gofakes3 and
// fake-gcs-server in-process, Azurite as a child process).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/backend/emulators"
)

func TestCloudS3(t *testing.T)    { testCloudRepository(t, emulators.StartS3(t)) }
func TestCloudGCS(t *testing.T)   { testCloudRepository(t, emulators.StartGCS(t)) }
func TestCloudAzure(t *testing.T) { testCloudRepository(t, emulators.StartAzurite(t)) }

// TestCloudSeaweedFS: the same on a real S3 server (SeaweedFS).
func TestCloudSeaweedFS(t *testing.T) { testCloudRepository(t, emulators.StartSeaweedFS(t)) }

// cloudBackup is one backup built by the test: its file list and the
// plaintext of every chunk it references.
type cloudBackup struct {
	m      *Manifest
	files  []FileEntry
	chunks map[ObjectID][]byte
}

// cloudFile adds a regular file of data to b, cut into ChunkSize chunks.
func (b *cloudBackup) cloudFile(path string, data []byte, mtime time.Time) {
	e := FileEntry{Path: path, Type: TypeFile, Size: int64(len(data)), Mode: 0o644, MTime: mtime}
	if len(data) > 0 {
		e.Content = HashBytes(data)
		for off := 0; off < len(data); off += ChunkSize {
			c := data[off:min(off+ChunkSize, len(data))]
			id := HashBytes(c)
			e.Chunks = append(e.Chunks, id)
			b.chunks[id] = c
		}
	}
	b.files = append(b.files, e)
}

func newCloudBackup(id string) *cloudBackup {
	return &cloudBackup{
		m:      &Manifest{FormatVersion: ManifestFormatVersion, BackupID: id, OperationID: "op-" + id, Plugin: "files"},
		chunks: map[ObjectID][]byte{},
	}
}

// save stores b's chunks from 4 concurrent savers, then its file list,
// flushes and commits the snapshot.
func (b *cloudBackup) save(t *testing.T, ctx context.Context, r *Repository) {
	t.Helper()
	ids := make([]ObjectID, 0, len(b.chunks))
	for id := range b.chunks {
		ids = append(ids, id)
	}
	sortIDs(ids)
	work := make(chan ObjectID)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for id := range work {
				if _, err := r.SaveBlob(ctx, BlobData, id, b.chunks[id]); err != nil {
					errs <- err
					for range work {
					}
					return
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("SaveBlob: %v", err)
	}
	tree, err := r.SaveFiles(ctx, b.files)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, f := range b.files {
		total += f.Size
	}
	b.m.Nodes = []NodeManifest{{NodeID: "node-1", Entries: int64(len(b.files)), Tree: tree,
		Stats: NodeStats{Files: int64(len(b.files)), Bytes: total}}}
	if err := r.PutManifest(ctx, b.m); err != nil {
		t.Fatal(err)
	}
}

// check loads b through r: the snapshot, its file list and every chunk,
// and compares them with what was saved.
func (b *cloudBackup) check(t *testing.T, ctx context.Context, r *Repository) {
	t.Helper()
	m, err := r.GetManifest(ctx, b.m.BackupID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Nodes) != 1 || !slices.Equal(m.Nodes[0].Tree, b.m.Nodes[0].Tree) || m.Nodes[0].Entries != int64(len(b.files)) {
		t.Fatalf("snapshot %s: %+v", b.m.BackupID, m.Nodes)
	}
	files, err := r.LoadFiles(ctx, &m.Nodes[0])
	if err != nil {
		t.Fatalf("LoadFiles(%s): %v", b.m.BackupID, err)
	}
	if len(files) != len(b.files) {
		t.Fatalf("backup %s: %d files loaded, %d saved", b.m.BackupID, len(files), len(b.files))
	}
	for i, f := range files {
		w := b.files[i]
		if f.Path != w.Path || f.Size != w.Size || f.Content != w.Content || !slices.Equal(f.Chunks, w.Chunks) || !f.MTime.Equal(w.MTime) || f.Mode != w.Mode {
			t.Fatalf("backup %s entry %d:\n got  %+v\n want %+v", b.m.BackupID, i, f, w)
		}
		h := sha256.New()
		for _, c := range f.Chunks {
			data, err := r.LoadBlob(ctx, c)
			if err != nil {
				t.Fatalf("backup %s, %s: LoadBlob(%s): %v", b.m.BackupID, f.Path, c, err)
			}
			if !bytes.Equal(data, b.chunks[c]) {
				t.Fatalf("backup %s, %s: chunk %s: %d bytes differ from the %d saved", b.m.BackupID, f.Path, c, len(data), len(b.chunks[c]))
			}
			h.Write(data)
		}
		if f.Size > 0 && ObjectID(h.Sum(nil)) != f.Content {
			t.Fatalf("backup %s, %s: chunks do not hash to the content", b.m.BackupID, f.Path)
		}
	}
}

func listKeys(t *testing.T, ctx context.Context, be backend.Backend, prefix string) map[string]int64 {
	t.Helper()
	keys := map[string]int64{}
	if err := be.List(ctx, prefix, func(oi backend.ObjectInfo) error {
		keys[oi.Key] = oi.Size
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

func testCloudRepository(t *testing.T, srv *emulators.Server) {
	// Before the first Open (Azure's variables are read once per process).
	srv.Setenv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	begin := time.Now()
	phase := func(what string) {
		t.Logf("MEASURE %s: %s at %v", srv.URL[:strings.IndexByte(srv.URL, ':')], what, time.Since(begin).Round(time.Millisecond))
	}

	r, err := Init(ctx, srv.URL, InitOptions{Secret: password, Scrypt: cheapScrypt, KeyLabel: "cloud"})
	if err != nil {
		t.Fatalf("Init(%s): %v", srv.URL, err)
	}
	defer r.Close()
	if _, err := Init(ctx, srv.URL, InitOptions{Secret: password, Scrypt: cheapScrypt}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init: %v", err)
	}
	be, err := backend.Open(ctx, srv.URL) // the raw bucket, to look and to damage
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()

	// Backup A: 2,000 small files, a 9 MiB file (3 chunks) and two
	// single-chunk 4 MiB files: several data packs.
	rng := rand.New(rand.NewPCG(11, 12))
	mtime := time.Date(2026, 2, 3, 4, 5, 6, 789, time.UTC)
	a := newCloudBackup("20260203T040506.000001Z-cloud-a")
	var smallA []string
	for i := range 2000 {
		p := fmt.Sprintf("small/d%02d/f%04d.dat", i%40, i)
		a.cloudFile(p, randBytes(rng, 1+rng.IntN(2048)), mtime)
		smallA = append(smallA, p)
	}
	a.cloudFile("big/nine.bin", randBytes(rng, 9<<20), mtime)
	a.cloudFile("big/four-a.bin", randBytes(rng, ChunkSize), mtime)
	a.cloudFile("big/four-b.bin", randBytes(rng, ChunkSize), mtime)
	a.cloudFile("empty", nil, mtime)
	a.save(t, ctx, r)
	phase("backup A saved")

	// Backup B: shares 500 of A's small files, adds 100 small files and
	// 8 MiB of its own (in packs of its own: A's Flush closed A's packs).
	b := newCloudBackup("20260203T040506.000002Z-cloud-b")
	for _, f := range a.files[:500] {
		b.files = append(b.files, f)
		b.chunks[f.Chunks[0]] = a.chunks[f.Chunks[0]]
	}
	for i := range 100 {
		b.cloudFile(fmt.Sprintf("new/f%03d.dat", i), randBytes(rng, 1+rng.IntN(2048)), mtime)
	}
	b.cloudFile("big/eight.bin", randBytes(rng, 2*ChunkSize), mtime)
	b.save(t, ctx, r)
	phase("backup B saved")

	dataPacks := listKeys(t, ctx, be, "data/")
	if len(dataPacks) < 3 {
		t.Fatalf("%d data packs, want several: %v", len(dataPacks), dataPacks)
	}
	if n := len(listKeys(t, ctx, be, "meta/")); n < 2 {
		t.Fatalf("%d meta packs, want one per backup at least", n)
	}
	if n := len(listKeys(t, ctx, be, "index/")); n < 2 {
		t.Fatalf("%d index segments, want one per Flush at least", n)
	}

	// A second handle sees everything.
	r2, err := Open(ctx, srv.URL, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if ids, err := r2.ListBackupIDs(ctx); err != nil || !slices.Equal(ids, []string{a.m.BackupID, b.m.BackupID}) {
		t.Fatalf("ListBackupIDs: %v %v", ids, err)
	}
	a.check(t, ctx, r2)
	b.check(t, ctx, r2)
	phase(fmt.Sprintf("both backups reloaded (%d data packs)", len(dataPacks)))

	// Forget B and collect its garbage under an exclusive lock.
	if err := r2.DeleteManifest(ctx, b.m.BackupID); err != nil {
		t.Fatal(err)
	}
	if err := r2.Lock(ctx, "gc-cloud", LockExclusive, "cloud test"); err != nil {
		t.Fatal(err)
	}
	rep, err := r2.GC(ctx, GCOptions{LockID: "gc-cloud"})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if err := r2.Unlock(ctx, "gc-cloud"); err != nil {
		t.Fatal(err)
	}
	t.Logf("GC: %+v", rep)
	if rep.BytesFreed <= 0 || rep.PacksDeleted == 0 || rep.Snapshots != 1 || rep.DeadBlobs < 100+2 {
		t.Fatalf("GC freed too little: %+v", rep)
	}
	if n := len(listKeys(t, ctx, be, "locks/")); n != 0 {
		t.Fatalf("%d locks left after GC and Unlock", n)
	}
	if _, err := be.Get(ctx, "gc/plan"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("gc/plan after a finished GC: %v", err)
	}
	phase("GC done")

	// The kept backup loads through the first handle (its index predates
	// the GC), a fresh one and the collector's; B's own chunks are gone.
	a.check(t, ctx, r)
	r3, err := Open(ctx, srv.URL, OpenOptions{Secret: password})
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	a.check(t, ctx, r3)
	a.check(t, ctx, r2)
	gone := b.files[len(b.files)-1].Chunks[0]
	if _, err := r3.LoadBlob(ctx, gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a chunk only B referenced survived GC: %v", err)
	}

	vrep, err := r3.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(vrep.Problems) != 0 || vrep.Snapshots != 1 || vrep.PacksRead != vrep.Packs || vrep.Packs == 0 || vrep.BytesRead == 0 {
		t.Fatalf("Verify of a healthy repository: %+v", vrep)
	}
	phase(fmt.Sprintf("verified (%d packs, %d bytes read)", vrep.PacksRead, vrep.BytesRead))

	// Damage: overwrite one data pack through the backend with the same
	// bytes but one, flipped inside a chunk of the kept backup.
	victim := a.files[len(smallA)].Chunks[0] // the first chunk of big/nine.bin
	r3.mu.Lock()
	loc, ok := r3.idx.Lookup(victim)
	r3.mu.Unlock()
	if !ok {
		t.Fatalf("chunk %s not indexed", victim)
	}
	key := packKey(BlobType(loc.PackType), ObjectID(loc.Pack))
	data, err := be.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data[loc.Offset+loc.StoredLen/2] ^= 0x01
	if err := be.Put(ctx, key, data, false); err != nil {
		t.Fatalf("overwrite %s: %v", key, err)
	}
	if got, err := be.Get(ctx, key); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the emulator did not replace %s: %v", key, err)
	}

	r4, err := Open(ctx, srv.URL, OpenOptions{Secret: password}) // no cached ranges
	if err != nil {
		t.Fatal(err)
	}
	defer r4.Close()
	if _, err := r4.LoadBlob(ctx, victim); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LoadBlob of the damaged chunk: %v", err)
	}
	vrep, err = r4.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(vrep.Problems) == 0 {
		t.Fatalf("Verify missed a flipped byte in %s: %+v", key, vrep)
	}
	namesVictim := false
	for _, p := range vrep.Problems {
		if p.Kind != ProblemCorrupt || (p.Object != key && !strings.Contains(p.Detail, key)) {
			t.Errorf("problem not about the damaged pack %s: %+v", key, p)
		}
		if p.Object == victim.String() && slices.Equal(p.Backups, []string{a.m.BackupID}) {
			namesVictim = true
		}
	}
	if !namesVictim {
		t.Fatalf("Verify does not name chunk %s (in %s) as breaking backup %s: %+v", victim, key, a.m.BackupID, vrep.Problems)
	}
	phase("damage found")
}
