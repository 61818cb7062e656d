// Package watch is `pgshift watch`: between apply and the cutover, it reads
// blue, green and the state file every interval, read-only, serves what it
// read as Prometheus metrics with a health check, and logs a warning that
// names the fix when a threshold of the spec is crossed.
//
// One concept per file: collect.go reads a Sample, metrics.go turns the
// latest one into metrics, thresholds.go remembers which thresholds are
// crossed so that each crossing is told once, server.go serves HTTP, and
// this file runs the loop.
package watch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/prometheus/client_golang/prometheus"
)

// VerifyResult is the outcome of one verify run by watch.
type VerifyResult struct {
	Passed  bool
	Summary string
}

// Options configure a watch.
type Options struct {
	Collector *Collector
	Listen    string        // host:port serving /metrics and /healthz
	Interval  time.Duration // between collections
	Limits    Limits
	// VerifyEvery runs Verify when the last verify (the state file's or
	// watch's own) is older than that; 0 or a nil Verify: never.
	VerifyEvery time.Duration
	Verify      func(ctx context.Context) (VerifyResult, error)
	Log         hclog.Logger
	// Commands the warnings name: status and rollback with the user's
	// spec flags (defaults: "pgshift status -f SPEC", "pgshift rollback -f SPEC").
	StatusCommand, RollbackCommand string
	// Started, when set, is called with the address served, once listening.
	Started func(addr string)
}

// watcher is one running watch.
type watcher struct {
	o          Options
	exp        *exporter
	thresholds Thresholds // max_lag, max_retained_wal, slot status
	reach      Thresholds // the collection itself

	mu     sync.Mutex
	health string // why the last collection is unhealthy; "" healthy
	at     time.Time

	verifying   bool
	lastAttempt time.Time
}

// Run watches until ctx ends, then shuts the HTTP server down and returns
// nil. It fails at once when the address cannot be bound.
func Run(ctx context.Context, o Options) error {
	w := newWatcher(o)
	o = w.o
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.exp)
	srv, err := listen(o.Listen, reg, w.healthz)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.serve() }()
	o.Log.Info("watching", "metrics", "http://"+srv.Addr()+"/metrics", "healthz", "http://"+srv.Addr()+"/healthz",
		"interval", o.Interval.String(), "slot", o.Collector.Slot, "subscription", o.Collector.Subscription)
	if o.Started != nil {
		o.Started(srv.Addr())
	}

	var verifies sync.WaitGroup
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		w.collect(ctx)
		w.maybeVerify(ctx, &verifies)
		select {
		case <-ctx.Done():
			verifies.Wait()
			err := srv.shutdown()
			o.Log.Info("watch stopped")
			return err
		case err := <-served:
			verifies.Wait()
			return fmt.Errorf("watch: serving %s: %w", srv.Addr(), err)
		case <-tick.C:
		}
	}
}

func newWatcher(o Options) *watcher {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Interval <= 0 {
		o.Interval = 15 * time.Second
	}
	if o.StatusCommand == "" {
		o.StatusCommand = "pgshift status -f SPEC"
	}
	if o.RollbackCommand == "" {
		o.RollbackCommand = "pgshift rollback -f SPEC"
	}
	return &watcher{o: o, exp: newExporter(o.Collector.Subscription, o.Limits), health: "no collection yet"}
}

// collect takes one sample, publishes it, and logs what changed.
func (w *watcher) collect(ctx context.Context) {
	timeout := min(max(w.o.Interval, 5*time.Second), time.Minute)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	s := w.o.Collector.Collect(cctx)
	cancel()
	if ctx.Err() != nil {
		return // stopping: a collection cut short says nothing about the servers
	}
	w.observe(s)
}

