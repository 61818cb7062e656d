package engine

import "github.com/prometheus/client_golang/prometheus"

// ObserveCutoverPause records the write pause of a cutover ("cutover") or of
// its rollback ("rollback"): freeze to unfreeze, in seconds. The gauge is
// registered on first use so that runs without a cutover do not export it.
func (m *Metrics) ObserveCutoverPause(operation string, seconds float64) {
	if m == nil || m.Registry == nil {
		return
	}
	var g *prometheus.GaugeVec = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pgshift_cutover_pause_seconds",
		Help: "Write pause of the last cutover or cutover rollback, from freeze to unfreeze.",
	}, []string{"operation"})
	if err := m.Registry.Register(g); err != nil {
		are, ok := err.(prometheus.AlreadyRegisteredError)
		if !ok {
			return
		}
		g, ok = are.ExistingCollector.(*prometheus.GaugeVec)
		if !ok {
			return
		}
	}
	g.WithLabelValues(operation).Set(seconds)
}
