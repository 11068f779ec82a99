package tree

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/crayfish-backup/crayfish/node/hashcache"
	"github.com/crayfish-backup/crayfish/storage"
)

const (
	benchFiles    = 2000
	benchFileSize = 4 << 10
)

// makeSmallFiles writes benchFiles distinct 4 KiB files in 20 directories.
func makeSmallFiles(b *testing.B) string {
	b.Helper()
	root := filepath.Join(b.TempDir(), "live")
	buf := make([]byte, benchFileSize)
	for i := range benchFiles {
		for j := range buf {
			buf[j] = byte(i + j*31)
		}
		copy(buf, fmt.Sprint(i)) // distinct content
		mustWrite(b, filepath.Join(root, fmt.Sprintf("d%02d/f%05d", i%20, i)), buf, 0o644)
	}
	return root
}

func BenchmarkSnapshotSmallFiles(b *testing.B) {
	root := makeSmallFiles(b)
	base := b.TempDir()
	b.SetBytes(benchFiles * benchFileSize)
	i := 0
	for b.Loop() {
		dst := filepath.Join(base, fmt.Sprint(i))
		i++
		if _, err := Snapshot(context.Background(), root, dst, SnapshotOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
	b.ReportMetric(float64(benchFiles*b.N)/b.Elapsed().Seconds(), "files/s")
}

// benchRestoreConcurrency is the agent's default download_concurrency.
const benchRestoreConcurrency = 8

func BenchmarkRestore(b *testing.B) {
	root := makeSmallFiles(b)
	snap := filepath.Join(b.TempDir(), "snap")
	res, err := Snapshot(context.Background(), root, snap, SnapshotOptions{})
	if err != nil {
		b.Fatal(err)
	}
	store := newFakeStore()
	if _, err := Upload(context.Background(), snap, res.Entries, store, UploadOptions{}); err != nil {
		b.Fatal(err)
	}
	base := b.TempDir()
	b.SetBytes(res.Stats.Bytes)
	i := 0
	for b.Loop() {
		target := filepath.Join(base, fmt.Sprint(i))
		i++
		stats, err := Restore(context.Background(), target, res.Entries, store, RestoreOptions{Concurrency: benchRestoreConcurrency})
		if err != nil {
			b.Fatal(err)
		}
		if stats.Downloaded != benchFiles {
			b.Fatalf("downloaded %d", stats.Downloaded)
		}
		b.StopTimer()
		os.RemoveAll(target)
		b.StartTimer()
	}
	b.ReportMetric(float64(benchFiles*b.N)/b.Elapsed().Seconds(), "files/s")
}

const benchLargeSize = 64 << 20

// makeLargeFile writes one benchLargeSize file (16 chunks).
func makeLargeFile(b *testing.B) string {
	b.Helper()
	root := filepath.Join(b.TempDir(), "live")
	mustWrite(b, filepath.Join(root, "large"), patterned(benchLargeSize, 1), 0o644)
	return root
}

// BenchmarkSnapshotLargeFile measures hashing one multi-chunk file (whole
// file and chunks in one read).
func BenchmarkSnapshotLargeFile(b *testing.B) {
	root := makeLargeFile(b)
	base := b.TempDir()
	b.SetBytes(benchLargeSize)
	i := 0
	for b.Loop() {
		dst := filepath.Join(base, fmt.Sprint(i))
		i++
		if _, err := Snapshot(context.Background(), root, dst, SnapshotOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

// discardStore is a BlobStore that stores nothing, so the benchmark
// measures Upload's own reading and checking.
type discardStore struct{}

func (discardStore) HasBlob(storage.ObjectID) bool { return false }
func (discardStore) SaveBlob(_ context.Context, _ storage.BlobType, _ storage.ObjectID, data []byte) (int64, error) {
	return int64(len(data)), nil
}

// BenchmarkUploadLargeFile measures the chunks of one file being read and
// verified by all workers in parallel.
func BenchmarkUploadLargeFile(b *testing.B) {
	root := makeLargeFile(b)
	snap := filepath.Join(b.TempDir(), "snap")
	res, err := Snapshot(context.Background(), root, snap, SnapshotOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchLargeSize)
	for b.Loop() {
		st, err := Upload(context.Background(), snap, res.Entries, discardStore{}, UploadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if st.Uploaded != benchLargeSize/storage.ChunkSize {
			b.Fatalf("uploaded %d chunks", st.Uploaded)
		}
	}
}

// BenchmarkRestoreLargeFile measures one multi-chunk file restored with
// chunks fetched ahead.
func BenchmarkRestoreLargeFile(b *testing.B) {
	root := makeLargeFile(b)
	snap := filepath.Join(b.TempDir(), "snap")
	res, err := Snapshot(context.Background(), root, snap, SnapshotOptions{})
	if err != nil {
		b.Fatal(err)
	}
	store := newFakeStore()
	if _, err := Upload(context.Background(), snap, res.Entries, store, UploadOptions{}); err != nil {
		b.Fatal(err)
	}
	base := b.TempDir()
	b.SetBytes(benchLargeSize)
	i := 0
	for b.Loop() {
		target := filepath.Join(base, fmt.Sprint(i))
		i++
		if _, err := Restore(context.Background(), target, res.Entries, store, RestoreOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(target)
		b.StartTimer()
	}
}

const cacheBenchFiles = 20000

// BenchmarkSnapshotCache snapshots 20,000 small (4 KiB) files in 100
// directories: without a cache, with an empty cache (cold: every file is
// read, hashed and stored), and with a cache that knows them all (warm:
// every file is only lstatted and looked up, not linked).
func BenchmarkSnapshotCache(b *testing.B) {
	root := filepath.Join(b.TempDir(), "live")
	buf := make([]byte, benchFileSize)
	for i := range cacheBenchFiles {
		for j := range buf {
			buf[j] = byte(i + j*31)
		}
		copy(buf, fmt.Sprint(i))
		p := filepath.Join(root, fmt.Sprintf("d%03d/f%05d", i%100, i))
		mustWrite(b, p, buf, 0o644)
		os.Chtimes(p, ts(1), ts(1)) // long unmodified, as in a real tree
	}
	base := b.TempDir()
	run := 0
	snapshot := func(b *testing.B, opts SnapshotOptions) *SnapshotResult {
		dst := ""
		if !opts.InPlace {
			dst = filepath.Join(base, fmt.Sprint(run))
			run++
		}
		res, err := Snapshot(context.Background(), root, dst, opts)
		if err != nil {
			b.Fatal(err)
		}
		if res.Stats.Files != cacheBenchFiles || len(res.Warnings) > 0 {
			b.Fatalf("%+v %q", res.Stats, res.Warnings)
		}
		b.StopTimer()
		if dst != "" {
			os.RemoveAll(dst)
		}
		b.StartTimer()
		return res
	}
	newCache := func(b *testing.B) *hashcache.Cache {
		c, _, err := hashcache.Open(filepath.Join(b.TempDir(), fmt.Sprint("cache", run, ".db")))
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(cacheBenchFiles*b.N)/b.Elapsed().Seconds(), "files/s")
	}
	b.Run("nocache", func(b *testing.B) {
		for b.Loop() {
			snapshot(b, SnapshotOptions{})
		}
		report(b)
	})
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			c := newCache(b)
			b.StartTimer()
			if res := snapshot(b, SnapshotOptions{Cache: c}); res.Hash.CacheHits != 0 {
				b.Fatalf("%+v", res.Hash)
			}
			c.Close()
		}
		report(b)
	})
	for _, inPlace := range []bool{false, true} {
		name := "warm"
		if inPlace {
			name = "warm-inplace"
		}
		b.Run(name, func(b *testing.B) {
			c := newCache(b)
			defer c.Close()
			snapshot(b, SnapshotOptions{Cache: c, InPlace: inPlace})
			for b.Loop() {
				if res := snapshot(b, SnapshotOptions{Cache: c, InPlace: inPlace}); res.Hash.BytesRead != 0 {
					b.Fatalf("%+v", res.Hash)
				}
			}
			report(b)
		})
	}
}

// BenchmarkRestoreManyFiles restores cacheBenchFiles 4 KiB files in 100
// directories with the agent's default concurrency: the create, write,
// rename path of small files and their batched syncs.
func BenchmarkRestoreManyFiles(b *testing.B) {
	root := filepath.Join(b.TempDir(), "live")
	buf := make([]byte, benchFileSize)
	for i := range cacheBenchFiles {
		copy(buf, fmt.Sprint(i))
		mustWrite(b, filepath.Join(root, fmt.Sprintf("d%03d/f%05d", i/(cacheBenchFiles/100), i)), buf, 0o644)
	}
	res, err := Snapshot(context.Background(), root, filepath.Join(b.TempDir(), "snap"), SnapshotOptions{})
	if err != nil {
		b.Fatal(err)
	}
	store := newFakeStore()
	if _, err := Upload(context.Background(), res.Dir, res.Entries, store, UploadOptions{}); err != nil {
		b.Fatal(err)
	}
	base := b.TempDir()
	i := 0
	for b.Loop() {
		target := filepath.Join(base, fmt.Sprint(i))
		i++
		if _, err := Restore(context.Background(), target, res.Entries, store, RestoreOptions{Concurrency: benchRestoreConcurrency}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(target)
		b.StartTimer()
	}
	b.ReportMetric(float64(cacheBenchFiles*b.N)/b.Elapsed().Seconds(), "files/s")
}
