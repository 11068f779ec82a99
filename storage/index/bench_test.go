package index

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/crayfish-backup/crayfish/storage/pack"
)

const benchEntries = 1 << 20

func buildBench(r *rand.Rand, n int) (*Index, []pack.ID) {
	x := New()
	packs := make([]pack.ID, n/1000+1)
	for i := range packs {
		packs[i] = randID(r)
	}
	ids := make([]pack.ID, n)
	for i := range ids {
		ids[i] = randID(r)
		x.Add(ids[i], randLoc(r, packs[i/1000], pack.BlobData))
	}
	return x, ids
}

// BenchmarkLookup: lookups/s of present and absent ids in a 1 M-entry index.
func BenchmarkLookup(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x, ids := buildBench(r, benchEntries)
	absent := make([]pack.ID, 4096)
	for i := range absent {
		absent[i] = randID(r)
	}
	b.Run("hit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, ok := x.Lookup(ids[i&(benchEntries-1)]); !ok {
				b.Fatal("missing")
			}
			i++ // ids are random, so table and entries are hit at random
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	})
	b.Run("miss", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if x.Has(absent[i&4095]) {
				b.Fatal("phantom")
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	})
}

// BenchmarkAdd: insert rate while building a 1 M-entry index.
func BenchmarkAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	ids := make([]pack.ID, benchEntries)
	locs := make([]Location, 1024)
	p := randID(r)
	for i := range ids {
		ids[i] = randID(r)
	}
	for i := range locs {
		locs[i] = randLoc(r, p, pack.BlobData)
	}
	for b.Loop() {
		x := New()
		for i, id := range ids {
			x.Add(id, locs[i&1023])
		}
	}
	b.ReportMetric(float64(b.N)*benchEntries/b.Elapsed().Seconds(), "adds/s")
}

// BenchmarkMemoryPerEntry reports the heap held by a 1 M-entry index
// (1,000 entries per pack) per entry, from runtime.MemStats deltas.
func BenchmarkMemoryPerEntry(b *testing.B) {
	for b.Loop() {
		r := rand.New(rand.NewPCG(5, 6))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x, _ := buildBench(r, benchEntries) // the id list is dropped: only the index counts
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/benchEntries, "B/entry")
		runtime.KeepAlive(x)
	}
}
