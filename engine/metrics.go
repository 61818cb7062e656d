package engine

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is pgshift's Prometheus registry. Every method is safe on a nil
// receiver so that steps can report without checking.
type Metrics struct {
	Registry *prometheus.Registry

	replicationLag *prometheus.GaugeVec
}

// NewMetrics registers pgshift's metrics on a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		replicationLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgshift_replication_lag_bytes",
			Help: "Bytes of WAL between blue's current position and the slot's confirmed flush position.",
		}, []string{"subscription"}),
	}
	m.Registry.MustRegister(m.replicationLag)
	return m
}

// SetReplicationLag reports the lag of one subscription.
func (m *Metrics) SetReplicationLag(subscription string, bytes int64) {
	if m == nil {
		return
	}
	m.replicationLag.WithLabelValues(subscription).Set(float64(bytes))
}
