package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
)

func TestGCDeletesDeadPacksAndKeepsLive(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	_, own := threeBackups(t, r)
	before := repoFiles(t, url)
	if err := r.DeleteManifest(ctx, "b2"); err != nil {
		t.Fatal(err)
	}
	var phases []string
	rep := gcLocked(t, r, GCOptions{Progress: func(p GCProgress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	}})
	t.Logf("report %+v phases %v", rep, phases)
	if rep.Snapshots != 2 || rep.PacksDeleted != 2 || rep.PacksRepacked != 0 || rep.BytesFreed <= 0 || rep.DeadBlobs != 21 ||
		rep.LiveBlobs != 62 || rep.SegmentsBefore != 3 || rep.SegmentsAfter != 1 || rep.Resumed {
		t.Fatalf("report %+v", rep)
	}
	after := repoFiles(t, url)
	if n := len(keysWith(after, "data/")) + len(keysWith(after, "meta/")); n != len(keysWith(before, "data/"))+len(keysWith(before, "meta/"))-2 {
		t.Fatalf("%d packs after", n)
	}
	if len(keysWith(after, "gc/")) != 0 {
		t.Fatalf("gc/ left behind: %v", keysWith(after, "gc/"))
	}
	// The dead blobs are gone; the live ones load, through this handle and a new one.
	for _, c := range own[1] {
		if r.HasBlob(HashBytes(c)) {
			t.Fatal("a blob of the deleted backup is still indexed")
		}
	}
	r2 := openRepo(t, url)
	for _, h := range []*Repository{r, r2} {
		checkBackup(t, h, "b1")
		checkBackup(t, h, "b3")
	}
	cleanVerify(t, r2)
	// A second GC finds nothing to do.
	rep = gcLocked(t, r2, GCOptions{})
	if rep.PacksDeleted+rep.PacksRepacked+rep.UnindexedPacksDeleted != 0 || rep.DeadBlobs != 0 || rep.SegmentsAfter != 1 {
		t.Fatalf("second gc %+v", rep)
	}
}

