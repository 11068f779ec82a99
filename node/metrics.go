package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/crayfish-backup/crayfish/fsm"
)

// metrics are the agent's Prometheus series, on a registry of its own so
// several agents can live in one test process.
type metrics struct {
	registry     *prometheus.Registry
	opsStarted   *prometheus.CounterVec
	opsFinished  *prometheus.CounterVec
	stepDuration *prometheus.HistogramVec
	stepFailures *prometheus.CounterVec
	httpRequests *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		opsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crayfish_operations_started_total", Help: "Operations started through this node, by kind.",
		}, []string{"kind"}),
		opsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crayfish_operations_finished_total", Help: "Operations this node finished as coordinator, by kind and outcome.",
		}, []string{"kind", "state"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "crayfish_step_duration_seconds", Help: "Duration of step attempts run by this node as coordinator.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"step"}),
		stepFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crayfish_step_attempt_failures_total", Help: "Failed step attempts, by step.",
		}, []string{"step"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crayfish_http_requests_total", Help: "HTTP API requests by route and status code.",
		}, []string{"route", "code"}),
	}
	m.registry.MustRegister(m.opsStarted, m.opsFinished, m.stepDuration, m.stepFailures, m.httpRequests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) opFinished(op *fsm.Operation) {
	if op != nil {
		m.opsFinished.WithLabelValues(string(op.Kind), string(op.State)).Inc()
	}
}

func (m *metrics) stepDone(step string, d time.Duration, err error) {
	m.stepDuration.WithLabelValues(step).Observe(d.Seconds())
	if err != nil {
		m.stepFailures.WithLabelValues(step).Inc()
	}
}

// OpStarted counts an operation started through this node.
func (m *metrics) OpStarted(kind fsm.OpKind) { m.opsStarted.WithLabelValues(string(kind)).Inc() }

// OpFinished and StepDone are the coordinator's counts (coord.Metrics).
func (m *metrics) OpFinished(op *fsm.Operation) { m.opFinished(op) }

func (m *metrics) StepDone(step string, d time.Duration, err error) { m.stepDone(step, d, err) }
