package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/crayfish-backup/crayfish/node/worker"
)

// metrics are the agent's Prometheus series, on a registry of its own so
// several agents can live in one test process.
type metrics struct {
	registry     *prometheus.Registry
	stepDuration *prometheus.HistogramVec
	httpRequests *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "crayfish_step_duration_seconds", Help: "Duration of step attempts run by this node as coordinator.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"step"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crayfish_http_requests_total", Help: "HTTP API requests by route and status code.",
		}, []string{"route", "code"}),
	}
	m.registry.MustRegister(m.stepDuration, m.httpRequests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchLogShipping adds the log shipping series (worker.LogShipStatus),
// read at each scrape. The lag grows between rounds while files wait, so
// an alert on it fires when shipping stalls, whatever the reason.
func (m *metrics) watchLogShipping(status func() worker.LogShipStatus) {
	gauge := func(name, help string, fn func(worker.LogShipStatus) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return fn(status()) })
	}
	counter := func(name, help string, fn func(worker.LogShipStatus) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return fn(status()) })
	}
	m.registry.MustRegister(
		gauge("crayfish_log_shipping_enabled", "1 if this node's plugin ships closed database log files (Cassandra's archived commit log) between backups.",
			func(s worker.LogShipStatus) float64 { return boolFloat(s.Enabled) }),
		gauge("crayfish_log_shipping_lag_seconds", "How long the oldest closed log file not yet shipped has waited since it closed (0: none waits).",
			func(s worker.LogShipStatus) float64 {
				if s.OldestPending.IsZero() {
					return 0
				}
				return max(0, time.Since(s.OldestPending).Seconds())
			}),
		gauge("crayfish_log_shipping_last_success_timestamp_seconds", "When this node's last successful log shipping round began: every log file closed before then has been shipped (0: none since start).",
			func(s worker.LogShipStatus) float64 { return unixOrZero(s.LastSuccess) }),
		counter("crayfish_log_shipping_files_total", "Closed log files shipped since start.",
			func(s worker.LogShipStatus) float64 { return float64(s.Files) }),
		counter("crayfish_log_shipping_bytes_total", "Bytes of closed log files shipped since start.",
			func(s worker.LogShipStatus) float64 { return float64(s.Bytes) }),
		counter("crayfish_log_shipping_archives_total", "Log archives written since start.",
			func(s worker.LogShipStatus) float64 { return float64(s.Archives) }),
		counter("crayfish_log_shipping_failures_total", "Failed log shipping rounds since start.",
			func(s worker.LogShipStatus) float64 { return float64(s.Failures) }),
	)
}

// watchIO adds this node's I/O counters (worker.IOStats), read at each
// scrape.
func (m *metrics) watchIO(stats func() worker.IOStats) {
	counter := func(name, help string, fn func(worker.IOStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(fn(stats())) })
	}
	m.registry.MustRegister(
		counter("crayfish_hash_cache_hits_total", "Files a snapshot on this node found unchanged in the hash cache (not read).",
			func(s worker.IOStats) int64 { return s.HashCacheHits }),
		counter("crayfish_hash_cache_misses_total", "Files a snapshot on this node had to read to hash.",
			func(s worker.IOStats) int64 { return s.HashCacheMisses }),
		counter("crayfish_read_bytes_total", "Bytes this node read to hash or copy files.",
			func(s worker.IOStats) int64 { return s.BytesRead }),
		counter("crayfish_uploaded_bytes_total", "Plaintext bytes of chunks this node uploaded anew (backups, log shipping).",
			func(s worker.IOStats) int64 { return s.BytesUploaded }),
		counter("crayfish_downloaded_bytes_total", "Bytes this node's restores downloaded.",
			func(s worker.IOStats) int64 { return s.BytesDownloaded }),
		counter("crayfish_upload_throttle_waits_total", "Reads the upload bandwidth limit (upload_bytes_per_second) made wait on this node.",
			func(s worker.IOStats) int64 { return s.ThrottleWaits }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "crayfish_upload_throttle_wait_seconds_total",
			Help: "How long the upload bandwidth limit made this node's reads wait."},
			func() float64 { return float64(stats().ThrottleWaitNanos) / 1e9 }),
	)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// StepDone times a step attempt this node ran as coordinator
// (coord.Metrics); the attempts that failed are counted cluster-wide
// (metrics_cluster.go).
func (m *metrics) StepDone(step string, d time.Duration, _ error) {
	m.stepDuration.WithLabelValues(step).Observe(d.Seconds())
}
