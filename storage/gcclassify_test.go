package storage

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/storage/backend"
	"github.com/crayfish-backup/crayfish/storage/index"
	"github.com/crayfish-backup/crayfish/storage/pack"
)

// The classification is table-tested without a backend: packs, blobs and
// the clock are plain values.

var gcT0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func cid(s string) ObjectID { return HashBytes([]byte(s)) }

// gcBlob is one index entry of a test: blob name, pack name, stored length.
type gcBlob struct {
	blob, pack string
	stored     uint32
}

// gcCase builds classifyGC's input: packs of the given sizes (data packs,
// listed with mod time now-age), blobs in them, the referenced names.
type gcCase struct {
	name      string
	packs     map[string]int64         // pack name → size
	ages      map[string]time.Duration // pack name → age (default 48h)
	unlisted  []string                 // indexed packs whose object is not listed
	blobs     []gcBlob
	live      []string
	pending   []string // pack names a pending plan condemns
	fraction  float64
	grace     time.Duration
	condemned []string
	repack    []string
	unindexed []string // deleted
	kept      []string // unindexed within the grace
	refBlobs  int
	refBytes  int64
	unrefs    int
	rewrite   bool
}

func (c gcCase) input() gcInput {
	pid := map[string]ObjectID{}
	size := map[string]int64{}
	for name, sz := range c.packs {
		pid[name], size[name] = cid("pack "+name), sz
	}
	for _, name := range c.unlisted {
		pid[name], size[name] = cid("pack "+name), 1000
	}
	in := gcInput{Live: map[ObjectID]struct{}{}, Pending: map[string]bool{},
		MaxUnusedFraction: c.fraction, UnindexedGrace: c.grace, Now: gcT0}
	for name, sz := range c.packs {
		age, ok := c.ages[name]
		if !ok {
			age = 48 * time.Hour
		}
		in.Packs = append(in.Packs, backend.ObjectInfo{Key: packKey(BlobData, pid[name]), Size: sz, ModTime: gcT0.Add(-age)})
	}
	for _, name := range c.pending {
		in.Pending[packKey(BlobData, pid[name])] = true
	}
	for _, b := range c.live {
		in.Live[cid(b)] = struct{}{}
	}
	blobs := c.blobs
	in.Blobs = func(yield func(pack.ID, index.Location) bool) {
		var off uint32
		for _, b := range blobs {
			loc := index.Location{Pack: pid[b.pack], PackType: pack.BlobType(BlobData), PackSize: uint32(size[b.pack]),
				Offset: off, StoredLen: b.stored, RawLen: b.stored}
			off += b.stored
			if !yield(cid(b.blob), loc) {
				return
			}
		}
	}
	return in
}

func (c gcCase) keys(names []string) []string {
	out := []string{}
	for _, n := range names {
		out = append(out, packKey(BlobData, cid("pack "+n)))
	}
	return sortedStrings(out)
}

func sortedStrings(s []string) []string {
	return append([]string{}, slices.Sorted(slices.Values(s))...)
}

