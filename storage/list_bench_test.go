package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkListBackups measures listing a repository of 1,000 backups on
// file://: the key listing plus one small snapshot object per listed
// backup (a 100-entry page, and all 1,000). File lists are never read.
func BenchmarkListBackups(b *testing.B) {
	ctx := context.Background()
	url := "file://" + filepath.Join(b.TempDir(), "repo")
	r, err := Init(ctx, url, InitOptions{Secret: password, Scrypt: cheapScrypt})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		m := testManifest(fmt.Sprintf("%s-%04d", t0.Add(time.Duration(i)*time.Hour).Format("20060102T150405.000000Z"), i))
		m.Nodes = []NodeManifest{{NodeID: "n1", Stats: NodeStats{Files: 10000, Bytes: 1 << 30}}}
		if err := r.PutManifest(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	for _, page := range []int{100, 1000} {
		b.Run(fmt.Sprintf("page=%d", page), func(b *testing.B) {
			for b.Loop() {
				ids, err := r.ListBackupIDs(ctx)
				if err != nil || len(ids) != 1000 {
					b.Fatal(len(ids), err)
				}
				for _, id := range ids[len(ids)-page:] {
					if _, err := r.GetManifest(ctx, id); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
