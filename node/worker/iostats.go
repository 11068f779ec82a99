package worker

import "sync/atomic"

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
}

type ioCounters struct {
	hits, misses, read, uploaded, downloaded atomic.Int64
}

// IOStats reports the counts so far.
func (w *LocalWorker) IOStats() IOStats {
	c := &w.io
	return IOStats{HashCacheHits: c.hits.Load(), HashCacheMisses: c.misses.Load(), BytesRead: c.read.Load(),
		BytesUploaded: c.uploaded.Load(), BytesDownloaded: c.downloaded.Load()}
}
