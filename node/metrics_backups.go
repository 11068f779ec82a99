package node

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crayfish-backup/crayfish/storage"
)

// repoCounter reports what the repository lists: how many backups it
// holds, by plugin, and how many damaged blobs have no good copy. The
// repository is the truth (backups deleted offline count too); it is
// listed at most once a minute, and a backup's plugin is read once (a
// manifest never changes).
type repoCounter struct {
	repo interface {
		ListBackupIDs(ctx context.Context) ([]string, error)
		GetManifest(ctx context.Context, backupID string) (*storage.Manifest, error)
		ListDamaged(ctx context.Context) ([]storage.DamagedBlob, error)
	}
	every time.Duration

	mu      sync.Mutex
	plugins map[string]string // backup id → plugin
	counts  map[string]int
	damaged int
	listed  time.Time
}

var (
	descBackups = metricDesc("backups", "Backups in the repository, by plugin (listed at most once a minute).", "plugin")
	descDamaged = metricDesc("repository_damaged_blobs", "Blobs recorded damaged in the repository with no good copy elsewhere (listed at most once a minute).")
)

func (b *repoCounter) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBackups
	ch <- descDamaged
}

func (b *repoCounter) Collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.listed) >= b.every {
		// Within a scrape's time; on failure the last counts stay.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		counts, err := b.count(ctx)
		var damaged []storage.DamagedBlob
		if err == nil {
			damaged, err = b.repo.ListDamaged(ctx)
		}
		if err == nil {
			b.counts, b.damaged, b.listed = counts, 0, time.Now()
			for _, d := range damaged {
				if !d.Superseded {
					b.damaged++
				}
			}
		}
		cancel()
	}
	for plugin, n := range b.counts {
		ch <- prometheus.MustNewConstMetric(descBackups, prometheus.GaugeValue, float64(n), plugin)
	}
	if b.counts != nil {
		ch <- prometheus.MustNewConstMetric(descDamaged, prometheus.GaugeValue, float64(b.damaged))
	}
}

func (b *repoCounter) count(ctx context.Context) (map[string]int, error) {
	ids, err := b.repo.ListBackupIDs(ctx)
	if err != nil {
		return nil, err
	}
	if b.plugins == nil {
		b.plugins = map[string]string{}
	}
	counts := map[string]int{}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
		plugin, ok := b.plugins[id]
		if !ok {
			m, err := b.repo.GetManifest(ctx, id)
			if err != nil {
				return nil, err
			}
			plugin = m.Plugin
			b.plugins[id] = plugin
		}
		counts[plugin]++
	}
	for id := range b.plugins {
		if !seen[id] {
			delete(b.plugins, id) // deleted backups leave the cache
		}
	}
	return counts, nil
}
