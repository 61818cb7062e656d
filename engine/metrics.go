package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is pgshift's Prometheus registry. Every method is safe on a nil
// receiver so that steps can report without checking.
type Metrics struct {
	Registry *prometheus.Registry

	replicationLag *prometheus.GaugeVec
	stepStatus     *prometheus.GaugeVec
	stepDuration   *prometheus.GaugeVec
	stepRuns       *prometheus.CounterVec
	applySteps     prometheus.Gauge
	applyStepsDone prometheus.Gauge
}

// NewMetrics registers pgshift's metrics on a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		replicationLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgshift_replication_lag_bytes",
			Help: "Bytes of WAL between blue's current position and the slot's confirmed flush position.",
		}, []string{"subscription"}),
		stepStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgshift_step_status",
			Help: "1 for the step's current status, 0 for the others (pending, running, done, failed, upstream-failed, rolling-back, rolled-back, rollback-failed).",
		}, []string{"step", "status"}),
		stepDuration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgshift_step_duration_seconds",
			Help: "How long the step's last apply or rollback took.",
		}, []string{"step", "operation"}),
		stepRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgshift_step_runs_total",
			Help: "Step applies and rollbacks run by this process, by outcome.",
		}, []string{"step", "operation", "result"}),
		applySteps: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgshift_apply_steps",
			Help: "Steps in the running apply's graph.",
		}),
		applyStepsDone: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgshift_apply_steps_done",
			Help: "Steps of the running apply's graph that are done (those done by earlier runs included).",
		}),
	}
	m.Registry.MustRegister(m.replicationLag, m.stepStatus, m.stepDuration, m.stepRuns, m.applySteps, m.applyStepsDone)
	return m
}

// SetReplicationLag reports the lag of one subscription.
func (m *Metrics) SetReplicationLag(subscription string, bytes int64) {
	if m == nil {
		return
	}
	m.replicationLag.WithLabelValues(subscription).Set(float64(bytes))
}

// SetStepStatus sets the step's status series: 1 for status, 0 for the rest.
func (m *Metrics) SetStepStatus(step string, status Status) {
	if m == nil {
		return
	}
	for _, s := range allStatuses {
		v := 0.0
		if s == status {
			v = 1
		}
		m.stepStatus.WithLabelValues(step, string(s)).Set(v)
	}
}

// StepFinished records one apply or rollback of a step ("ok" or "error").
func (m *Metrics) StepFinished(step, operation string, d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.stepDuration.WithLabelValues(step, operation).Set(d.Seconds())
	m.stepRuns.WithLabelValues(step, operation, result).Inc()
}

// SetApplyProgress reports how many of the graph's steps are done.
func (m *Metrics) SetApplyProgress(done, total int) {
	if m == nil {
		return
	}
	m.applySteps.Set(float64(total))
	m.applyStepsDone.Set(float64(done))
}

// Serve exposes the registry at http://addr/metrics until ctx ends or the
// returned stop function is called. It fails at once when addr is taken.
func (m *Metrics) Serve(ctx context.Context, addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w (choose another address with --metrics-listen or metrics.listen)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener is gone; apply goes on without metrics
		}
	}()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	var once bool
	return func() {
		if !once {
			once = true
			close(done)
		}
	}, nil
}
