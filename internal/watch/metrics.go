package watch

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits are the thresholds watch exports beside the values, so that
// dashboards draw them and alerts compare against the spec's own numbers.
type Limits struct {
	MaxLag         int64 // watch.max_lag
	MaxRetainedWAL int64 // watch.max_retained_wal
	CutoverLag     int64 // the lag the cutover accepts
}

// exporter turns the latest sample into Prometheus metrics at each scrape:
// a scrape sees one collection whole, never half of one and half of the next.
type exporter struct {
	subscription string
	limits       Limits

	mu           sync.Mutex
	sample       *Sample
	ok, failed   float64 // collections by result
	verifyAt     time.Time
	verifyPassed bool
	verifyRuns   map[string]float64 // watch's own verifies by result
}

func newExporter(subscription string, limits Limits) *exporter {
	return &exporter{subscription: subscription, limits: limits, verifyRuns: map[string]float64{}}
}

// set publishes a sample.
func (e *exporter) set(s *Sample) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sample = s
	if s.Err == nil {
		e.ok++
	} else {
		e.failed++
	}
}

// verified records a verify run by watch: result is passed, failed or error.
func (e *exporter) verified(at time.Time, result string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.verifyRuns[result]++
	if result != "error" {
		e.verifyAt, e.verifyPassed = at, result == "passed"
	}
}

// lastVerify is the latest verify: the state file's or watch's own.
func (e *exporter) lastVerify() (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastVerifyLocked()
}

func (e *exporter) lastVerifyLocked() (time.Time, bool) {
	at, passed := e.verifyAt, e.verifyPassed
	if s := e.sample; s != nil && s.State != nil && s.State.VerifyFinished.After(at) {
		at, passed = s.State.VerifyFinished, s.State.VerifyPassed
	}
	return at, passed
}

// Describe sends nothing: the exporter is an unchecked collector, since
// which series exist depends on what the servers answered.
func (e *exporter) Describe(chan<- *prometheus.Desc) {}