func TestGCRepacksPartlyDeadPack(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	rng := rand.New(rand.NewPCG(1, 2))
	x := stageBackup(t, r, "x", randChunks(rng, 30, 2000))
	y := stageBackup(t, r, "y", randChunks(rng, 30, 2000))
	commit(t, r, x, y) // one data pack and one meta pack hold both
	before := repoFiles(t, url)
	oldPacks := append(keysWith(before, "data/"), keysWith(before, "meta/")...)
	if len(oldPacks) != 2 {
		t.Fatalf("packs %v", oldPacks)
	}
	m, _ := r.GetManifestWithFiles(ctx, "y")
	oldLoc, _ := r.idx.Lookup(m.Nodes[0].Files[0].Content)
	if err := r.DeleteManifest(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	rep := gcLocked(t, r, GCOptions{})
	t.Logf("report %+v", rep)
	if rep.PacksRepacked != 2 || rep.PacksDeleted != 0 || rep.BytesFreed <= 0 {
		t.Fatalf("report %+v", rep)
	}
	after := repoFiles(t, url)
	for _, k := range oldPacks {
		if _, ok := after[k]; ok {
			t.Fatalf("repacked pack %s still there", k)
		}
	}
	r2 := openRepo(t, url)
	newLoc, ok := r2.idx.Lookup(m.Nodes[0].Files[0].Content)
	if !ok || newLoc.Pack == oldLoc.Pack {
		t.Fatalf("blob not moved: %v", ok)
	}
	checkBackup(t, r2, "y")
	checkBackup(t, r, "y")
	cleanVerify(t, r2)
}

func TestGCUnindexedPacksGrace(t *testing.T) {
	url, r := newFileRepo(t)
	_, _ = threeBackups(t, r)
	// Two packs no index lists (as a crashed writer leaves them).
	keys := []string{putOrphanPack(t, r, []byte("orphan 0")), putOrphanPack(t, r, []byte("orphan 1"))}
	backdate(t, url, keys[0], 2*time.Hour)
	backdate(t, url, keys[1], 30*time.Minute)
	rep := gcLocked(t, r, GCOptions{})
	if rep.UnindexedPacksDeleted != 1 || rep.PacksDeleted != 0 {
		t.Fatalf("report %+v", rep)
	}
	after := repoFiles(t, url)
	if _, ok := after[keys[0]]; ok {
		t.Fatal("old unindexed pack kept")
	}
	if _, ok := after[keys[1]]; !ok {
		t.Fatal("young unindexed pack deleted")
	}
	rep = gcLocked(t, r, GCOptions{UnindexedGrace: 10 * time.Minute})
	if rep.UnindexedPacksDeleted != 1 {
		t.Fatalf("shorter grace: %+v", rep)
	}
	for _, id := range []string{"b1", "b2", "b3"} {
		checkBackup(t, r, id)
	}
}

func TestGCDryRunChangesNothing(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	threeBackups(t, r)
	r.DeleteManifest(ctx, "b2")
	// And a partly dead pack.
	rng := rand.New(rand.NewPCG(3, 3))
	x, y := stageBackup(t, r, "x", randChunks(rng, 10, 2000)), stageBackup(t, r, "y", randChunks(rng, 10, 2000))
	commit(t, r, x, y)
	r.DeleteManifest(ctx, "x")
	if err := r.Lock(ctx, "gc", LockExclusive, "dry"); err != nil {
		t.Fatal(err)
	}
	before := repoFiles(t, url)
	rep, err := r.GC(ctx, GCOptions{DryRun: true, LockID: "gc"})
	if err != nil {
		t.Fatal(err)
	}
	after := repoFiles(t, url)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("dry run changed the repository:\n%v\n%v", before, after)
	}
	real, err := r.GC(ctx, GCOptions{LockID: "gc"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dry %+v\nreal %+v", rep, real)
	if rep.PacksDeleted != real.PacksDeleted || rep.PacksRepacked != real.PacksRepacked || rep.DeadBlobs != real.DeadBlobs ||
		rep.SegmentsAfter != real.SegmentsAfter || rep.BytesFreed <= 0 {
		t.Fatalf("dry run report differs from the real one:\n%+v\n%+v", rep, real)
	}
}

func TestGCResumesAfterCrash(t *testing.T) {
	for _, rate := range []float64{1, 0.3} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			ctx := context.Background()
			url, r := newFileRepo(t)
			threeBackups(t, r)
			rng := rand.New(rand.NewPCG(4, 4))
			x, y := stageBackup(t, r, "x", randChunks(rng, 10, 2000)), stageBackup(t, r, "y", randChunks(rng, 10, 2000))
			commit(t, r, x, y)
			r.DeleteManifest(ctx, "x")
			r.DeleteManifest(ctx, "b2")

			base, err := backend.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			faulty := backend.NewFaulty(base, 11)
			faulty.SetErrorRate(backend.OpDelete, rate, errors.New("injected: power cut"))
			rf, err := Open(ctx, url, OpenOptions{Secret: password, Backend: faulty, Retry: backend.RetryPolicy{Attempts: 1}})
			if err != nil {
				t.Fatal(err)
			}
			defer rf.Close()
			if err := rf.Lock(ctx, "gc", LockExclusive, "doomed gc"); err != nil {
				t.Fatal(err)
			}
			if _, err := rf.GC(ctx, GCOptions{LockID: "gc"}); err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("gc through failing deletes: %v", err)
			}
			files := repoFiles(t, url)
			if _, ok := files[gcPlanKey]; !ok {
				t.Fatal("no plan left by the interrupted gc")
			}
			// Meanwhile a writer's view (SyncIndex) already hides what the
			// plan condemns, and the live backups read fine.
			w := openRepo(t, url)
			if err := w.SyncIndex(ctx); err != nil {
				t.Fatal(err)
			}
			for _, c := range x.Nodes[0].Tree {
				if w.HasBlob(c) {
					t.Fatal("a blob condemned by the plan is visible to writers")
				}
			}
			for _, id := range []string{"b1", "b3", "y"} {
				checkBackup(t, w, id)
			}
			// The next gc (the same lock id, taken over) finishes the job.
			r2 := openRepo(t, url)
			if err := r2.Lock(ctx, "gc", LockExclusive, "next gc"); err != nil {
				t.Fatal(err)
			}
			rep, err := r2.GC(ctx, GCOptions{LockID: "gc"})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Resumed {
				t.Fatalf("not resumed: %+v", rep)
			}
			files = repoFiles(t, url)
			if len(keysWith(files, "gc/")) != 0 {
				t.Fatalf("left in gc/: %v", keysWith(files, "gc/"))
			}
			r3 := openRepo(t, url)
			for _, id := range []string{"b1", "b3", "y"} {
				checkBackup(t, r3, id)
				checkBackup(t, w, id) // a handle that synced before the resume
			}
			cleanVerify(t, r3)
			rep = gcLocked(t, r3, GCOptions{})
			if rep.PacksDeleted+rep.PacksRepacked+rep.DeadBlobs != 0 {
				t.Fatalf("work left after the resumed gc: %+v", rep)
			}
		})
	}
}