// observe publishes a sample, logs the crossings and recoveries it brings,
// and sets the health check.
func (w *watcher) observe(s *Sample) {
	w.exp.set(s)

	for _, t := range w.reach.Update([]Reading{
		{Key: "collection", Over: s.Err != nil, Known: true},
		{Key: "state", Over: s.StateErr != nil, Known: true},
		{Key: "sync_slots", Over: s.SyncSlotsUnknown, Known: s.SlotsRead},
	}) {
		switch {
		case t.Key == "sync_slots" && t.Over:
			w.o.Log.Warn(fmt.Sprintf("watch has not reached green since it started, so it cannot tell which slots on blue are the table-sync slots of subscription %q (their names carry the subscription's OID, which only green knows): the WAL they retain is not measured, and watch.max_retained_wal watches slot %q alone until green answers",
				w.o.Collector.Subscription, w.o.Collector.Slot), "subscription", w.o.Collector.Subscription)
		case t.Key == "sync_slots":
			w.o.Log.Info("the subscription's table-sync slots on blue are watched again", "subscription", w.o.Collector.Subscription)
		case t.Key == "collection" && t.Over:
			w.o.Log.Warn("watch cannot read everything; its metrics are partial and /healthz fails until it can", "error", s.Err)
		case t.Key == "collection":
			w.o.Log.Info("watch reads blue and green again")
		case t.Over:
			w.o.Log.Warn("state file unreadable: step status and the verify step's time are not exported until it is", "error", s.StateErr)
		default:
			w.o.Log.Info("state file readable again")
		}
	}
	if s.Replicated || s.SlotsRead {
		for _, t := range w.thresholds.Update(w.readings(s)) {
			w.logTransition(t, s)
		}
	}
	w.o.Log.Debug("collected", "duration", s.Duration.Round(time.Millisecond).String(), "complete", s.Err == nil,
		"ready_for_cutover", s.ReadyForCutover())

	reason := ""
	switch {
	case s.Err != nil:
		reason = s.Err.Error()
	case len(w.thresholds.Crossed()) > 0:
		var over []string
		for _, k := range w.thresholds.Crossed() {
			over = append(over, w.describe(k, s))
		}
		reason = strings.Join(over, "; ")
	}
	w.mu.Lock()
	w.health, w.at = reason, s.At
	w.mu.Unlock()
}

// Threshold keys.
const (
	keyMaxLag      = "max_lag"
	keyMaxRetained = "max_retained_wal/"
	keySlot        = "slot_usable/"
)

// readings turns a sample into threshold verdicts: all of them from a
// complete one, the slots' alone when only blue could be read (the lag is
// then unknown, so its warning stays as it was).
func (w *watcher) readings(s *Sample) []Reading {
	lag := s.Progress.Slot.LagBytes
	rs := []Reading{{Key: keyMaxLag, Over: lag > w.o.Limits.MaxLag, Known: s.Replicated && lag >= 0}}
	for _, sl := range s.Slots {
		if sl.Exists && sl.RetainedBytes >= 0 {
			rs = append(rs, Reading{Key: keyMaxRetained + sl.Name, Over: sl.RetainedBytes > w.o.Limits.MaxRetainedWAL, Known: true})
		}
	}
	if main := s.MainSlot(w.o.Collector.Slot); main != nil {
		rs = append(rs, Reading{Key: keySlot + main.Name, Over: !main.Exists || main.WALStatus == "lost" || main.WALStatus == "unreserved", Known: true})
	}
	return rs
}

// describe says in a few words why a crossed threshold is crossed, for
// /healthz.
func (w *watcher) describe(key string, s *Sample) string {
	switch {
	case key == keyMaxLag:
		return fmt.Sprintf("lag %s over watch.max_lag %s", words.Bytes(s.Progress.Slot.LagBytes), words.Bytes(w.o.Limits.MaxLag))
	case strings.HasPrefix(key, keyMaxRetained):
		name := strings.TrimPrefix(key, keyMaxRetained)
		if sl := s.MainSlot(name); sl != nil {
			return fmt.Sprintf("slot %s retains %s of WAL, over watch.max_retained_wal %s", name, words.Bytes(sl.RetainedBytes), words.Bytes(w.o.Limits.MaxRetainedWAL))
		}
	case strings.HasPrefix(key, keySlot):
		name := strings.TrimPrefix(key, keySlot)
		if sl := s.MainSlot(name); sl != nil && sl.Exists {
			return fmt.Sprintf("slot %s is %s", name, sl.WALStatus)
		}
		return fmt.Sprintf("slot %s does not exist on blue", name)
	}
	return key
}

