package steps

import (
	"errors"

	"github.com/pgshift/pgshift/engine"
	"github.com/prometheus/client_golang/prometheus"
)

// verifyGauges are verify's progress metrics, registered on the run's
// registry the first time verify runs.
type verifyGauges struct {
	bytesChecked, bytesTotal, rowsChecked, differences prometheus.Gauge
}

func newVerifyGauges(m *engine.Metrics) *verifyGauges {
	if m == nil || m.Registry == nil {
		return nil
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		if err := m.Registry.Register(g); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(prometheus.Gauge); ok {
					return existing
				}
			}
			return g // unregistered: updates go nowhere, verify still runs
		}
		return g
	}
	return &verifyGauges{
		bytesChecked: gauge("pgshift_verify_bytes_checked", "Table bytes (blue's heap and TOAST) compared so far by the running verify."),
		bytesTotal:   gauge("pgshift_verify_bytes_total", "Table bytes (blue's heap and TOAST) the running verify compares."),
		rowsChecked:  gauge("pgshift_verify_rows_checked", "Rows compared so far by the running verify."),
		differences:  gauge("pgshift_verify_differences", "Differences the last verify found between blue and green."),
	}
}

func (g *verifyGauges) progress(rows, bytes, total int64) {
	if g == nil {
		return
	}
	g.rowsChecked.Set(float64(rows))
	g.bytesChecked.Set(float64(bytes))
	g.bytesTotal.Set(float64(total))
}

func (g *verifyGauges) finished(differences int) {
	if g == nil {
		return
	}
	g.differences.Set(float64(differences))
}