func TestGCRefusesOnUnreadableSnapshot(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	threeBackups(t, r)
	r.DeleteManifest(ctx, "b2")
	p := filepath.Join(strings.TrimPrefix(url, "file://"), "snapshots", "b3")
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o644)
	before := repoFiles(t, url)
	r.Lock(ctx, "gc", LockExclusive, "")
	if _, err := r.GC(ctx, GCOptions{LockID: "gc"}); err == nil || !strings.Contains(err.Error(), "b3") {
		t.Fatalf("gc with an unreadable snapshot: %v", err)
	}
	after := repoFiles(t, url)
	delete(before, "locks/gc")
	delete(after, "locks/gc")
	if fmt.Sprint(keysWith(before, "")) != fmt.Sprint(keysWith(after, "")) {
		t.Fatal("gc changed the repository although it refused")
	}
	// Likewise when a file list's blob is gone from the index.
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o644)
	for _, k := range keysWith(after, "index/") {
		os.Remove(filepath.Join(strings.TrimPrefix(url, "file://"), k))
	}
	if _, err := r.GC(ctx, GCOptions{LockID: "gc"}); err == nil {
		t.Fatal("gc without an index deleted on incomplete information")
	}
	if len(keysWith(repoFiles(t, url), "data/")) != len(keysWith(before, "data/")) {
		t.Fatal("packs deleted")
	}
}

func TestGCNeedsItsExclusiveLock(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	threeBackups(t, r)
	if _, err := r.GC(ctx, GCOptions{LockID: "gc"}); !errors.Is(err, ErrLockLost) {
		t.Fatalf("gc without its lock: %v", err)
	}
	r.Lock(ctx, "op-1", LockShared, "")
	if _, err := r.GC(ctx, GCOptions{LockID: "op-1"}); err == nil {
		t.Fatal("gc under a shared lock")
	}
	r.Unlock(ctx, "op-1")
	r.Lock(ctx, "gc", LockExclusive, "")
	backdate(t, url, "locks/gc", LockStaleAfter)
	if _, err := r.GC(ctx, GCOptions{LockID: "gc"}); !errors.Is(err, ErrLockLost) {
		t.Fatalf("gc under a lapsed lock: %v", err)
	}
}

// raceTestLocking switches the lock protocol of TestGCConcurrentWriters
// off, to check by hand that the test catches the race (it must fail).
var raceTestLocking = true

