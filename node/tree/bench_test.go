package tree

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
		stats, err := Restore(context.Background(), target, res.Entries, store, RestoreOptions{})
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