var (
	descUp = prometheus.NewDesc("pgshift_watch_up",
		"1 when the last collection reached blue and green and read everything, 0 otherwise.", nil, nil)
	descServerUp = prometheus.NewDesc("pgshift_watch_server_up",
		"1 when the last collection reached the side (blue or green).", []string{"side"}, nil)
	descLastCollection = prometheus.NewDesc("pgshift_watch_last_collection_timestamp_seconds",
		"When the last collection started, in Unix seconds.", nil, nil)
	descCollectionDuration = prometheus.NewDesc("pgshift_watch_collection_duration_seconds",
		"How long the last collection took.", nil, nil)
	descCollections = prometheus.NewDesc("pgshift_watch_collections_total",
		"Collections by result (ok: everything read; error: something could not be read).", []string{"result"}, nil)
	descMaxLag = prometheus.NewDesc("pgshift_watch_max_lag_bytes",
		"watch.max_lag of the spec: lag above which watch warns.", nil, nil)
	descMaxRetained = prometheus.NewDesc("pgshift_watch_max_retained_wal_bytes",
		"watch.max_retained_wal of the spec: WAL retained for a slot above which watch warns.", nil, nil)
	descCutoverLag = prometheus.NewDesc("pgshift_cutover_lag_threshold_bytes",
		"The replication lag the cutover accepts (max(cutover.max_lag_bytes, 16 MiB)).", nil, nil)

	descReplicationLag = prometheus.NewDesc("pgshift_replication_lag_bytes",
		"Bytes of WAL between blue's current position and the slot's confirmed flush position.", []string{"subscription"}, nil)
	descSlotLag = prometheus.NewDesc("pgshift_slot_lag_bytes",
		"Bytes of WAL between blue's current position and the slot's position at a stage: sent (by blue's walsender), flushed and applied (as green reports them), confirmed (the slot's confirmed_flush_lsn).", []string{"slot", "stage"}, nil)
	descSlotRetained = prometheus.NewDesc("pgshift_slot_retained_wal_bytes",
		"WAL blue keeps for the slot: its current position minus the slot's restart_lsn.", []string{"slot"}, nil)
	descSlotSafeWAL = prometheus.NewDesc("pgshift_slot_safe_wal_bytes",
		"WAL blue may still write before the slot is lost (safe_wal_size; PostgreSQL 13+ with max_slot_wal_keep_size set).", []string{"slot"}, nil)
	descSlotExists = prometheus.NewDesc("pgshift_slot_exists",
		"1 when the slot exists on blue.", []string{"slot"}, nil)
	descSlotActive = prometheus.NewDesc("pgshift_slot_active",
		"1 when a walsender streams from the slot.", []string{"slot"}, nil)
	descSlotWALStatus = prometheus.NewDesc("pgshift_slot_wal_status",
		"1 for the slot's wal_status (reserved, extended, unreserved, lost), 0 for the others (PostgreSQL 13+).", []string{"slot", "status"}, nil)
	descMaxSlotKeep = prometheus.NewDesc("pgshift_blue_max_slot_wal_keep_size_bytes",
		"max_slot_wal_keep_size on blue in bytes; -1: unlimited (PostgreSQL 13+).", nil, nil)

	descSubExists = prometheus.NewDesc("pgshift_subscription_exists",
		"1 when the subscription exists on green.", []string{"subscription"}, nil)
	descSubEnabled = prometheus.NewDesc("pgshift_subscription_enabled",
		"1 when the subscription is enabled on green.", []string{"subscription"}, nil)
	descApplyWorker = prometheus.NewDesc("pgshift_apply_worker_up",
		"1 when the subscription's apply worker runs on green.", []string{"subscription"}, nil)
	descApplyErrors = prometheus.NewDesc("pgshift_subscription_apply_errors_total",
		"Errors of the subscription's apply worker since it was created (pg_stat_subscription_stats, green 15+).", []string{"subscription"}, nil)
	descSyncErrors = prometheus.NewDesc("pgshift_subscription_sync_errors_total",
		"Errors of the subscription's table-sync workers since it was created (pg_stat_subscription_stats, green 15+).", []string{"subscription"}, nil)
	descTableSync = prometheus.NewDesc("pgshift_table_sync_state",
		"1 for the table's sync state on green (i initialize, d copying data, f copy finished, s synchronized, r ready), 0 for the others.", []string{"table", "state"}, nil)

	descDrift = prometheus.NewDesc("pgshift_schema_drift_items",
		"Differences between blue's and green's definitions of the replicated tables.", nil, nil)
	descVerifyAge = prometheus.NewDesc("pgshift_verify_age_seconds",
		"Seconds since the last verify finished (the state file's verify step, or watch's own periodic verify).", nil, nil)
	descVerifyPassed = prometheus.NewDesc("pgshift_verify_passed",
		"1 when the last verify found blue and green equal, 0 when it found differences.", nil, nil)
	descVerifyRuns = prometheus.NewDesc("pgshift_watch_verify_runs_total",
		"Verifies run by watch (watch.verify_every), by result: passed, failed, error.", []string{"result"}, nil)
	descStepStatus = prometheus.NewDesc("pgshift_step_status",
		"1 for the step's status in the state file, 0 for the others.", []string{"step", "status"}, nil)

	descReady = prometheus.NewDesc("pgshift_ready_for_cutover",
		"1 when every ready condition holds: every table ready, lag under the cutover threshold, the apply worker up, no new apply errors, no schema drift.", nil, nil)
	descReadyCond = prometheus.NewDesc("pgshift_ready_for_cutover_condition",
		"1 when the condition of ready-for-cutover holds, 0 when it does not; conditions that cannot be judged are absent.", []string{"condition"}, nil)
)

var syncStates = []string{"i", "d", "f", "s", "r"}
var walStatuses = []string{"reserved", "extended", "unreserved", "lost"}

