package worker

import (
	"sync/atomic"
	"time"
)

// IOStats count what this node's worker read, uploaded and downloaded
// since it started, for its metrics.
type IOStats struct {
	// HashCacheHits and HashCacheMisses are files a snapshot found in the
	// hash cache (not read) and files it had to read.
	HashCacheHits, HashCacheMisses int64
	// BytesRead are bytes read to hash or copy files.
	BytesRead int64
	// BytesUploaded are plaintext bytes of chunks uploaded anew (backups
	// and log shipping); BytesDownloaded those restores downloaded.
	BytesUploaded, BytesDownloaded int64
	// ThrottleWaits and ThrottleWaitNanos count the reads the upload
	// bandwidth limit (upload_bytes_per_second) made wait, and how long.
	ThrottleWaits, ThrottleWaitNanos int64
}

type ioCounters struct {
	hits, misses, read, uploaded, downloaded atomic.Int64
	waits, waitNanos                         atomic.Int64
}

// throttled counts one wait the upload limiter imposed.
func (c *ioCounters) throttled(d time.Duration) {
	c.waits.Add(1)
	c.waitNanos.Add(int64(d))
}

// IOStats reports the counts so far.
func (w *LocalWorker) IOStats() IOStats {
	c := &w.io
	return IOStats{HashCacheHits: c.hits.Load(), HashCacheMisses: c.misses.Load(), BytesRead: c.read.Load(),
		BytesUploaded: c.uploaded.Load(), BytesDownloaded: c.downloaded.Load(),
		ThrottleWaits: c.waits.Load(), ThrottleWaitNanos: c.waitNanos.Load()}
}
