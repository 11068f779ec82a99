package node

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crayfish-backup/crayfish/storage"
)

// backupCounter reports how many backups the repository holds, by
// plugin: the repository is the truth (backups deleted offline count
// too), listed at most once a minute, and a backup's plugin is read once
// (a manifest never changes).
type backupCounter struct {
	repo interface {
		ListBackupIDs(ctx context.Context) ([]string, error)
		GetManifest(ctx context.Context, backupID string) (*storage.Manifest, error)
	}
	every time.Duration

	mu      sync.Mutex
	plugins map[string]string // backup id → plugin
	counts  map[string]int
	listed  time.Time
}

var descBackups = metricDesc("backups", "Backups in the repository, by plugin (listed at most once a minute).", "plugin")

func (b *backupCounter) Describe(ch chan<- *prometheus.Desc) { ch <- descBackups }

func (b *backupCounter) Collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.listed) >= b.every {
		// Within a scrape's time; on failure the last counts stay.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if counts, err := b.count(ctx); err == nil {
			b.counts, b.listed = counts, time.Now()
		}
		cancel()
	}
	for plugin, n := range b.counts {
		ch <- prometheus.MustNewConstMetric(descBackups, prometheus.GaugeValue, float64(n), plugin)
	}
}

func (b *backupCounter) count(ctx context.Context) (map[string]int, error) {
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
