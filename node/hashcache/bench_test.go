package hashcache

import (
	"fmt"
	"path/filepath"
	"testing"
)

// fillCache stores n small-file entries and closes the cache.
func fillCache(b *testing.B, path string, n int) {
	c, _, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	content, chunks := idsOf(4096, 1)
	for i := range n {
		c.Store(fmt.Sprintf("/var/lib/db/data/d%03d/f%07d", i%100, i), testID(i, 4096), content, chunks)
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOpen measures Open of an existing cache, which reads and checks
// every entry before use.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{20000, 200000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "c.db")
			fillCache(b, path, n)
			for b.Loop() {
				c, warn, err := Open(path)
				if err != nil || warn != nil {
					b.Fatal(err, warn)
				}
				c.Close()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	const n = 20000
	path := filepath.Join(b.TempDir(), "c.db")
	fillCache(b, path, n)
	c, _, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	i := 0
	for b.Loop() {
		if _, _, ok := c.Lookup(fmt.Sprintf("/var/lib/db/data/d%03d/f%07d", i%100, i%n), testID(i%n, 4096)); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

// BenchmarkStore measures storing 20,000 entries, committed in batches.
func BenchmarkStore(b *testing.B) {
	const n = 20000
	content, chunks := idsOf(4096, 1)
	for b.Loop() {
		c, _, err := Open(filepath.Join(b.TempDir(), "c.db"))
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			c.Store(fmt.Sprintf("/var/lib/db/data/d%03d/f%07d", i%100, i), testID(i, 4096), content, chunks)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}
