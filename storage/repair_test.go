package storage

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

func TestDamagedBlobIsAbsentUntilStoredAgain(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	chunks := randChunks(rand.New(rand.NewPCG(1, 2)), 8, 3000)
	commit(t, r, stageBackup(t, r, "b1", chunks))
	victim := HashBytes(chunks[3])
	flipInPack(t, url, r, victim)

	rep := problemsOf(t, r, VerifyOptions{ReadData: true})
	if len(rep.Problems) != 1 || rep.Problems[0].Object != victim.String() || rep.Problems[0].Kind != ProblemCorrupt {
		t.Fatalf("problems %+v", rep.Problems)
	}
	recs := keysWith(repoFiles(t, url), damagedPrefix)
	if len(recs) != 1 || strings.Contains(recs[0], victim.String()) {
		t.Fatalf("damage records %v: want one, naming no blob id", recs)
	}
	// A record renamed to condemn another copy does not authenticate.
	root := strings.TrimPrefix(url, "file://")
	forged := recs[0][:len(recs[0])-8] + "00000010"
	if b, err := os.ReadFile(filepath.Join(root, recs[0])); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(filepath.Join(root, forged), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ListDamaged(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ListDamaged with a renamed record: %v", err)
	}
	os.Remove(filepath.Join(root, forged))
	if r.HasBlob(victim) || !r.HasBlob(HashBytes(chunks[2])) {
		t.Fatal("HasBlob: the damaged blob counts as present, or a good one as absent")
	}
	// The record survives a restart: a new handle (another process) does
	// not deduplicate against the damaged copy either.
	r2 := openRepo(t, url)
	ds, err := r2.ListDamaged(ctx)
	if err != nil || len(ds) != 1 || ds[0].Blob != victim || ds[0].Superseded {
		t.Fatalf("ListDamaged %+v, %v", ds, err)
	}
	if r2.HasBlob(victim) {
		t.Fatal("a fresh handle counts the damaged blob as present")
	}
	// Without reading data verify still reports it (from the record).
	if rep := problemsOf(t, r2, VerifyOptions{}); len(rep.Problems) != 1 || rep.Problems[0].Kind != ProblemDamaged ||
		!slices.Equal(rep.Problems[0].Backups, []string{"b1"}) {
		t.Fatalf("problems %+v", rep.Problems)
	}
	// The next backup of the same content stores the blob again.
	n, err := r2.SaveBlob(ctx, BlobData, victim, chunks[3])
	if err != nil || n == 0 {
		t.Fatalf("SaveBlob of the damaged content: %d bytes, %v (want it stored again)", n, err)
	}
	commit(t, r2, stageBackup(t, r2, "b2", chunks))
	if !r2.HasBlob(victim) {
		t.Fatal("HasBlob false after a good copy was stored")
	}
	// A fresh handle prefers the new copy whatever the segment order;
	// b1 reads again and verify passes.
	r3 := openRepo(t, url)
	if b, err := r3.LoadBlob(ctx, victim); err != nil || !bytes.Equal(b, chunks[3]) {
		t.Fatalf("LoadBlob after re-save: %v", err)
	}
	checkBackup(t, r3, "b1")
	cleanVerify(t, r3)
	ds, err = r3.ListDamaged(ctx)
	if err != nil || len(ds) != 1 || !ds[0].Superseded {
		t.Fatalf("ListDamaged after re-save %+v, %v", ds, err)
	}
	// gc does not see the superseded copy (the index holds one location
	// per blob); repair packs moves the pack's good blobs and drops it
	// with the record.
	gcLocked(t, r3, GCOptions{MaxUnusedFraction: -1})
	if rep := repairLocked(t, r3, RepairPacks, RepairOptions{}); rep.Packs.BlobsSalvaged != 7 || rep.Packs.BlobsSuperseded != 1 || len(rep.Packs.BlobsLost) != 0 {
		t.Fatalf("repair packs: %+v", rep.Packs)
	}
	if recs := keysWith(repoFiles(t, url), damagedPrefix); len(recs) != 0 {
		t.Fatalf("damage records after gc dropped the pack: %v", recs)
	}
	checkBackup(t, r3, "b1")
	cleanVerify(t, r3)
}

func TestLoadBlobRecordsDamage(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	chunks := randChunks(rand.New(rand.NewPCG(3, 4)), 4, 3000)
	commit(t, r, stageBackup(t, r, "b1", chunks))
	victim := HashBytes(chunks[0])
	flipInPack(t, url, r, victim)
	r2 := openRepo(t, url) // no cached ranges
	if _, err := r2.LoadBlob(ctx, victim); err == nil {
		t.Fatal("LoadBlob of a corrupt blob succeeded")
	}
	if openRepo(t, url).HasBlob(victim) {
		t.Fatal("a failed read left no damage record")
	}
}

func TestRepairIndexRebuildsFromPacks(t *testing.T) {
	ctx := context.Background()
	url, r, _ := twoBackups(t)
	want := map[ObjectID]string{}
	for id, loc := range r.idx.All() {
		want[id] = ObjectID(loc.Pack).String()
	}
	root := strings.TrimPrefix(url, "file://")
	for _, k := range keysWith(repoFiles(t, url), indexPrefix) {
		if err := os.Remove(filepath.Join(root, k)); err != nil {
			t.Fatal(err)
		}
	}
	r2 := openRepo(t, url)
	if _, err := r2.GetManifestWithFiles(ctx, "b1"); err == nil {
		t.Fatal("b1 loads without an index")
	}
	before := repoFiles(t, url)
	dry := repairLocked(t, r2, RepairIndex, RepairOptions{DryRun: true})
	sameListing(t, before, repoFiles(t, url))
	if dry.Index.Blobs != len(want) || dry.Index.BlobsAdded != len(want) {
		t.Fatalf("dry run %+v, want %d blobs", dry.Index, len(want))
	}
	rep := repairLocked(t, r2, RepairIndex, RepairOptions{})
	if rep.Index.Blobs != len(want) || rep.Index.Packs != 4 || rep.Index.SegmentsAfter == 0 || len(rep.Index.UnreadablePacks) != 0 {
		t.Fatalf("report %+v", rep.Index)
	}
	r3 := openRepo(t, url)
	got := map[ObjectID]string{}
	for id, loc := range r3.idx.All() {
		got[id] = ObjectID(loc.Pack).String()
	}
	if !maps.Equal(got, want) {
		t.Fatalf("rebuilt index differs: %d blobs, want %d", len(got), len(want))
	}
	checkBackup(t, r3, "b1")
	checkBackup(t, r3, "b2")
	cleanVerify(t, r3)
}

func TestRepairPacksAndSnapshots(t *testing.T) {
	ctx := context.Background()
	url, r, files := twoBackups(t)
	m, err := r.GetManifestWithFiles(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	victim := m.Nodes[0].Files[4].Chunks[0]
	key := flipInPack(t, url, r, victim)
	if key != only(files["b1"], "data/") {
		t.Fatalf("victim in %s", key)
	}
	problemsOf(t, r, VerifyOptions{ReadData: true}) // records the damage

	before := repoFiles(t, url)
	dry := repairLocked(t, r, RepairPacks, RepairOptions{DryRun: true})
	sameListing(t, before, repoFiles(t, url))
	p := dry.Packs
	if !slices.Equal(p.DamagedPacks, []string{key}) || p.BlobsSalvaged != 9 || !slices.Equal(p.BlobsLost, []string{victim.String()}) {
		t.Fatalf("dry run %+v", p)
	}
	rep := repairLocked(t, r, RepairPacks, RepairOptions{})
	if rep.Packs.BlobsSalvaged != 9 || rep.Packs.PacksWritten != 1 || rep.Packs.RecordsRemoved != 1 {
		t.Fatalf("report %+v", rep.Packs)
	}
	after := repoFiles(t, url)
	if _, ok := after[key]; ok {
		t.Fatalf("damaged pack %s still there", key)
	}
	if len(keysWith(after, damagedPrefix)) != 0 {
		t.Fatalf("damage records left: %v", keysWith(after, damagedPrefix))
	}
	r2 := openRepo(t, url)
	if r2.HasBlob(victim) {
		t.Fatal("the lost blob is still indexed")
	}
	for i, f := range m.Nodes[0].Files {
		if i == 4 {
			continue
		}
		if _, err := r2.LoadBlob(ctx, f.Chunks[0]); err != nil {
			t.Fatalf("salvaged blob of %s: %v", f.Path, err)
		}
	}
	checkBackup(t, r2, "b2")

	// repair snapshots: b1 has lost content for good, b2 is whole.
	before = repoFiles(t, url)
	dry = repairLocked(t, r2, RepairSnapshots, RepairOptions{DryRun: true, Forget: true})
	sameListing(t, before, repoFiles(t, url))
	s := dry.Snapshots
	if s.Snapshots != 2 || len(s.Broken) != 1 || s.Broken[0].ID != "b1" || s.Broken[0].BadBlobs != 1 || len(s.Forgotten) != 0 {
		t.Fatalf("dry run %+v", s)
	}
	rep = repairLocked(t, r2, RepairSnapshots, RepairOptions{Forget: true})
	if !slices.Equal(rep.Snapshots.Forgotten, []string{"b1"}) {
		t.Fatalf("report %+v", rep.Snapshots)
	}
	ids, err := r2.ListBackupIDs(ctx)
	if err != nil || !slices.Equal(ids, []string{"b2"}) {
		t.Fatalf("backups %v, %v", ids, err)
	}
	cleanVerify(t, r2)
}

func TestRepairPacksDropsMissingPack(t *testing.T) {
	url, r, files := twoBackups(t)
	key := only(files["b1"], "data/")
	os.Remove(filepath.Join(strings.TrimPrefix(url, "file://"), key))
	rep := repairLocked(t, r, RepairPacks, RepairOptions{})
	if len(rep.Packs.MissingPacks) != 1 || len(rep.Packs.BlobsLost) != 10 {
		t.Fatalf("report %+v", rep.Packs)
	}
	snaps := repairLocked(t, openRepo(t, url), RepairSnapshots, RepairOptions{})
	if len(snaps.Snapshots.Broken) != 1 || snaps.Snapshots.Broken[0].ID != "b1" || snaps.Snapshots.Broken[0].BadBlobs != 10 {
		t.Fatalf("snapshots %+v", snaps.Snapshots)
	}
	checkBackup(t, openRepo(t, url), "b2")
}

// Whatever order two copies of a blob are added in, the undamaged one wins.
func TestAddLocationPrefersUndamaged(t *testing.T) {
	blob := HashBytes([]byte("x"))
	bad, good := HashBytes([]byte("bad pack")), HashBytes([]byte("good pack"))
	d := damageSet{storedCopy{bad, 16}: true}
	for _, order := range [][]ObjectID{{bad, good}, {good, bad}} {
		x := index.New()
		for _, p := range order {
			if err := addLocation(x, d, blob, index.Location{Pack: p, PackType: pack.BlobData, PackSize: 1000, Offset: 16, StoredLen: 10, RawLen: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if loc, _ := x.Lookup(blob); loc.Pack != good {
			t.Fatalf("order %v: located in %x", order, loc.Pack[:4])
		}
	}
}

// A handle that loaded the index before the content was stored again
// reads the new copy once the old one fails: the read records the damage,
// resyncs, and finds the good copy.
func TestLoadBlobFallsBackToGoodCopy(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	chunks := randChunks(rand.New(rand.NewPCG(9, 9)), 4, 3000)
	commit(t, r, stageBackup(t, r, "b1", chunks))
	victim := HashBytes(chunks[1])
	stale := openRepo(t, url) // knows only the damaged copy
	flipInPack(t, url, r, victim)
	problemsOf(t, r, VerifyOptions{ReadData: true})
	if n, err := r.SaveBlob(ctx, BlobData, victim, chunks[1]); err != nil || n == 0 {
		t.Fatalf("SaveBlob: %d, %v", n, err)
	}
	commit(t, r)
	b, err := stale.LoadBlob(ctx, victim)
	if err != nil || !bytes.Equal(b, chunks[1]) {
		t.Fatalf("LoadBlob through a stale handle: %v", err)
	}
}

// Finders on several handles record the same damage at once: one record,
// no error, every handle treats the copy as absent.
func TestMarkDamagedConcurrently(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	chunks := randChunks(rand.New(rand.NewPCG(5, 6)), 6, 2000)
	commit(t, r, stageBackup(t, r, "b1", chunks))
	ids := []ObjectID{HashBytes(chunks[0]), HashBytes(chunks[4])}
	handles := []*Repository{openRepo(t, url), openRepo(t, url), openRepo(t, url), openRepo(t, url)}
	errs := make(chan error, len(handles))
	for _, h := range handles {
		go func() { errs <- h.MarkDamaged(ctx, ids, "test") }()
	}
	for range handles {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ds, err := openRepo(t, url).ListDamaged(ctx)
	if err != nil || len(ds) != 2 {
		t.Fatalf("records %+v, %v", ds, err)
	}
	fresh := openRepo(t, url)
	if fresh.HasBlob(ids[0]) || fresh.HasBlob(ids[1]) || !fresh.HasBlob(HashBytes(chunks[2])) {
		t.Fatal("HasBlob does not follow the records")
	}
}

// A store that fails reads is not damage: repair packs and repair index
// stop and change nothing, instead of dropping the blobs they could not
// read.
func TestRepairStopsOnFailingStore(t *testing.T) {
	ctx := context.Background()
	url, r, files := twoBackups(t)
	m, err := r.GetManifestWithFiles(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.MarkDamaged(ctx, []ObjectID{m.Nodes[0].Files[0].Chunks[0]}, "test"); err != nil {
		t.Fatal(err)
	}
	rf, failing := openFailingPackReads(t, url)
	before := repoFiles(t, url)
	failing.on.Store(true)
	for _, kind := range []string{RepairPacks, RepairIndex} {
		if _, err := rf.Repair(ctx, kind, RepairOptions{LockID: "repair"}); !errors.Is(err, errInjectedRead) {
			t.Fatalf("repair %s through a failing store: %v", kind, err)
		}
	}
	failing.on.Store(false)
	sameListing(t, before, repoFiles(t, url))
	if _, ok := repoFiles(t, url)[only(files["b1"], "data/")]; !ok {
		t.Fatal("the pack is gone")
	}
}

func (f *failPackReads) Get(ctx context.Context, key string) ([]byte, error) {
	if f.on.Load() && (strings.HasPrefix(key, dataPrefix) || strings.HasPrefix(key, metaPrefix)) {
		return nil, errInjectedRead
	}
	return f.Backend.Get(ctx, key)
}

func (f *failPackReads) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if f.on.Load() && (strings.HasPrefix(key, dataPrefix) || strings.HasPrefix(key, metaPrefix)) {
		return nil, errInjectedRead
	}
	return f.Backend.GetRange(ctx, key, off, n)
}

// repair snapshots reads a recorded damaged copy again before it counts
// it as gone (a record may come from a transient failure), and stops,
// forgetting nothing, when the store fails reads.
func TestRepairSnapshotsNeverForgetsOnDoubt(t *testing.T) {
	ctx := context.Background()
	url, r, _ := twoBackups(t)
	m, err := r.GetManifestWithFiles(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	// A false record: the copy is fine.
	if err := r.MarkDamaged(ctx, []ObjectID{m.Nodes[0].Files[2].Chunks[0]}, "transient"); err != nil {
		t.Fatal(err)
	}
	rep := repairLocked(t, r, RepairSnapshots, RepairOptions{Forget: true})
	if len(rep.Snapshots.Broken) != 0 || len(rep.Snapshots.Forgotten) != 0 {
		t.Fatalf("a false damage record broke a backup: %+v", rep.Snapshots)
	}

	rf, failing := openFailingPackReads(t, url)
	failing.on.Store(true)
	if _, err := rf.Repair(ctx, RepairSnapshots, RepairOptions{Forget: true, LockID: "repair"}); !errors.Is(err, errInjectedRead) {
		t.Fatalf("repair snapshots through a failing store: %v", err)
	}
	failing.on.Store(false)
	if ids, err := r.ListBackupIDs(ctx); err != nil || len(ids) != 2 {
		t.Fatalf("backups %v, %v", ids, err)
	}
}

func (c *corruptOnce) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	b, err := c.Backend.GetRange(ctx, key, off, n)
	if err == nil && strings.HasPrefix(key, dataPrefix) && len(b) > 40 && c.done.CompareAndSwap(false, true) {
		b = bytes.Clone(b)
		b[40] ^= 1
	}
	return b, err
}

// Bytes damaged on the way are not damage of the stored copy: the read is
// repeated from the store, succeeds, and records nothing.
func TestLoadBlobTransientCorruptionRecordsNothing(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	chunks := randChunks(rand.New(rand.NewPCG(4, 4)), 1, 3000)
	commit(t, r, stageBackup(t, r, "b1", chunks))
	base, err := backend.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	cb := &corruptOnce{Backend: base}
	rc, err := Open(ctx, url, OpenOptions{Secret: password, Backend: cb})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := rc.LoadBlob(ctx, HashBytes(chunks[0])); err != nil || !bytes.Equal(b, chunks[0]) {
		t.Fatalf("LoadBlob: %v", err)
	}
	if !cb.done.Load() {
		t.Fatal("no read was corrupted")
	}
	if recs := keysWith(repoFiles(t, url), damagedPrefix); len(recs) != 0 {
		t.Fatalf("a transient corruption was recorded: %v", recs)
	}
}

var errInjectedRead = errors.New("injected: connection reset")

// failPackReads fails every read of a pack while on.
type failPackReads struct {
	backend.Backend
	on atomic.Bool
}

// corruptOnce flips a byte of the first pack read, as a bad link would.
type corruptOnce struct {
	backend.Backend
	done atomic.Bool
}

// openFailingPackReads opens url through a failPackReads (off for now)
// without retries, holding the exclusive lock "repair".
func openFailingPackReads(t *testing.T, url string) (*Repository, *failPackReads) {
	t.Helper()
	ctx := context.Background()
	base, err := backend.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	failing := &failPackReads{Backend: base}
	rf, err := Open(ctx, url, OpenOptions{Secret: password, Backend: failing, Retry: backend.RetryPolicy{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rf.Close() })
	if err := rf.Lock(ctx, "repair", LockExclusive, "test"); err != nil {
		t.Fatal(err)
	}
	return rf, failing
}
