package steps

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

func init() {
	register(func(spec *spec.Spec) []engine.Step { return []engine.Step{&catchupStep{spec: spec}} })
}

// catchupStep waits until every table of the subscription is ready (its
// initial copy done and merged into the stream) and the slot's lag is under
// catchupThreshold. It changes nothing, so it is idempotent by nature.
type catchupStep struct {
	spec *spec.Spec
	// poll and progress are the measuring and logging periods (tests may
	// shorten them).
	poll, progress time.Duration
	// maxErrors overrides maxWorkerErrors when set.
	maxErrors int64
}

// outageBound is how long catch-up waits for a side it lost.
func (s *catchupStep) outageBound() time.Duration { return s.spec.Replication.Outage() }

// workerErrorGrace is how long after an outage the subscription's worker
// errors are not held against it: while blue is down, and until its next
// attempt (wal_retrieve_retry_interval, 5s by default) after blue is back,
// the apply worker fails to connect, and green's own restart restarts it.
const workerErrorGrace = 30 * time.Second

func (s *catchupStep) ID() string { return stepid.Catchup }

// Rechecks: after the subscription took up new tables, catching up means
// their copy too.
func (s *catchupStep) Rechecks()       {}
func (s *catchupStep) Needs() []string { return []string{stepid.Subscription} }

// stallNudge is how long a lag may stay unchanged, with every table ready,
// before pgshift writes a tiny WAL message on blue so that the walsender
// sends and the subscriber confirms a fresh position.
const stallNudge = 20 * time.Second

// maxWorkerErrors is how many new worker errors (a table copy or the apply
// failing, then retrying every wal_retrieve_retry_interval) catch-up
// tolerates before giving up: one may be a blip, a run of them is a cause
// that will not go away by waiting.
const maxWorkerErrors = 5

func (s *catchupStep) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	threshold := pg.CatchupThreshold(s.spec.Cutover.MaxLagBytes)
	p, err := measureReplication(ctx, env, s.spec)
	if err != nil {
		return plans.Change{}, err
	}
	if !p.Subscription.Exists {
		return plans.Change{Action: plans.ActionCreate,
			Summary: fmt.Sprintf("wait until every table is ready and lag is under %s", words.Bytes(threshold))}, nil
	}
	summary := fmt.Sprintf("%d/%d tables ready, lag %s (threshold %s)", p.Ready, len(p.Tables), words.Bytes(p.Slot.LagBytes), words.Bytes(threshold))
	if p.CaughtUp(threshold) {
		return plans.Change{Action: plans.ActionNone, Summary: summary}, nil
	}
	return plans.Change{Action: plans.ActionCreate, Summary: "wait: " + summary}, nil
}

// Check rides out an outage during apply; a plan (env.Planning) reports it
// at once.
func (s *catchupStep) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	p, err := measureRiding(ctx, env, s.spec, newOutageRider(env, s.outageBound(), 0))
	if err != nil {
		return nil, err
	}
	return []plans.Precondition{
		{Name: "subscription exists on green", OK: p.Subscription.Exists, Detail: s.spec.SubscriptionName()},
		{Name: "slot exists on blue", OK: p.Slot.Exists, Detail: s.spec.SlotName()},
	}, nil
}

