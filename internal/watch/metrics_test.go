package watch

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestExporterSeries checks which series a complete sample and a failed
// one export, and that the names pass Prometheus's own lint.
func TestExporterSeries(t *testing.T) {
	e := newExporter("sub", Limits{MaxLag: 1, MaxRetainedWAL: 2, CutoverLag: 3})
	s := sample(10, 100, "reserved")
	s.Progress.ApplyErrors = 0
	s.DriftMeasured = true
	s.State = &StateReading{Steps: []StepStatus{{ID: "verify", Status: "done"}}, Statuses: []string{"pending", "done"},
		VerifyFinished: time.Now().Add(-time.Minute), VerifyPassed: true}
	s.Ready = (&Collector{lastApplyErrors: -1, CutoverLag: 100}).judge(s)
	e.set(s)

	names := gatheredNames(t, e)
	for _, want := range []string{
		"pgshift_watch_up", "pgshift_watch_server_up", "pgshift_replication_lag_bytes", "pgshift_slot_lag_bytes",
		"pgshift_slot_retained_wal_bytes", "pgshift_slot_wal_status", "pgshift_table_sync_state",
		"pgshift_subscription_apply_errors_total", "pgshift_subscription_sync_errors_total", "pgshift_schema_drift_items",
		"pgshift_verify_age_seconds", "pgshift_step_status", "pgshift_ready_for_cutover", "pgshift_ready_for_cutover_condition",
		"pgshift_watch_max_lag_bytes", "pgshift_watch_max_retained_wal_bytes", "pgshift_blue_max_slot_wal_keep_size_bytes",
	} {
		if !names[want] {
			t.Errorf("complete sample: %s missing", want)
		}
	}
	if got := value(t, e, "pgshift_ready_for_cutover"); got != 1 {
		t.Errorf("ready_for_cutover %v, want 1", got)
	}

	// Blue unreachable: what was not read is absent, not zero.
	e.set(&Sample{At: time.Now(), Err: errors.New("blue down"), BlueErr: errors.New("blue down")})
	names = gatheredNames(t, e)
	for _, gone := range []string{"pgshift_replication_lag_bytes", "pgshift_table_sync_state", "pgshift_schema_drift_items", "pgshift_slot_wal_status"} {
		if names[gone] {
			t.Errorf("failed collection still exports %s", gone)
		}
	}
	if got := value(t, e, "pgshift_watch_up"); got != 0 {
		t.Errorf("watch_up %v after a failed collection", got)
	}
}

func gatheredNames(t *testing.T, c prometheus.Collector) map[string]bool {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	var all []string
	for _, mf := range mfs {
		names[mf.GetName()] = true
		all = append(all, mf.GetName())
		if counter := mf.GetType().String() == "COUNTER"; counter != strings.HasSuffix(mf.GetName(), "_total") {
			t.Errorf("%s: counters, and only counters, end in _total", mf.GetName())
		}
		if !strings.HasPrefix(mf.GetName(), "pgshift_") {
			t.Errorf("%s: not named pgshift_...", mf.GetName())
		}
	}
	sort.Strings(all)
	t.Logf("series: %s", strings.Join(all, " "))
	return names
}

// value is the value of the one series of a metric without labels.
func value(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s: no single series", name)
	return 0
}
