package tree

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