// TestGCConcurrentWriters runs backups and garbage collections at the same
// time through independent handles on one repository: the backups delete
// their older snapshots and immediately deduplicate against the blobs those
// referenced (now dead), which is exactly the race that loses data unless
// the lock protocol is followed.
func TestGCConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	url, _ := newFileRepo(t)
	h1, h2 := openRepo(t, url), openRepo(t, url)
	rng := rand.New(rand.NewPCG(9, 9))
	var rngMu sync.Mutex
	newChunks := func(n int) [][]byte {
		rngMu.Lock()
		defer rngMu.Unlock()
		return randChunks(rng, n, 1500)
	}
	jitter := func() {
		rngMu.Lock()
		d := time.Duration(rng.IntN(3000)) * time.Microsecond
		rngMu.Unlock()
		time.Sleep(d)
	}
	lock := func(r *Repository, id string, kind LockKind) {
		if !raceTestLocking {
			return
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := r.Lock(ctx, id, kind, "race test")
			if err == nil {
				return
			}
			if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
				t.Error(err)
				return
			}
			jitter()
		}
	}
	unlock := func(r *Repository, id string) {
		if raceTestLocking {
			r.Unlock(ctx, id)
		}
	}

	committed := map[string][][]byte{} // backup id → its chunks
	var order []string
	shared := newChunks(5)
	seq := 0
	var gcs, repacked, deletedPacks int
	start := time.Now()
	for iter := range 30 {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // backups
			defer wg.Done()
			for range 3 {
				// Delete the oldest backup, then back up its content again:
				// its blobs are dead until this snapshot commits.
				var reuse [][]byte
				if len(order) > 1 {
					old := order[0]
					if err := h1.DeleteManifest(ctx, old); err != nil {
						t.Error(err)
						return
					}
					for i, c := range committed[old] {
						if i%2 == 0 { // the other half dies: partly dead packs
							reuse = append(reuse, c)
						}
					}
					delete(committed, old)
					order = order[1:]
				}
				seq++
				id := fmt.Sprintf("b%04d", seq)
				chunks := append(append(append([][]byte(nil), reuse...), shared...), newChunks(6)...)
				chunks = dedupChunks(chunks)
				lock(h1, "op-"+id, LockShared)
				if err := h1.SyncIndex(ctx); err != nil {
					t.Error(err)
					return
				}
				m := stageBackup(t, h1, id, chunks)
				if err := h1.Flush(ctx); err != nil {
					t.Error(err)
					return
				}
				put := h1.PutManifest
				if raceTestLocking {
					put = func(ctx context.Context, m *Manifest) error { return h1.PutManifestLocked(ctx, "op-"+id, m) }
				}
				if err := put(ctx, m); err != nil {
					t.Error(err)
					return
				}
				unlock(h1, "op-"+id)
				committed[id] = chunks
				order = append(order, id)
				jitter()
			}
		}()
		go func() { // garbage collection
			defer wg.Done()
			for range 2 {
				jitter()
				lock(h2, "gc", LockExclusive)
				rep, err := h2.GC(ctx, GCOptions{LockID: map[bool]string{true: "gc"}[raceTestLocking], MaxUnusedFraction: -1})
				unlock(h2, "gc")
				if err != nil {
					t.Errorf("iteration %d: gc: %v", iter, err)
					return
				}
				gcs++
				repacked += rep.PacksRepacked
				deletedPacks += rep.PacksDeleted
			}
		}()
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("30 rounds in %v: %d backups, %d gcs deleted %d packs and repacked %d", time.Since(start).Round(time.Millisecond), seq, gcs, deletedPacks, repacked)
	if deletedPacks == 0 || repacked == 0 {
		t.Fatal("the test exercised no deletion or no repack")
	}
	r := openRepo(t, url)
	ids, _ := r.ListBackupIDs(ctx)
	if len(ids) != len(committed) {
		t.Fatalf("%d snapshots, %d committed", len(ids), len(committed))
	}
	for id, chunks := range committed {
		checkBackup(t, r, id)
		m, _ := r.GetManifestWithFiles(ctx, id)
		if len(m.Nodes[0].Files) != len(chunks) {
			t.Fatalf("backup %s has %d files, want %d", id, len(m.Nodes[0].Files), len(chunks))
		}
	}
	cleanVerify(t, r)
}