// logTransition logs a crossing as a warning that names the fix, and a
// recovery as an info.
func (w *watcher) logTransition(t Transition, s *Sample) {
	log := w.o.Log
	switch {
	case t.Key == keyMaxLag && t.Over:
		log.Warn(fmt.Sprintf("replication lag %s is over watch.max_lag %s: green applies blue's changes slower than blue writes them, and the cutover waits for lag under %s. Look at green's apply worker (%s, green's server log), green's CPU and I/O, and long transactions on blue",
			words.Bytes(s.Progress.Slot.LagBytes), words.Bytes(w.o.Limits.MaxLag), words.Bytes(w.o.Limits.CutoverLag), w.o.StatusCommand),
			"slot", w.o.Collector.Slot, "lag_bytes", s.Progress.Slot.LagBytes)
	case t.Key == keyMaxLag:
		log.Info("replication lag back under watch.max_lag", "lag", words.Bytes(s.Progress.Slot.LagBytes), "max_lag", words.Bytes(w.o.Limits.MaxLag))
	case strings.HasPrefix(t.Key, keyMaxRetained):
		name := strings.TrimPrefix(t.Key, keyMaxRetained)
		sl := s.MainSlot(name)
		if !t.Over {
			if sl != nil && sl.Exists {
				log.Info("WAL retained for the slot back under watch.max_retained_wal", "slot", name, "retained", words.Bytes(sl.RetainedBytes))
			} else {
				log.Info("slot gone: it retains no WAL any more", "slot", name)
			}
			return
		}
		keep := "unlimited, so the slot keeps WAL until blue's disk is full"
		if s.HasMaxSlotWALKeepSize && s.MaxSlotWALKeepSize >= 0 {
			keep = words.Bytes(s.MaxSlotWALKeepSize) + ": past it blue invalidates the slot and the sync must start over"
		} else if !s.HasMaxSlotWALKeepSize {
			keep = "not available before PostgreSQL 13, so the slot keeps WAL until blue's disk is full"
		}
		log.Warn(fmt.Sprintf("blue retains %s of WAL for replication slot %q, over watch.max_retained_wal %s: blue keeps it until green confirms it. Make green catch up (%s says why it lags), give blue's pg_wal more disk, or stop the growth for good with %s (the sync starts over). max_slot_wal_keep_size on blue is %s",
			words.Bytes(sl.RetainedBytes), name, words.Bytes(w.o.Limits.MaxRetainedWAL), w.o.StatusCommand, w.o.RollbackCommand, keep),
			"slot", name, "retained_bytes", sl.RetainedBytes)
	case strings.HasPrefix(t.Key, keySlot):
		name := strings.TrimPrefix(t.Key, keySlot)
		sl := s.MainSlot(name)
		switch {
		case !t.Over:
			log.Info("replication slot usable again", "slot", name, "wal_status", sl.WALStatus)
		case !sl.Exists:
			log.Warn(fmt.Sprintf("replication slot %q does not exist on blue: green no longer follows blue. Undo the upgrade with %s and apply again", name, w.o.RollbackCommand), "slot", name)
		case sl.WALStatus == "lost":
			log.Warn(pg.SlotLostError(name).Error(), "slot", name)
		default:
			log.Warn(fmt.Sprintf("replication slot %q is unreserved: blue is past max_slot_wal_keep_size and invalidates the slot at its next checkpoint unless green catches up first. Raise max_slot_wal_keep_size on blue now (ALTER SYSTEM SET max_slot_wal_keep_size = ...; SELECT pg_reload_conf())", name),
				"slot", name, "wal_status", sl.WALStatus)
		}
	}
}

// maybeVerify starts a verify when one is due and none runs.
func (w *watcher) maybeVerify(ctx context.Context, wg *sync.WaitGroup) {
	if w.o.VerifyEvery <= 0 || w.o.Verify == nil || ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	last, _ := w.exp.lastVerify()
	if w.verifying || time.Since(last) < w.o.VerifyEvery || time.Since(w.lastAttempt) < w.o.VerifyEvery {
		return
	}
	w.verifying, w.lastAttempt = true, time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.o.Log.Info("verify due (watch.verify_every)", "every", w.o.VerifyEvery.String())
		res, err := w.o.Verify(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			w.exp.verified(time.Now(), "error")
			w.o.Log.Warn("verify could not run; watch tries again after watch.verify_every", "error", err)
		case res.Passed:
			w.exp.verified(time.Now(), "passed")
			w.o.Log.Info("verify passed", "summary", res.Summary)
		default:
			w.exp.verified(time.Now(), "failed")
			w.o.Log.Warn("verify found differences between blue and green: do not cut over; "+w.o.StatusCommand+" and docs/verify.md say how to find the cause", "summary", res.Summary)
		}
		w.mu.Lock()
		w.verifying = false
		w.mu.Unlock()
	}()
}

// healthz is the health check: healthy when the last collection read both
// servers completely, recently, and no threshold is crossed.
func (w *watcher) healthz() (bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	stale := 3*w.o.Interval + time.Minute
	switch {
	case w.at.IsZero():
		return false, "unhealthy: " + w.health
	case time.Since(w.at) > stale:
		return false, fmt.Sprintf("unhealthy: the last collection started %s ago", time.Since(w.at).Round(time.Second))
	case w.health != "":
		return false, "unhealthy: " + oneLine(w.health)
	}
	return true, fmt.Sprintf("ok: blue and green read %s ago", time.Since(w.at).Round(time.Millisecond))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