func TestClassifyGC(t *testing.T) {
	cases := []gcCase{
		{
			name:  "empty repository",
			grace: time.Hour, fraction: 0.1,
		},
		{
			name:  "every blob referenced",
			packs: map[string]int64{"A": 1000},
			blobs: []gcBlob{{"a1", "A", 400}, {"a2", "A", 500}},
			live:  []string{"a1", "a2"},
			grace: time.Hour, fraction: 0.1,
			refBlobs: 2, refBytes: 900,
		},
		{
			name:  "fully dead pack is condemned",
			packs: map[string]int64{"A": 1000, "B": 1000},
			blobs: []gcBlob{{"a1", "A", 900}, {"b1", "B", 400}, {"b2", "B", 500}},
			live:  []string{"a1"},
			grace: time.Hour, fraction: 0.1,
			condemned: []string{"B"}, refBlobs: 1, refBytes: 900, unrefs: 2, rewrite: true,
		},
		{
			name:  "partly dead above the threshold is repacked",
			packs: map[string]int64{"A": 1000},
			blobs: []gcBlob{{"a1", "A", 700}, {"a2", "A", 200}},
			live:  []string{"a1"},
			grace: time.Hour, fraction: 0.1,
			repack: []string{"A"}, refBlobs: 1, refBytes: 700, unrefs: 1, rewrite: true,
		},
		{
			name:  "partly dead below the threshold is kept",
			packs: map[string]int64{"A": 1000},
			blobs: []gcBlob{{"a1", "A", 850}, {"a2", "A", 50}},
			live:  []string{"a1"},
			grace: time.Hour, fraction: 0.1,
			refBlobs: 1, refBytes: 850, unrefs: 1,
		},
		{
			name:  "dead bytes exactly at the threshold are kept",
			packs: map[string]int64{"A": 1000},
			blobs: []gcBlob{{"a1", "A", 800}, {"a2", "A", 100}},
			live:  []string{"a1"},
			grace: time.Hour, fraction: 0.1,
			refBlobs: 1, refBytes: 800, unrefs: 1,
		},
		{
			name:  "negative threshold repacks any dead byte",
			packs: map[string]int64{"A": 1000, "B": 1000},
			blobs: []gcBlob{{"a1", "A", 898}, {"a2", "A", 1}, {"b1", "B", 900}},
			live:  []string{"a1", "b1"},
			grace: time.Hour, fraction: -1,
			repack: []string{"A"}, refBlobs: 2, refBytes: 1798, unrefs: 1, rewrite: true,
		},
		{
			name:  "unindexed: old deleted, young kept",
			packs: map[string]int64{"A": 1000, "OLD": 300, "YOUNG": 200},
			ages:  map[string]time.Duration{"OLD": 2 * time.Hour, "YOUNG": 30 * time.Minute},
			blobs: []gcBlob{{"a1", "A", 900}},
			live:  []string{"a1"},
			grace: time.Hour, fraction: 0.1,
			unindexed: []string{"OLD"}, kept: []string{"YOUNG"}, refBlobs: 1, refBytes: 900,
		},
		{
			name:  "unindexed exactly at the grace is kept",
			packs: map[string]int64{"EDGE": 300},
			ages:  map[string]time.Duration{"EDGE": time.Hour},
			grace: time.Hour, fraction: 0.1,
			kept: []string{"EDGE"},
		},
		{
			name:    "a pack a pending plan condemns is not unindexed",
			packs:   map[string]int64{"GONE": 300},
			pending: []string{"GONE"},
			grace:   time.Hour, fraction: 0.1,
		},
		{
			// The index locates a1 in A (its first location); the copy in B
			// is an unreferenced record there, so B, holding nothing else,
			// is condemned and A keeps the live copy.
			name:  "referenced blob listed in two packs",
			packs: map[string]int64{"A": 1000, "B": 1000},
			blobs: []gcBlob{{"a1", "A", 900}, {"a1", "B", 900}},
			live:  []string{"a1"},
			grace: time.Hour, fraction: 0.1,
			condemned: []string{"B"}, refBlobs: 1, refBytes: 900, unrefs: 1, rewrite: true,
		},
		{
			// A duplicate's dead copy counts against its pack like any
			// unreferenced record.
			name:  "duplicate copy makes its pack wasteful",
			packs: map[string]int64{"A": 1000, "B": 1000},
			blobs: []gcBlob{{"a1", "A", 500}, {"b1", "B", 400}, {"a1", "B", 500}},
			live:  []string{"a1", "b1"},
			grace: time.Hour, fraction: 0.1,
			repack: []string{"B"}, refBlobs: 2, refBytes: 900, unrefs: 1, rewrite: true,
		},
		{
			name:     "an indexed pack that is not listed is still judged",
			unlisted: []string{"LOST"},
			blobs:    []gcBlob{{"l1", "LOST", 100}},
			grace:    time.Hour, fraction: 0.1,
			condemned: []string{"LOST"}, unrefs: 1, rewrite: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := classifyGC(c.input())
			s := d.summary
			if got, want := sortedStrings(s.Condemned.Keys()), c.keys(c.condemned); !reflect.DeepEqual(got, want) {
				t.Errorf("condemned %v, want %v", got, want)
			}
			if got, want := sortedStrings(s.Repack.Keys()), c.keys(c.repack); !reflect.DeepEqual(got, want) {
				t.Errorf("repack %v, want %v", got, want)
			}
			if got, want := sortedStrings(s.UnindexedDeleted.Keys()), c.keys(c.unindexed); !reflect.DeepEqual(got, want) {
				t.Errorf("unindexed deleted %v, want %v", got, want)
			}
			if got, want := sortedStrings(s.UnindexedKept.Keys()), c.keys(c.kept); !reflect.DeepEqual(got, want) {
				t.Errorf("unindexed kept %v, want %v", got, want)
			}
			if s.Referenced != (GCTally{Blobs: c.refBlobs, Bytes: c.refBytes}) || s.Unreferenced.Blobs != c.unrefs {
				t.Errorf("referenced %+v unreferenced %+v, want %d/%d and %d", s.Referenced, s.Unreferenced, c.refBlobs, c.refBytes, c.unrefs)
			}
			if s.RewriteIndex != c.rewrite {
				t.Errorf("rewrite index %v, want %v", s.RewriteIndex, c.rewrite)
			}
			// The summary and the lists GC acts on agree.
			if s.Condemned.Count != len(d.condemned) || s.Repack.Count != len(d.repack) || s.UnindexedDeleted.Count != len(d.unindexed) {
				t.Errorf("summary counts %d/%d/%d, decision %d/%d/%d", s.Condemned.Count, s.Repack.Count,
					s.UnindexedDeleted.Count, len(d.condemned), len(d.repack), len(d.unindexed))
			}
			var bytes int64
			for _, p := range s.Condemned.Packs {
				bytes += p.Size
			}
			if bytes != s.Condemned.Bytes {
				t.Errorf("condemned bytes %d, packs add up to %d", s.Condemned.Bytes, bytes)
			}
		})
	}
}

