package storage

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// stageLogArchive stores chunks as one node's log files and returns the
// archive record (not yet committed).
func stageLogArchive(t *testing.T, r *Repository, node string, at time.Time, chunks [][]byte) *LogArchive {
	t.Helper()
	m := stageBackup(t, r, "unused", chunks)
	n := m.Nodes[0]
	n.NodeID = node
	return &LogArchive{FormatVersion: LogArchiveFormatVersion, ID: LogArchiveID(node, at), Plugin: "cassandra",
		CreatedAt: at, From: at.Add(-time.Minute), To: at, Node: n}
}

func TestLogArchiveRoundTripAndGCKeepsIt(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	at := time.Date(2026, 12, 5, 1, 2, 3, 4, time.UTC)
	own := [][]byte{[]byte("segment one"), []byte("segment two")}
	a := stageLogArchive(t, r, "n1", at, own)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Lock(ctx, "ship", LockShared, "test"); err != nil {
		t.Fatal(err)
	}
	if err := r.PutLogArchiveLocked(ctx, "ship", a); err != nil {
		t.Fatal(err)
	}
	if err := r.PutLogArchiveLocked(ctx, "ship", a); err != nil {
		t.Fatalf("a repeat with the same content: %v", err)
	}
	b := *a
	b.To = at.Add(time.Second)
	if err := r.PutLogArchiveLocked(ctx, "ship", &b); !errors.Is(err, ErrExists) {
		t.Fatalf("other content under the same id: %v, want ErrExists", err)
	}
	if err := r.Unlock(ctx, "ship"); err != nil {
		t.Fatal(err)
	}
	if ids, err := r.ListBackupIDs(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("a log archive listed as a backup: %v %v", ids, err)
	}
	ids, err := r.ListLogArchiveIDs(ctx)
	if err != nil || !slices.Equal(ids, []string{a.ID}) {
		t.Fatalf("log archives %v %v, want [%s]", ids, err, a.ID)
	}
	got, err := r.GetLogArchive(ctx, a.ID)
	if err != nil || !got.To.Equal(a.To) || got.Node.NodeID != "n1" {
		t.Fatalf("read back %+v %v", got, err)
	}
	if _, err := r.GetManifest(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a log archive read as a snapshot: %v", err)
	}

	// Verify checks it, and names it in the problems of its blobs.
	rep0, err := openRepo(t, url).Verify(ctx, VerifyOptions{ReadData: true, NoDamageRecords: true})
	if err != nil || rep0.LogArchives != 1 || rep0.Snapshots != 0 || len(rep0.Problems) != 0 {
		t.Fatalf("verify: %+v %v", rep0, err)
	}

	// GC keeps what the archive references, and drops it once deleted.
	rep := gcLocked(t, openRepo(t, url), GCOptions{})
	if rep.LiveBlobs != 3 || rep.PacksDeleted != 0 {
		t.Fatalf("gc with the archive: %+v", rep)
	}
	r2 := openRepo(t, url)
	files, err := r2.LoadFiles(ctx, &got.Node)
	if err != nil || len(files) != 2 {
		t.Fatalf("files %v %v", files, err)
	}
	for _, f := range files {
		if _, err := r2.LoadBlob(ctx, f.Chunks[0]); err != nil {
			t.Fatalf("after gc: %v", err)
		}
	}
	files0 := repoFiles(t, url)
	var packs []string
	for k := range files0 {
		if strings.HasPrefix(k, "data/") {
			packs = append(packs, k)
		}
	}
	if len(packs) != 1 {
		t.Fatalf("data packs %v", packs)
	}
	saved, err := r2.be.Get(ctx, packs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.be.Delete(ctx, packs[0]); err != nil {
		t.Fatal(err)
	}
	rep1, err := openRepo(t, url).Verify(ctx, VerifyOptions{NoDamageRecords: true})
	if err != nil || len(rep1.Problems) != 1 || !slices.Equal(rep1.Problems[0].Backups, []string{"logs/" + a.ID}) {
		t.Fatalf("verify with the archive's pack gone: %+v %v", rep1, err)
	}
	if err := r2.be.Put(ctx, packs[0], saved, false); err != nil {
		t.Fatal(err)
	}
	if err := r2.DeleteLogArchive(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	rep = gcLocked(t, r2, GCOptions{})
	if rep.LiveBlobs != 0 || rep.PacksDeleted == 0 {
		t.Fatalf("gc without the archive: %+v", rep)
	}
}

func TestLogArchiveRefusesHostileRecords(t *testing.T) {
	ctx := context.Background()
	_, r := newFileRepo(t)
	at := time.Date(2026, 12, 5, 1, 2, 3, 4, time.UTC)
	a := stageLogArchive(t, r, "n1", at, [][]byte{[]byte("x")})
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Lock(ctx, "ship", LockShared, "test"); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*LogArchive){
		"another node's id": func(a *LogArchive) { a.Node.NodeID = "n2" },
		"no plugin":         func(a *LogArchive) { a.Plugin = "" },
		"range backwards":   func(a *LogArchive) { a.From = a.To.Add(time.Hour) },
		"bad id":            func(a *LogArchive) { a.ID = "../x-n1" },
		"future format":     func(a *LogArchive) { a.FormatVersion = 2 },
	} {
		c := *a
		mutate(&c)
		if err := r.PutLogArchiveLocked(ctx, "ship", &c); !errors.Is(err, ErrInvalidManifest) {
			t.Errorf("%s: %v, want ErrInvalidManifest", name, err)
		}
	}
	// A snapshot object put under logs/ does not pass as a log archive.
	m := stageBackup(t, r, a.ID, [][]byte{[]byte("y")})
	commit(t, r, m)
	data, err := r.be.Get(ctx, snapshotKey(a.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.be.Put(ctx, logArchiveKey(a.ID), data, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetLogArchive(ctx, a.ID); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a snapshot read as a log archive: %v, want ErrCorrupt", err)
	}
}

func TestLogArchivesToDelete(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	arch := func(id string, plugin string, to time.Duration) LogArchive {
		return LogArchive{ID: id, Plugin: plugin, To: t0.Add(to)}
	}
	archives := []LogArchive{
		arch("a-old", "cassandra", -3*time.Hour),
		arch("b-edge", "cassandra", -59*time.Minute), // within the margin of the oldest kept backup
		arch("c-new", "cassandra", time.Hour),
		arch("d-other", "m3db", -10*time.Hour), // no kept m3db backup: kept
	}
	kept := []Summary{{BackupID: "k2", Plugin: "cassandra", StartedAt: t0.Add(time.Hour)}, {BackupID: "k1", Plugin: "cassandra", StartedAt: t0}}
	if got := LogArchivesToDelete(archives, kept, time.Hour); !slices.Equal(got, []string{"a-old"}) {
		t.Fatalf("to delete %v, want [a-old]", got)
	}
	if got := LogArchivesToDelete(archives, nil, time.Hour); len(got) != 0 {
		t.Fatalf("with no kept backup, deleted %v", got)
	}
}