// Collect emits the latest sample.
func (e *exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descMaxLag, float64(e.limits.MaxLag))
	gauge(descMaxRetained, float64(e.limits.MaxRetainedWAL))
	gauge(descCutoverLag, float64(e.limits.CutoverLag))
	counter(descCollections, e.ok, "ok")
	counter(descCollections, e.failed, "error")
	for _, r := range []string{"passed", "failed", "error"} {
		counter(descVerifyRuns, e.verifyRuns[r], r)
	}

	s := e.sample
	if s == nil {
		gauge(descUp, 0)
		return
	}
	gauge(descUp, b2f(s.Err == nil))
	gauge(descServerUp, b2f(s.BlueErr == nil), "blue")
	gauge(descServerUp, b2f(s.GreenErr == nil), "green")
	gauge(descLastCollection, float64(s.At.UnixMilli())/1000)
	gauge(descCollectionDuration, s.Duration.Seconds())

	if at, passed := e.lastVerifyLocked(); !at.IsZero() {
		gauge(descVerifyAge, time.Since(at).Seconds())
		gauge(descVerifyPassed, b2f(passed))
	}
	if st := s.State; st != nil {
		for _, step := range st.Steps {
			for _, status := range st.Statuses {
				gauge(descStepStatus, b2f(step.Status == status), step.ID, status)
			}
		}
	}
	gauge(descReady, b2f(s.ReadyForCutover()))
	if s.SlotsRead || s.Replicated {
		e.slotsLocked(s, gauge)
	}
	if !s.Replicated {
		return
	}

	p := s.Progress
	sub := e.subscription
	if p.Slot.Exists && p.Slot.LagBytes >= 0 {
		gauge(descReplicationLag, float64(p.Slot.LagBytes), sub)
	}

	gauge(descSubExists, b2f(p.Subscription.Exists), sub)
	if p.Subscription.Exists {
		gauge(descSubEnabled, b2f(p.Subscription.Enabled), sub)
		gauge(descApplyWorker, b2f(s.ApplyWorkerUp), sub)
		if p.ApplyErrors >= 0 {
			counter(descApplyErrors, float64(p.ApplyErrors), sub)
			counter(descSyncErrors, float64(p.SyncErrors), sub)
		}
	}
	for _, t := range p.Tables {
		for _, st := range syncStates {
			gauge(descTableSync, b2f(t.State == st), t.Table, st)
		}
	}
	if s.DriftMeasured {
		gauge(descDrift, float64(s.Drift))
	}
	for _, c := range s.Ready {
		gauge(descReadyCond, b2f(c.OK), c.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// slotsLocked exports blue's slots, also from a sample where green was out
// of reach. e.mu is held.
func (e *exporter) slotsLocked(s *Sample, gauge func(d *prometheus.Desc, v float64, labels ...string)) {
	for _, sl := range s.Slots {
		gauge(descSlotExists, b2f(sl.Exists), sl.Name)
		if !sl.Exists {
			continue
		}
		gauge(descSlotActive, b2f(sl.Active), sl.Name)
		for _, st := range []struct {
			stage string
			v     int64
		}{{"sent", sl.SentLag}, {"flushed", sl.FlushLag}, {"applied", sl.ApplyLag}, {"confirmed", sl.ConfirmedLag}} {
			if st.v >= 0 {
				gauge(descSlotLag, float64(st.v), sl.Name, st.stage)
			}
		}
		if sl.RetainedBytes >= 0 {
			gauge(descSlotRetained, float64(sl.RetainedBytes), sl.Name)
		}
		if sl.HasSafeWAL {
			gauge(descSlotSafeWAL, float64(sl.SafeWALBytes), sl.Name)
		}
		if sl.WALStatus != "" {
			for _, w := range walStatuses {
				gauge(descSlotWALStatus, b2f(sl.WALStatus == w), sl.Name, w)
			}
		}
	}
	if s.HasMaxSlotWALKeepSize {
		gauge(descMaxSlotKeep, float64(s.MaxSlotWALKeepSize))
	}
}