func TestClassifyGCRepackReason(t *testing.T) {
	c := gcCase{packs: map[string]int64{"A": 1000}, blobs: []gcBlob{{"a1", "A", 600}, {"a2", "A", 250}},
		live: []string{"a1"}, grace: time.Hour, fraction: 0.1}
	s := classifyGC(c.input()).summary
	if len(s.Repack.Packs) != 1 {
		t.Fatalf("repack %+v", s.Repack)
	}
	p := s.Repack.Packs[0]
	if p.Size != 1000 || p.DeadBytes != 250 || p.DeadFraction != 0.25 || s.Repack.Bytes != 1000 {
		t.Fatalf("repack reason %+v (set bytes %d), want size 1000, 250 dead bytes, fraction 0.25", p, s.Repack.Bytes)
	}
}

func TestClassifyGCListsAreCapped(t *testing.T) {
	n := gcListCap + 7
	c := gcCase{packs: map[string]int64{}, grace: time.Hour, fraction: 0.1}
	for i := range n {
		name := fmt.Sprint("P", i)
		c.packs[name] = 10
		c.blobs = append(c.blobs, gcBlob{"b" + name, name, 5})
	}
	d := classifyGC(c.input())
	s := d.summary
	if s.Condemned.Count != n || len(d.condemned) != n || s.Condemned.Bytes != int64(10*n) {
		t.Fatalf("condemned count %d (decision %d) bytes %d, want %d and %d", s.Condemned.Count, len(d.condemned), s.Condemned.Bytes, n, 10*n)
	}
	if len(s.Condemned.Packs) != gcListCap {
		t.Fatalf("%d packs listed, want the cap %d", len(s.Condemned.Packs), gcListCap)
	}
	keys := s.Condemned.Keys()
	if !reflect.DeepEqual(keys, sortedStrings(keys)) {
		t.Fatal("listed packs are not in key order")
	}
}