func (s *catchupStep) Apply(ctx context.Context, env *engine.Env) error {
	poll, every := s.poll, s.progress
	if poll == 0 {
		poll = time.Second
	}
	if every == 0 {
		every = 5 * time.Second
	}
	threshold := pg.CatchupThreshold(s.spec.Cutover.MaxLagBytes)
	sub := s.spec.SubscriptionName()
	var lastLog, lastMove time.Time
	lastLag := int64(-2)
	started := time.Now()
	baseSync, baseApply := int64(-1), int64(-1)
	maxErrors := s.maxErrors
	if maxErrors == 0 {
		maxErrors = maxWorkerErrors
	}
	var bar engine.ProgressBar // tables ready, with the lag beside it, on a terminal
	defer func() {
		if bar != nil {
			bar.Finish()
		}
	}()
	rider := newOutageRider(env, s.outageBound(), poll)
	for {
		p, err := measureRiding(ctx, env, s.spec, rider)
		if err != nil {
			return err
		}
		if bar == nil && len(p.Tables) > 0 {
			bar = env.StartProgress("catch-up: tables ready", int64(len(p.Tables)), false)
		}
		if bar != nil {
			bar.Set(int64(p.Ready), "lag "+words.Bytes(p.Slot.LagBytes))
		}
		if baseSync < 0 || rider.recent(workerErrorGrace) {
			// Errors of the worker while a side was away are the outage's,
			// not a cause that waiting will not cure.
			baseSync, baseApply = p.SyncErrors, p.ApplyErrors
		}
		if p.Slot.Lost {
			return pg.SlotLostError(s.spec.SlotName())
		}
		if newSync, newApply := p.SyncErrors-baseSync, p.ApplyErrors-baseApply; newSync+newApply >= maxErrors {
			return fmt.Errorf("subscription %q on green keeps failing (%d table-copy and %d apply errors while waiting, %d/%d tables ready): green's server log names the cause; the usual ones are rows already on green (duplicate key: empty green's tables, then roll back and apply again), a table or column missing on green, or blue refusing the connection",
				sub, newSync, newApply, p.Ready, len(p.Tables))
		}
		switch {
		case !p.Subscription.Exists:
			return fmt.Errorf("subscription %q does not exist on green: apply %s first", sub, stepid.Subscription)
		case !p.Subscription.Enabled:
			return fmt.Errorf("subscription %q on green is disabled (disable_on_error stops it at the first apply error; green's log names it): fix the cause, then ALTER SUBSCRIPTION %s ENABLE and run again",
				sub, pg.QuoteIdent(sub))
		case !p.Slot.Exists:
			return fmt.Errorf("replication slot %q is gone from blue: green cannot follow blue any more; roll back and apply again", s.spec.SlotName())
		case len(p.Tables) == 0:
			return fmt.Errorf("subscription %q on green tracks no table: check that publication %q on blue publishes the selected tables", sub, s.spec.PublicationName())
		}
		if p.CaughtUp(threshold) {
			env.Log.Info("green caught up", "tables_ready", fmt.Sprintf("%d/%d", p.Ready, len(p.Tables)),
				"lag_bytes", p.Slot.LagBytes, "elapsed", time.Since(started).Round(time.Millisecond).String())
			env.Record("tables", fmt.Sprint(len(p.Tables)))
			env.Record("lag_bytes", fmt.Sprint(p.Slot.LagBytes))
			env.Record("confirmed_flush_lsn", p.Slot.ConfirmedFlush)
			return nil
		}
		now := time.Now()
		if p.Slot.LagBytes != lastLag {
			lastLag, lastMove = p.Slot.LagBytes, now
		}
		if now.Sub(lastLog) >= every {
			lastLog = now
			env.Log.Info("catching up", "tables_ready", fmt.Sprintf("%d/%d", p.Ready, len(p.Tables)),
				"lag_bytes", p.Slot.LagBytes, "lag", words.Bytes(p.Slot.LagBytes), "syncing", syncingTables(p.Tables, 5))
		}
		if p.Ready == len(p.Tables) && now.Sub(lastMove) >= stallNudge {
			// An idle blue gives the walsender nothing to send; a logical
			// message is WAL it decodes and answers with a keepalive.
			lastMove = now
			blue, err := env.Source.Pool(ctx)
			if err == nil {
				if _, err := blue.Exec(ctx, "SELECT pg_logical_emit_message(false, 'pgshift', 'catchup')"); err != nil {
					env.Log.Debug("could not write a catch-up marker on blue", "error", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for green to catch up (%d/%d tables ready, lag %s): %w", p.Ready, len(p.Tables), words.Bytes(p.Slot.LagBytes), ctx.Err())
		case <-time.After(poll):
		}
	}
}

// syncingTables names the first few tables not ready yet, with their state.
func syncingTables(states []pg.RelState, max int) string {
	var out []string
	n := 0
	for _, r := range states {
		if r.State == "r" {
			continue
		}
		n++
		if len(out) < max {
			out = append(out, r.Table+"="+r.State)
		}
	}
	if n > len(out) {
		out = append(out, fmt.Sprintf("+%d more", n-len(out)))
	}
	return strings.Join(out, " ")
}

func (s *catchupStep) Rollback(ctx context.Context, env *engine.Env) error { return nil }

func (s *catchupStep) DescribeRollback() string { return "nothing: catch-up only waits" }

// Report is the live catch-up picture for `pgshift status`: lag and tables
// ready (the subscription step reports each table's sync state).
func (s *catchupStep) Report(ctx context.Context, env *engine.Env) ([]string, error) {
	p, err := measureReplication(ctx, env, s.spec)
	if err != nil {
		return nil, err
	}
	threshold := pg.CatchupThreshold(s.spec.Cutover.MaxLagBytes)
	var out []string
	if p.Slot.Exists {
		line := fmt.Sprintf("lag %s (%d bytes) on slot %s, threshold %s", words.Bytes(p.Slot.LagBytes), p.Slot.LagBytes, s.spec.SlotName(), words.Bytes(threshold))
		if !p.Slot.Active {
			line += ", no consumer attached"
		}
		out = append(out, line)
	} else {
		out = append(out, "slot "+s.spec.SlotName()+" does not exist on blue")
	}
	if p.Subscription.Exists {
		out = append(out, fmt.Sprintf("%d/%d tables ready", p.Ready, len(p.Tables)))
		if p.SyncErrors > 0 || p.ApplyErrors > 0 {
			out = append(out, fmt.Sprintf("worker errors since the subscription was made: %d table-copy, %d apply (see green's server log)", p.SyncErrors, p.ApplyErrors))
		}
	}
	return out, nil
}

func (s *catchupStep) Describe() plans.Change {
	return plans.Change{Action: plans.ActionCreate,
		Summary: fmt.Sprintf("wait until every table is ready and lag is under %s", words.Bytes(pg.CatchupThreshold(s.spec.Cutover.MaxLagBytes)))}
}

// Fingerprint is constant: catch-up changes nothing, and its progress (lag,
// tables ready) moves all the time without making a saved plan stale.
func (s *catchupStep) Fingerprint(plans.Change) string { return stepid.Catchup }

// measureRiding measures the pipeline, riding out an outage of either side
// (see outageRider).
func measureRiding(ctx context.Context, env *engine.Env, s *spec.Spec, rider *outageRider) (pg.Progress, error) {
	for {
		p, err := measureReplication(ctx, env, s)
		if err = rider.ride(ctx, err); err != nil {
			return p, err
		}
		if rider.since.IsZero() {
			return p, nil
		}
	}
}

// measureReplication measures the pipeline and exports the lag. Errors
// carry the side they came from (pg.SideOf).
func measureReplication(ctx context.Context, env *engine.Env, s *spec.Spec) (pg.Progress, error) {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return pg.Progress{}, pg.OnSide("green", err)
	}
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return pg.Progress{}, pg.OnSide("blue", err)
	}
	p, err := pg.MeasureReplication(ctx, blue, green, s.SlotName(), s.SubscriptionName())
	if err == nil && p.Slot.Exists {
		env.Metrics.SetReplicationLag(s.SubscriptionName(), p.Slot.LagBytes)
	}
	return p, err
}