// BenchmarkGC: 200 snapshots over 100,000 blobs in mem://; each iteration
// deletes one snapshot and collects.
func BenchmarkGC(b *testing.B) {
	ctx := context.Background()
	r, err := Init(ctx, "mem://", InitOptions{Secret: password, Scrypt: cheapScrypt})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	// CRAYFISH_GC_BENCH=SNAPSHOTSxBLOBS scales it (e.g. 1000x1000000,
	// the size docs/performance.md reports); the default stays quick.
	nSnapshots, nBlobs := 200, 100_000
	if v := os.Getenv("CRAYFISH_GC_BENCH"); v != "" {
		if _, err := fmt.Sscanf(v, "%dx%d", &nSnapshots, &nBlobs); err != nil {
			b.Fatalf("CRAYFISH_GC_BENCH=%q: want SNAPSHOTSxBLOBS", v)
		}
	}
	const (
		perFile = 10
		window  = 5_000 // blobs per snapshot
	)
	ids := make([]ObjectID, nBlobs)
	buf := make([]byte, 64)
	for i := range ids {
		copy(buf, fmt.Sprintf("blob %d ", i))
		buf[60], buf[61], buf[62], buf[63] = byte(i), byte(i>>8), byte(i>>16), 0xa5
		ids[i] = HashBytes(buf)
		if _, err := r.SaveBlob(ctx, BlobData, ids[i], bytes.Clone(buf)); err != nil {
			b.Fatal(err)
		}
		// Many packs, so the collection has packs to delete and repack.
		if i%5000 == 4999 {
			if err := r.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var ms []*Manifest
	for s := range nSnapshots {
		var files []FileEntry
		base := s * (nBlobs / nSnapshots)
		for f := 0; f < window/perFile; f++ {
			chunks := make([]ObjectID, perFile)
			for c := range chunks {
				chunks[c] = ids[(base+f*perFile+c)%nBlobs]
			}
			files = append(files, FileEntry{Path: fmt.Sprintf("f%05d", f), Type: TypeFile, Size: (perFile-1)*ChunkSize + 1,
				Mode: 0o644, MTime: t0, Content: chunks[0], Chunks: chunks})
		}
		tree, err := r.SaveFiles(ctx, files)
		if err != nil {
			b.Fatal(err)
		}
		ms = append(ms, &Manifest{FormatVersion: ManifestFormatVersion, BackupID: fmt.Sprintf("s%04d", s), Plugin: "files",
			StartedAt: t0, FinishedAt: t0, Nodes: []NodeManifest{{NodeID: "n1", Entries: int64(len(files)), Tree: tree}}})
	}
	commit(b, r, ms...)
	var blobs, i int
	for b.Loop() {
		b.StopTimer()
		if i < nSnapshots/2 {
			r.DeleteManifest(ctx, fmt.Sprintf("s%04d", i))
		}
		i++
		b.StartTimer()
		rep, err := r.GC(ctx, GCOptions{})
		if err != nil {
			b.Fatal(err)
		}
		blobs += rep.LiveBlobs + rep.DeadBlobs
	}
	b.ReportMetric(float64(blobs)/b.Elapsed().Seconds(), "blobs/s")
}

// TestStaleWriterCannotCommit: a writer whose lock lapsed while it had
// deduplicated against dead blobs, during which a GC ran and deleted
// them, cannot commit.
func TestStaleWriterCannotCommit(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	_, own := threeBackups(t, r)
	w, g := openRepo(t, url), openRepo(t, url)
	if err := w.DeleteManifest(ctx, "b2"); err != nil {
		t.Fatal(err)
	}
	shortLocks(t, 300*time.Millisecond)
	if err := w.Lock(ctx, "op-w", LockShared, "writer"); err != nil {
		t.Fatal(err)
	}
	if err := w.SyncIndex(ctx); err != nil {
		t.Fatal(err)
	}
	m := stageBackup(t, w, "late", own[1]) // deduplicated: all of b2's blobs
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // the writer stalls; its lock goes stale
	if err := g.Lock(ctx, "gc", LockExclusive, "gc"); err != nil {
		t.Fatal(err)
	}
	rep, err := g.GC(ctx, GCOptions{LockID: "gc"})
	if err != nil || rep.PacksDeleted == 0 {
		t.Fatalf("gc: %+v %v", rep, err)
	}
	if err := w.PutManifestLocked(ctx, "op-w", m); !errors.Is(err, ErrLockLost) {
		t.Fatalf("a stale writer committed: %v", err)
	}
}

// TestStaleGCDeletesNothing: a GC whose lock lapsed (a writer took over
// meanwhile) stops before writing its plan.
func TestStaleGCDeletesNothing(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	threeBackups(t, r)
	r.DeleteManifest(ctx, "b2")
	w, g := openRepo(t, url), openRepo(t, url)
	shortLocks(t, 300*time.Millisecond)
	if err := g.Lock(ctx, "gc", LockExclusive, "gc"); err != nil {
		t.Fatal(err)
	}
	before := repoFiles(t, url)
	var werr error
	_, err := g.GC(ctx, GCOptions{LockID: "gc", Progress: func(p GCProgress) {
		if p.Phase == "classify" && werr == nil {
			time.Sleep(400 * time.Millisecond) // gc stalls; its lock goes stale
			werr = w.Lock(ctx, "op-w", LockShared, "writer")
		}
	}})
	if werr != nil {
		t.Fatalf("writer over a stale gc lock: %v", werr)
	}
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("gc under a lapsed lock: %v", err)
	}
	after := repoFiles(t, url)
	for k := range before {
		if _, ok := after[k]; !ok && !strings.HasPrefix(k, "locks/") {
			t.Fatalf("%s deleted", k)
		}
	}
	if _, ok := after[gcPlanKey]; ok {
		t.Fatal("plan written")
	}
	checkBackup(t, w, "b1")
}
