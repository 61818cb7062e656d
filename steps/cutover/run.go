package cutover

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/pgshift/pgshift/steps/switcher"
)

// lagWaitBudget bounds the wait for a small lag before the freeze.
const lagWaitBudget = 2 * time.Minute

// abortReserve is the part of pause_timeout kept for switching back and
// unfreezing when the cutover aborts, so that the whole freeze stays within
// pause_timeout.
func abortReserve(pause time.Duration) time.Duration {
	r := pause / 4
	if r > 3*time.Second {
		r = 3 * time.Second
	}
	return r
}

// cutover runs a fresh cutover: prepare, freeze, drain, switch, unfreeze.
func (r *run) cutover(ctx context.Context) error {
	if err := r.needGreen(); err != nil {
		return fmt.Errorf("cutover not started, nothing was frozen: %w", err)
	}
	pre, err := r.s.preconditions(ctx, r.env)
	if err != nil {
		return err
	}
	if err := failedPreconditions(pre); err != nil {
		return err
	}
	if err := r.prepare(ctx); err != nil {
		return fmt.Errorf("cutover not started, nothing was frozen: %w", err)
	}
	return r.freezeAndSwitch(ctx)
}

// prepare does before the freeze everything that can be done then.
func (r *run) prepare(ctx context.Context) error {
	fwd := r.spec.SubscriptionName()
	// An aborted attempt may have left the forward subscription disabled.
	st, err := pg.ReadSubscription(ctx, r.green, fwd)
	if err != nil {
		return err
	}
	if !st.Exists {
		return fmt.Errorf("subscription %q does not exist on green: apply %s first", fwd, stepid.Subscription)
	}
	if !st.Enabled {
		r.env.Log.Info("re-enabling the forward subscription left disabled by an earlier attempt", "subscription", fwd)
		if err := enableSubscription(ctx, r.green, fwd); err != nil {
			return err
		}
		if err := workerSteady(ctx, r.green, fwd, st); err != nil {
			return err
		}
	}
	if r.spec.Cutover.ReverseReplication {
		// A reverse slot must not exist before the freeze (it would carry
		// forward-applied rows back): one left by a killed attempt goes.
		if err := pg.DropSlot(ctx, r.env.Log, r.green, r.spec.ReverseName(), pg.SlotReleaseWait); err != nil {
			return fmt.Errorf("green: drop the reverse slot left by an earlier attempt: %w", err)
		}
	}
	if r.out(keySyncCommit) == "" {
		v, err := subscriptionSyncCommit(ctx, r.green, fwd)
		if err != nil {
			return err
		}
		r.record(keySyncCommit, v)
	}
	settled, err := syncCommitOn(ctx, r.green, fwd)
	if err != nil {
		return err
	}
	if n, err := refreshMaterializedViews(ctx, r.env, r.blue, r.green); err != nil {
		return err
	} else if n > 0 {
		r.env.Log.Info("materialized views refreshed on green before the freeze; they miss what blue writes until the switch", "views", n)
	}
	if r.spec.Cutover.ReverseReplication {
		if err := EnsureReversePublication(ctx, r.env, r.blue, r.green); err != nil {
			return err
		}
		if err := EnsureReverseSubscription(ctx, r.env, r.blue); err != nil {
			return err
		}
	}
	if err := r.drv.Check(ctx); err != nil {
		return fmt.Errorf("switch %s: %w", r.drv.Name(), err)
	}
	if _, err := r.readOnlyBefore(ctx, keyBlueReadOnlyBefore, r.blue, r.blueDB); err != nil {
		return err
	}
	if err := settle(ctx, settled); err != nil {
		return err
	}
	if err := waitLagUnder(ctx, r.env, r.blue, r.spec.SlotName(), preFreezeLag(r.spec), lagWaitBudget); err != nil {
		return err
	}
	r.setPhase(phasePrepared)
	return nil
}

// setPhase records a phase; the state file is written before it returns.
// live and aborted are settled phases, outside any pause: the live side
// they give is recorded with them.
func (r *run) setPhase(p phase) {
	r.record(keyPhase, string(p))
	if p == phaseLive || p == phaseAborted {
		r.recordLive()
	}
}

// phase is the cutover's recorded phase.
func (r *run) phase() phase { return phase(r.out(keyPhase)) }

// rollbackPhase is the recorded phase of its rollback.
func (r *run) rollbackPhase() rollbackPhase { return rollbackPhase(r.out(keyRollbackPhase)) }

// lap notes how long the part of the pause just ended took, for the log
// line that breaks the pause down.
func (r *run) lap(name string) {
	now := time.Now()
	if r.lastLap.IsZero() {
		r.lastLap = r.frozen
	}
	r.laps = append(r.laps, fmt.Sprintf("%s %s", name, now.Sub(r.lastLap).Round(100*time.Microsecond)))
	r.lastLap = now
}

