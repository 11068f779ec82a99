package storage

import (
	"context"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestGCDryRunReportsWhatGCDoes builds a file:// repository with every
// kind of pack GC judges (condemned, to repack, unindexed old and young),
// runs a dry run, which must change nothing, then a real run, which must
// carry out exactly the dry run's classification.
func TestGCDryRunReportsWhatGCDoes(t *testing.T) {
	ctx := context.Background()
	url, r := newFileRepo(t)
	threeBackups(t, r)
	if err := r.DeleteManifest(ctx, "b2"); err != nil { // b2's own packs: condemned
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	x, y := stageBackup(t, r, "x", randChunks(rng, 10, 2000)), stageBackup(t, r, "y", randChunks(rng, 10, 2000))
	commit(t, r, x, y)
	if err := r.DeleteManifest(ctx, "x"); err != nil { // x and y share packs: repacked
		t.Fatal(err)
	}
	old, young := putOrphanPack(t, r, []byte("old orphan")), putOrphanPack(t, r, []byte("young orphan"))
	backdate(t, url, old, 2*time.Hour)
	backdate(t, url, young, 30*time.Minute)
	if err := r.Lock(ctx, "gc", LockExclusive, "test"); err != nil {
		t.Fatal(err)
	}

	before := repoFiles(t, url)
	dry, err := r.GC(ctx, GCOptions{DryRun: true, LockID: "gc"})
	if err != nil {
		t.Fatal(err)
	}
	if after := repoFiles(t, url); !reflect.DeepEqual(before, after) {
		t.Fatalf("the dry run changed the repository:\nbefore %v\nafter  %v", before, after)
	}
	c := dry.Classification
	if c.Condemned.Count != 2 || c.Repack.Count != 2 || c.UnindexedDeleted.Count != 1 || c.UnindexedKept.Count != 1 || !c.RewriteIndex {
		t.Fatalf("dry run classification %+v", c)
	}
	if c.UnindexedDeleted.Packs[0].Key != old || c.UnindexedKept.Packs[0].Key != young {
		t.Fatalf("unindexed: deleted %v kept %v, want %s and %s", c.UnindexedDeleted.Keys(), c.UnindexedKept.Keys(), old, young)
	}
	if c.Referenced.Blobs != dry.LiveBlobs || c.Referenced.Bytes <= 0 || c.Unreferenced.Blobs != dry.DeadBlobs {
		t.Fatalf("blob tallies %+v / %+v, report live %d dead %d", c.Referenced, c.Unreferenced, dry.LiveBlobs, dry.DeadBlobs)
	}
	for _, p := range c.Repack.Packs {
		if p.DeadBytes <= 0 || p.DeadFraction <= 0.1 || p.DeadFraction > 1 {
			t.Fatalf("repack without its reason: %+v", p)
		}
	}

	real, err := r.GC(ctx, GCOptions{LockID: "gc"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dry.Classification, real.Classification) {
		t.Fatalf("classifications differ:\ndry  %+v\nreal %+v", dry.Classification, real.Classification)
	}
	if dry.PacksDeleted != real.PacksDeleted || dry.PacksRepacked != real.PacksRepacked ||
		dry.UnindexedPacksDeleted != real.UnindexedPacksDeleted || dry.SegmentsAfter != real.SegmentsAfter || len(real.Warnings) != 0 {
		t.Fatalf("reports differ:\ndry  %+v\nreal %+v", dry, real)
	}
	// The packs that went are exactly the ones classified to go.
	after := repoFiles(t, url)
	var gone []string
	for k := range before {
		if _, _, ok := parsePackKey(k); ok {
			if _, still := after[k]; !still {
				gone = append(gone, k)
			}
		}
	}
	want := slices.Concat(c.Condemned.Keys(), c.Repack.Keys(), c.UnindexedDeleted.Keys())
	slices.Sort(gone)
	slices.Sort(want)
	if !slices.Equal(gone, want) {
		t.Fatalf("deleted packs %v\nclassified to go %v", gone, want)
	}
	if _, ok := after[young]; !ok {
		t.Fatal("the young unindexed pack was deleted")
	}
	for _, id := range []string{"b1", "b3", "y"} {
		checkBackup(t, r, id)
	}
}
