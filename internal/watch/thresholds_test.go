package watch

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/internal/pg"
)

func TestThresholdsCrossOnceRecoverOnce(t *testing.T) {
	var th Thresholds
	steps := []struct {
		name string
		in   []Reading
		want []Transition
	}{
		{"under", []Reading{{Key: "max_lag", Over: false, Known: true}}, nil},
		{"crossed", []Reading{{Key: "max_lag", Over: true, Known: true}}, []Transition{{Key: "max_lag", Over: true}}},
		{"still over: no repeat", []Reading{{Key: "max_lag", Over: true, Known: true}}, nil},
		{"unknown: no change", []Reading{{Key: "max_lag", Known: false}}, nil},
		{"still over after unknown", []Reading{{Key: "max_lag", Over: true, Known: true}}, nil},
		{"recovered", []Reading{{Key: "max_lag", Over: false, Known: true}}, []Transition{{Key: "max_lag", Over: false}}},
		{"under again: nothing", []Reading{{Key: "max_lag", Over: false, Known: true}}, nil},
		{"two cross at once, in key order", []Reading{
			{Key: "max_retained_wal/b", Over: true, Known: true},
			{Key: "max_retained_wal/a", Over: true, Known: true},
		}, []Transition{{Key: "max_retained_wal/a", Over: true}, {Key: "max_retained_wal/b", Over: true}}},
		{"a key that is gone recovers", []Reading{{Key: "max_retained_wal/a", Over: true, Known: true}},
			[]Transition{{Key: "max_retained_wal/b", Over: false}}},
	}
	for _, s := range steps {
		if got := th.Update(s.in); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s: transitions %v, want %v", s.name, got, s.want)
		}
	}
	if got := th.Crossed(); !reflect.DeepEqual(got, []string{"max_retained_wal/a"}) {
		t.Fatalf("crossed %v", got)
	}
}

// sample is a complete collection with the given lag and retained WAL on
// slot s1.
func sample(lag, retained int64, walStatus string) *Sample {
	return &Sample{
		At:         time.Now(),
		Replicated: true,
		Progress: pg.Progress{
			Subscription: pg.Subscription{Exists: true, Enabled: true},
			Tables:       []pg.RelState{{Table: "public.t", State: "r"}},
			Ready:        1,
			Slot:         pg.SlotStatus{Exists: true, LagBytes: lag},
		},
		Slots:                 []SlotSample{{Name: "s1", Exists: true, Active: true, WALStatus: walStatus, RetainedBytes: retained, ConfirmedLag: lag}},
		MaxSlotWALKeepSize:    -1,
		HasMaxSlotWALKeepSize: true,
		ApplyWorkerUp:         true,
	}
}

// TestWatcherWarnsOncePerCrossing feeds samples to the watcher and reads
// its log: one warning naming the setting and the fix per crossing, one
// info per recovery, and /healthz failing while a threshold is crossed.
func TestWatcherWarnsOncePerCrossing(t *testing.T) {
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	w := newWatcher(Options{
		Collector: &Collector{Slot: "s1", Subscription: "sub"},
		Limits:    Limits{MaxLag: 1000, MaxRetainedWAL: 5000, CutoverLag: 16 << 20},
		Log:       log,
	})
	count := func(substr string) int { return strings.Count(logs.String(), substr) }

	w.observe(sample(10, 100, "reserved"))
	if ok, reason := w.healthz(); !ok || !strings.HasPrefix(reason, "ok:") {
		t.Fatalf("healthy sample: healthz %v %q", ok, reason)
	}
	for range 3 {
		w.observe(sample(2000, 100, "reserved"))
	}
	if n := count("is over watch.max_lag"); n != 1 {
		t.Fatalf("%d lag warnings for one crossing, want 1:\n%s", n, logs.String())
	}
	if ok, reason := w.healthz(); ok || reason != "unhealthy: lag 2.0 KiB over watch.max_lag 1000 B" {
		t.Fatalf("lag over threshold: healthz %v %q", ok, reason)
	}
	// A failed collection neither clears nor repeats the warning.
	w.observe(&Sample{Err: errors.New("blue: connect to postgres://x@h:1/db: refused"), BlueErr: errors.New("refused")})
	if ok, reason := w.healthz(); ok || !strings.Contains(reason, "blue: connect") || strings.Contains(reason, "\n") {
		t.Fatalf("failed collection: healthz %v %q", ok, reason)
	}
	w.observe(sample(2000, 100, "reserved"))
	w.observe(sample(10, 100, "reserved"))
	w.observe(sample(10, 100, "reserved"))
	if n, r := count("is over watch.max_lag"), count("replication lag back under watch.max_lag"); n != 1 || r != 1 {
		t.Fatalf("%d warnings, %d recoveries, want 1 and 1:\n%s", n, r, logs.String())
	}
	if count("watch cannot read everything") != 1 || count("watch reads blue and green again") != 1 {
		t.Fatalf("collection failure and recovery not logged once each:\n%s", logs.String())
	}

	w.observe(sample(10, 9000, "reserved"))
	w.observe(sample(10, 9000, "unreserved"))
	w.observe(sample(10, 9000, "unreserved"))
	out := logs.String()
	for _, want := range []string{
		`blue retains 8.8 KiB of WAL for replication slot "s1", over watch.max_retained_wal 4.9 KiB`,
		"pgshift rollback -f SPEC", // the fix
		"max_slot_wal_keep_size on blue is unlimited",
		`replication slot "s1" is unreserved`,
	} {
		if strings.Count(out, want) != 1 {
			t.Fatalf("log should say %q once:\n%s", want, out)
		}
	}
	w.observe(sample(10, 100, "reserved"))
	if count("back under watch.max_retained_wal") != 1 || count("replication slot usable again") != 1 {
		t.Fatalf("recoveries not logged:\n%s", logs.String())
	}
	if ok, _ := w.healthz(); !ok {
		t.Fatal("healthz still failing after recovery")
	}
}