// freezeAndSwitch is the pause. Any failure before the unfreeze aborts:
// back to blue, unfrozen, reverse objects dropped, forward re-enabled.
func (r *run) freezeAndSwitch(ctx context.Context) error {
	pause := time.Duration(r.spec.Cutover.PauseTimeout)
	r.beforeFreeze(ctx)
	// Recorded before the freeze, so that a killed run is known to have
	// frozen. Inside the pause only the switch is recorded (each record is
	// a durable state write): what a recovery must know is whether traffic
	// may have moved.
	r.record(keyFreeze, r.spec.Cutover.Freeze)
	r.record(keyFrozenAt, time.Now().UTC().Format(time.RFC3339Nano))
	r.setPhase(phaseFreezing)
	r.frozen = time.Now()
	fctx, cancel := context.WithDeadline(ctx, r.frozen.Add(pause-abortReserve(pause)))
	defer cancel()

	fail := func(what string, err error) error {
		if fctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (pause_timeout %s reached)", err, pause)
		}
		return r.abort(ctx, fmt.Errorf("%s: %w", what, err))
	}

	if err := r.freeze(fctx, r.blue, r.blueDB); err != nil {
		return fail("freeze", err)
	}
	r.lap("freeze")
	if err := r.stage("frozen"); err != nil {
		return fail("frozen", err)
	}

	marker, seqReport, drainErr, seqErr := drainAndCopySequences(fctx, r.blue, r.green, r.spec.SlotName(), r.spec.Sequences.Margin, "cutover drain")
	if drainErr != nil {
		return fail("drain blue into green", drainErr)
	}
	if seqErr != nil {
		return fail("copy sequences to green", seqErr)
	}
	r.lap("drain+sequences")

	if err := stopSubscription(fctx, r.green, r.spec.SubscriptionName()); err != nil {
		return fail("stop the forward subscription", err)
	}
	var reverseLSN string
	if r.spec.Cutover.ReverseReplication {
		var err error
		if reverseLSN, err = createReverseSlot(fctx, r.green, r.spec.ReverseName()); err != nil {
			return fail("reverse replication", err)
		}
	}
	r.lap("stop forward+reverse slot")
	if err := r.stage("before-switch"); err != nil {
		return fail("before the switch", err)
	}
	if err := r.freezeHolds(fctx, r.blueDB); err != nil {
		return fail("before the switch", err)
	}

	r.setPhase(phaseSwitching)
	// tctx bounds what follows the switch: the pause's own deadline, or
	// a fresh budget when a partial switch took the pause's time.
	tctx := fctx
	if err := r.drv.Switch(fctx, switcher.Green); err != nil {
		if errors.Is(err, switcher.ErrNotSwitched) {
			// Traffic never moved: the abort has nothing to switch back.
			r.setPhase(phaseFreezing)
			return fail("switch to green", err)
		}
		if !r.partlySwitched(ctx) {
			return fail("switch to green", err)
		}
		if err := r.retrySwitch(ctx, err); err != nil {
			return err
		}
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), abortBudget)
		defer cancel()
	}
	if err := r.stage("after-switch"); err != nil {
		return fail("after the switch", err)
	}
	if err := r.confirmGreen(tctx); err != nil {
		return fail("confirm green after the switch", err)
	}
	r.setPhase(phaseSwitched)
	r.lap("switch")

	if err := r.unfreeze(tctx, r.blue, r.blueDB, r.out(keyBlueReadOnlyBefore) == "true"); err != nil {
		// Traffic is on green and green is fine: do not go back, but say
		// what is still held.
		r.setPhase(phaseSwitched)
		return fmt.Errorf("switched to green, but the unfreeze failed: %w; run pgshift apply --approve-cutover again, or by hand: %s", err, r.howToUnfreeze(switcher.Blue))
	}
	took := time.Since(r.frozen)
	r.lap("unfreeze")
	r.setPhase(phaseLive)
	r.recordPause(keyPauseMS, "cutover", took)
	r.record(keyDrainLSN, marker)
	r.record(keySequences, strconv.Itoa(len(seqReport.Synced)))
	if reverseLSN != "" {
		r.record(keyReverseLSN, reverseLSN)
	}
	for _, p := range seqReport.Problems() {
		r.env.Log.Warn("sequence", "problem", p)
	}
	r.env.Log.Info(fmt.Sprintf("cutover done: write pause %s", took.Round(time.Millisecond)),
		"pause_ms", took.Milliseconds(), "sequences", len(seqReport.Synced), "drain_lsn", marker, "breakdown", strings.Join(r.laps, ", "))
	confirmErr := r.confirmThroughSwitch(ctx)
	if err := r.finish(ctx, true); err != nil {
		return errors.Join(err, confirmErr)
	}
	return confirmErr
}

