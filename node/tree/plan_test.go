package tree

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestPlanRestoreCountsAndWritesNothing: a plan of a restore over a
// modified tree counts what Restore then does, and the plan itself
// leaves the target exactly as it was.
func TestPlanRestoreCountsAndWritesNothing(t *testing.T) {
	st := makeSourceTree(t)
	entries, store := backup(t, st.root)
	files, _ := countFiles(entries)
	ctx := context.Background()

	missing := filepath.Join(t.TempDir(), "not-yet")
	p, err := PlanRestore(ctx, missing, entries, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Create != files || p.Overwrite != 0 || p.Delete != 0 {
		t.Errorf("plan into a missing target: %+v, want %d creates", p, files)
	}
	if _, err := os.Lstat(missing); !os.IsNotExist(err) {
		t.Fatalf("planning created the target: %v", err)
	}

	target := t.TempDir()
	if _, err := Restore(ctx, target, entries, store, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	in := func(p string) string { return filepath.Join(target, p) }
	mustWrite(t, in("a/b/deep.txt"), []byte("changed, longer content\n"), 0o600)
	if err := os.Remove(in("dup1.txt")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, in("extra.txt"), []byte("extra"), 0o644)
	mustWrite(t, in("extradir/y.txt"), []byte("extra"), 0o644)
	before := scanTree(t, target)

	mirror, err := PlanRestore(ctx, target, entries, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	additive, err := PlanRestore(ctx, target, entries, RestoreOptions{KeepExtra: true})
	if err != nil {
		t.Fatal(err)
	}
	after := scanTree(t, target)
	if len(before) != len(after) {
		t.Fatalf("planning changed the target: %d entries, was %d", len(after), len(before))
	}
	for p, e := range before {
		if err := sameEntry(e, after[p]); err != nil {
			t.Fatalf("planning changed %s: %v", p, err)
		}
	}
	if mirror.Create != 1 || mirror.Overwrite != 1 || mirror.Unchanged != files-2 {
		t.Errorf("mirror plan %+v: want 1 create (dup1.txt), 1 overwrite (deep.txt)", mirror)
	}
	if want := []string{"extra.txt", "extradir", "extradir/y.txt"}; mirror.Delete != 3 || !slices.Equal(mirror.DeletePaths, want) {
		t.Errorf("mirror deletes %d %v, want %v", mirror.Delete, mirror.DeletePaths, want)
	}
	if additive.Delete != 0 || additive.Create != 1 || additive.Overwrite != 1 {
		t.Errorf("additive plan %+v: want no deletes", additive)
	}
	wantBytes := int64(len("same bytes") + len("deep content\n"))
	if mirror.DownloadBytes != wantBytes {
		t.Errorf("download bytes %d, want %d", mirror.DownloadBytes, wantBytes)
	}
	// Restore then does what the plan said.
	stats, err := Restore(ctx, target, entries, store, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Removed != mirror.Delete || stats.Downloaded != mirror.Create+mirror.Overwrite {
		t.Errorf("restore %+v differs from its plan %+v", stats, mirror)
	}
}

// TestRestoreKeepExtraRemovesOwnTemps: an additive restore deletes
// nothing of the target's own, but does clean the temporary files an
// interrupted restore of the same entries left behind.
func TestRestoreKeepExtraRemovesOwnTemps(t *testing.T) {
	st := makeSourceTree(t)
	entries, store := backup(t, st.root)
	target := t.TempDir()
	in := func(p string) string { return filepath.Join(target, p) }
	mustWrite(t, in("a/b/.deep.txt.crayfish-tmp-123"), []byte("partial"), 0o600) // ours: removed
	mustWrite(t, in("a/.deep.txt.crayfish-tmp-123"), []byte("user"), 0o600)      // not next to deep.txt: kept
	mustWrite(t, in(".big.bin.crayfish-tmp-4k2z"), []byte("partial"), 0o600)     // ours: removed
	mustWrite(t, in("a/.other.txt.crayfish-tmp-123"), []byte("user"), 0o600)     // no such entry: kept
	mustWrite(t, in("a/.deep.txt.crayfish-tmp-X!"), []byte("user"), 0o600)       // not our random part: kept
	mustWrite(t, in("mine.txt"), []byte("user"), 0o600)
	if _, err := Restore(context.Background(), target, entries, store, RestoreOptions{KeepExtra: true}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, target, entries, "a/.other.txt.crayfish-tmp-123", "a/.deep.txt.crayfish-tmp-X!", "a/.deep.txt.crayfish-tmp-123", "mine.txt")
}