func TestReadyForCutover(t *testing.T) {
	c := &Collector{CutoverLag: 100, lastApplyErrors: -1}
	s := sample(10, 100, "reserved")
	s.Progress.ApplyErrors = 0
	s.Ready = c.judge(s)
	if !s.ReadyForCutover() {
		t.Fatalf("healthy sample not ready: %v", s.Ready)
	}
	for _, tc := range []struct {
		name  string
		spoil func(*Sample)
		cond  string
	}{
		{"a table still copying", func(s *Sample) { s.Progress.Ready = 0; s.Progress.Tables[0].State = "d" }, CondTablesReady},
		{"lag over the cutover threshold", func(s *Sample) { s.Progress.Slot.LagBytes = 101 }, CondLag},
		{"slot lost", func(s *Sample) { s.Progress.Slot.Lost = true }, CondLag},
		{"apply worker down", func(s *Sample) { s.ApplyWorkerUp = false }, CondApplyWorker},
		{"apply errors on the first collection", func(s *Sample) { s.Progress.ApplyErrors = 3 }, CondNoApplyErrors},
	} {
		s := sample(10, 100, "reserved")
		tc.spoil(s)
		s.Ready = c.judge(s)
		if s.ReadyForCutover() {
			t.Errorf("%s: ready", tc.name)
		}
		for _, cond := range s.Ready {
			if cond.Name == tc.cond && cond.OK {
				t.Errorf("%s: condition %s holds", tc.name, tc.cond)
			}
		}
	}

	// Errors counted long ago do not block: only new ones do.
	c.lastApplyErrors = 3
	s = sample(10, 100, "reserved")
	s.Progress.ApplyErrors = 3
	if s.Ready = c.judge(s); !s.ReadyForCutover() {
		t.Fatalf("old apply errors block: %v", s.Ready)
	}
	s.Progress.ApplyErrors = 4
	if s.Ready = c.judge(s); s.ReadyForCutover() {
		t.Fatal("a new apply error does not block")
	}
	// Unknown error counts (green before 15) and no drift function: the
	// conditions are left out, not assumed.
	s.Progress.ApplyErrors = -1
	for _, cond := range c.judge(s) {
		if cond.Name == CondNoApplyErrors || cond.Name == CondNoDrift {
			t.Fatalf("condition %s judged without data", cond.Name)
		}
	}
	// Drift measured: a difference blocks.
	c.Drift = func(context.Context) (int, error) { return 0, nil }
	s = sample(10, 100, "reserved")
	s.DriftMeasured, s.Drift = true, 2
	s.Progress.ApplyErrors = 3
	if s.Ready = c.judge(s); s.ReadyForCutover() {
		t.Fatal("schema drift does not block")
	}
	s.Drift = 0
	if s.Ready = c.judge(s); !s.ReadyForCutover() {
		t.Fatalf("no drift, still not ready: %v", s.Ready)
	}
}