func (r *run) recordPause(key, operation string, took time.Duration) {
	r.record(key, strconv.FormatInt(took.Milliseconds(), 10))
	r.env.Metrics.ObserveCutoverPause(operation, took.Seconds())
}

// confirmGreen checks that green takes writes: reachable, a primary, and not
// read-only by default.
func (r *run) confirmGreen(ctx context.Context) error {
	var recovery bool
	var ro string
	if err := r.green.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')").Scan(&recovery, &ro); err != nil {
		return fmt.Errorf("green: %w", err)
	}
	if recovery {
		return fmt.Errorf("green (%s) is a standby: it cannot take writes", r.env.Target.Redacted())
	}
	st, err := pg.ReadOnlyFrozen(ctx, r.green, r.greenDB)
	if err != nil {
		return err
	}
	if st.ReadOnly {
		return fmt.Errorf("green's database %s is read-only (ALTER DATABASE ... SET default_transaction_read_only = %s)", r.greenDB, st.Value)
	}
	return nil
}

// finish completes a cutover whose switch took effect: traffic on green,
// unfrozen, reverse replication running. Run again, it changes nothing.
func (r *run) finish(ctx context.Context, fresh bool) error {
	if !fresh {
		if err := r.drv.Switch(ctx, switcher.Green); err != nil {
			return fmt.Errorf("finish the interrupted cutover: switch to green: %w; by hand: %s", err, r.howToUnfreeze(switcher.Blue))
		}
		if err := r.unfreeze(ctx, r.blue, r.blueDB, r.out(keyBlueReadOnlyBefore) == "true"); err != nil {
			return fmt.Errorf("finish the interrupted cutover: %w; by hand: %s", err, r.howToUnfreeze(switcher.Blue))
		}
		r.setPhase(phaseLive)
	}
	if r.spec.Cutover.ReverseReplication {
		if err := enableSubscription(ctx, r.blue, r.spec.ReverseName()); err != nil {
			return fmt.Errorf("traffic is on green, but reverse replication did not start: %w; run pgshift apply --approve-cutover again", err)
		}
	}
	r.setPhase(phaseDone)
	return nil
}

// joinLines formats problems for an error.
func joinLines(errs []string) string { return strings.Join(errs, "; ") }

// partlySwitched says, after Switch(green) failed, whether green may have
// taken writes while blue refused them: then only finishing forward is
// safe, since going back would strand green's writes and blue, drained
// before the switch began, lacks nothing. That needs a read-only freeze
// (blue took no write since its drain) and a switch that says green is
// serving, or cannot tell (HAProxy's socket gone). A green the switch says
// is not serving (in maintenance, or failing HAProxy's health check) took
// no writes, so the abort goes back to blue. Under a pooler freeze alone
// blue is not read-only, and an exec switch cannot report where traffic
// goes, so its failure is taken at its word.
func (r *run) partlySwitched(ctx context.Context) bool {
	if _, readOnly := freezeModes(r.spec.Cutover.Freeze); !readOnly {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if sr, ok := r.drv.(switcher.ServingReporter); ok {
		serving, err := sr.Serving(ctx, switcher.Green)
		return err != nil || serving
	}
	side, err := r.drv.Current(ctx)
	switch {
	case errors.Is(err, switcher.ErrUnknownSide):
		return false
	case err != nil:
		return true
	}
	return side == switcher.Green
}

// partialSwitchBudget bounds how long a switch that failed partway is tried
// again before the run gives up and leaves the freeze in place.
const partialSwitchBudget = 30 * time.Second

// retrySwitch runs the switch to green again after it failed partway
// (HAProxy's socket lost between its commands, say) while green may be
// serving, until it answers, within partialSwitchBudget past the failure
// or until ctx ends; then the freeze stays, and the error says so and how
// to finish forward.
func (r *run) retrySwitch(ctx context.Context, cause error) error {
	r.env.Log.Warn("the switch to green failed partway and green may already take writes: finishing it forward, since going back could lose them", "error", cause)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), partialSwitchBudget)
	defer cancel()
	pause := 100 * time.Millisecond
	for {
		err := r.drv.Switch(sctx, switcher.Green)
		if err == nil {
			r.env.Log.Info("the partial switch to green is finished")
			return nil
		}
		select {
		case <-sctx.Done():
		case <-ctx.Done():
		case <-time.After(pause):
			pause = min(2*pause, 2*time.Second)
			continue
		}
		return fmt.Errorf("the switch to green failed partway (%w) and could not be finished (%v): green may take writes, so blue stays frozen rather than go back; once %s answers, run pgshift apply --approve-cutover to finish it forward",
			cause, err, r.drv.Name())
	}
}
