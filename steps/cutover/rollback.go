package cutover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/steps/switcher"
)

// Rolling back a cutover makes blue the primary again without losing what
// green took meanwhile: freeze green, drain reverse replication into blue
// (blue confirms green's last position through the reverse slot), copy the
// sequences back, stop the reverse subscription, switch to blue, unfreeze.
// Then, outside the pause: drop the reverse objects, and resume the forward
// subscription exactly after green's writes (its slot on blue is advanced
// past what reverse replication applied there, or green would receive its
// own rows back), so that the pipeline is where it was before the cutover.
// `pgshift rollback --step cutover` stops there: green follows blue again,
// every table still ready, and a later apply --approve-cutover cuts over
// again from that replication without copying anything. A full rollback
// goes on to undo the pipeline itself.
//
// A cutover that never switched (aborted, or killed inside its freeze) is
// undone the same way as an abort.

func (s *cutoverStep) Rollback(ctx context.Context, env *engine.Env) error {
	r, err := s.open(ctx, env)
	if err != nil {
		return err
	}
	defer r.close()
	ph := r.phase()
	switched := ph.reached(phaseSwitched)
	if ph == phaseSwitching {
		switched = r.switchedTo(ctx, switcher.Green)
	}
	if switched && ph.frozen() {
		// Killed after its switch, blue still frozen: finish the cutover
		// (blue unfrozen, reverse replication running), so that the switch
		// back drains green's writes into a blue that takes writes again.
		env.Log.Warn("the cutover was interrupted after its switch: finishing it before rolling it back", "phase", ph)
		if err := r.finish(ctx, false); err != nil {
			return fmt.Errorf("roll back the cutover interrupted after its switch: %w", err)
		}
	}
	if switched || r.rollbackPhase() != rollbackNone {
		return r.switchBack(ctx)
	}
	if ph.frozen() {
		back, problems := r.backToBlue(ctx)
		if !back || len(problems) > 0 {
			return fmt.Errorf("undo the interrupted cutover: %s", joinLines(problems))
		}
		return nil
	}
	// Never frozen: remove what the preparation made.
	var errs []error
	if s.spec.Cutover.ReverseReplication {
		if err := DropReverse(ctx, env, r.blue, r.green); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.restoreForward(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *run) setRB(p rollbackPhase) { r.record(keyRollbackPhase, string(p)) }

// switchBack is the rollback of a cutover that switched to green.
func (r *run) switchBack(ctx context.Context) error {
	if !r.spec.Cutover.ReverseReplication {
		return errors.New("the cutover ran without reverse replication (cutover.reverse_replication: false): the writes made on green since are not on blue, and switching back would lose them; move them yourself, then switch the traffic and remove the cutover step's state by hand")
	}
	if err := r.needGreen(); err != nil {
		return err
	}
	switch rb := r.rollbackPhase(); {
	case rb == rollbackDone:
		return nil
	case rb == rollbackSwitchedBack:
		return r.finishBack(ctx, false)
	case rb == rollbackSwitching:
		if r.switchedTo(ctx, switcher.Blue) {
			return r.finishBack(ctx, false)
		}
		fallthrough
	case rb.frozen():
		r.env.Log.Warn("an earlier rollback was interrupted during its freeze of green: unfreezing green first", "phase", rb)
		if err := r.undoBackFreeze(ctx); err != nil {
			return err
		}
	}
	return r.switchBackFresh(ctx)
}

func (r *run) switchBackFresh(ctx context.Context) error {
	rev := r.spec.ReverseName()
	st, err := pg.ReadSubscription(ctx, r.blue, rev)
	if err != nil {
		return err
	}
	if !st.Exists {
		return fmt.Errorf("reverse subscription %q is missing on blue: green's writes may not all be on blue; nothing was changed. Recreate reverse replication or move the rows yourself", rev)
	}
	if !st.Enabled {
		if err := enableSubscription(ctx, r.blue, rev); err != nil {
			return err
		}
	}
	settled, err := syncCommitOn(ctx, r.blue, rev)
	if err != nil {
		return err
	}
	if err := r.drv.Check(ctx); err != nil {
		return fmt.Errorf("switch %s: %w", r.drv.Name(), err)
	}
	if _, err := r.readOnlyBefore(ctx, keyGreenReadOnlyBefore, r.green, r.greenDB); err != nil {
		return err
	}
	if err := settle(ctx, settled); err != nil {
		return err
	}
	if err := waitLagUnder(ctx, r.env, r.green, rev, preFreezeLag(r.spec), lagWaitBudget); err != nil {
		return fmt.Errorf("reverse replication: %w", err)
	}

	pause := time.Duration(r.spec.Cutover.PauseTimeout)
	r.beforeFreeze(ctx)
	r.record(keyRollbackFrozenAt, time.Now().UTC().Format(time.RFC3339Nano))
	r.setRB(rollbackFreezing)
	r.frozen = time.Now()
	fctx, cancel := context.WithDeadline(ctx, r.frozen.Add(pause-abortReserve(pause)))
	defer cancel()
	fail := func(what string, err error) error {
		if fctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (pause_timeout %s reached)", err, pause)
		}
		cause := fmt.Errorf("%s: %w", what, err)
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortBudget)
		defer cancel()
		if uerr := r.undoBackFreeze(actx); uerr != nil {
			return fmt.Errorf("rollback of the cutover failed inside its freeze (%w), and unfreezing green failed too: %v", cause, uerr)
		}
		took := time.Since(r.frozen)
		r.recordPause(keyRollbackPauseMS, "rollback", took)
		return fmt.Errorf("rollback of the cutover aborted: traffic stays on green, which takes writes again, and reverse replication goes on; nothing was lost: %w", cause)
	}

	if err := r.freeze(fctx, r.green, r.greenDB); err != nil {
		return fail("freeze green", err)
	}
	if err := r.stage("rollback-frozen"); err != nil {
		return fail("frozen", err)
	}
	r.lap("freeze green")

	_, seqReport, drainErr, seqErr := drainAndCopySequences(fctx, r.green, r.blue, rev, r.spec.Sequences.Margin, "rollback drain")
	if drainErr != nil {
		return fail("drain green into blue", drainErr)
	}
	if seqErr != nil {
		return fail("copy sequences back to blue", seqErr)
	}
	r.lap("drain+sequences")
	if err := stopSubscription(fctx, r.blue, rev); err != nil {
		return fail("stop reverse replication", err)
	}
	var blueLSN string
	if err := r.blue.QueryRow(fctx, "SELECT pg_current_wal_lsn()::text").Scan(&blueLSN); err != nil {
		return fail("read blue's position", err)
	}
	r.record(keyRollbackBlueLSN, blueLSN)
	if err := r.freezeHolds(fctx, r.greenDB); err != nil {
		return fail("before the switch", err)
	}
	r.setRB(rollbackSwitching)
	if err := r.drv.Switch(fctx, switcher.Blue); err != nil {
		if errors.Is(err, switcher.ErrNotSwitched) {
			r.setRB(rollbackFreezing) // traffic never left green
		}
		return fail("switch to blue", err)
	}
	r.setRB(rollbackSwitchedBack)
	r.lap("stop reverse+switch")
	if err := r.unfreeze(fctx, r.green, r.greenDB, r.out(keyGreenReadOnlyBefore) == "true"); err != nil {
		return fmt.Errorf("switched back to blue, but unfreezing green failed: %w; by hand: %s", err, r.howToUnfreeze(switcher.Green))
	}
	took := time.Since(r.frozen)
	r.lap("unfreeze")
	r.recordPause(keyRollbackPauseMS, "rollback", took)
	for _, p := range seqReport.Problems() {
		r.env.Log.Warn("sequence", "problem", p)
	}
	r.env.Log.Info(fmt.Sprintf("cutover rolled back: traffic on blue, write pause %s", took.Round(time.Millisecond)), "pause_ms", took.Milliseconds(), "breakdown", strings.Join(r.laps, ", "))
	return r.finishBack(ctx, true)
}

// undoBackFreeze ends a rollback freeze that did not switch: traffic on
// green, green unfrozen, reverse replication running again.
func (r *run) undoBackFreeze(ctx context.Context) error {
	var errs []error
	if r.rollbackPhase() == rollbackSwitching {
		if err := r.drv.Switch(ctx, switcher.Green); err != nil {
			errs = append(errs, fmt.Errorf("switch back to green: %w", err))
		}
	}
	if err := r.unfreeze(ctx, r.green, r.greenDB, r.out(keyGreenReadOnlyBefore) == "true"); err != nil {
		errs = append(errs, fmt.Errorf("unfreeze green: %w (by hand: %s)", err, r.howToUnfreeze(switcher.Green)))
	}
	if err := enableSubscription(ctx, r.blue, r.spec.ReverseName()); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		r.setRB(rollbackNone)
	}
	return errors.Join(errs...)
}

// finishBack completes a rollback whose switch took effect.
func (r *run) finishBack(ctx context.Context, fresh bool) error {
	if !fresh {
		if err := r.drv.Switch(ctx, switcher.Blue); err != nil {
			return fmt.Errorf("finish the interrupted rollback: switch to blue: %w", err)
		}
		if err := r.unfreeze(ctx, r.green, r.greenDB, r.out(keyGreenReadOnlyBefore) == "true"); err != nil {
			return fmt.Errorf("finish the interrupted rollback: %w; by hand: %s", err, r.howToUnfreeze(switcher.Green))
		}
	}
	r.recordLive()
	if err := DropReverse(ctx, r.env, r.blue, r.green); err != nil {
		return fmt.Errorf("traffic is on blue; removing reverse replication failed: %w", err)
	}
	if err := r.resumeForward(ctx); err != nil {
		return fmt.Errorf("traffic is on blue; resuming the forward subscription failed: %w", err)
	}
	r.setRB(rollbackDone)
	return nil
}

// resumeForward moves the forward slot past what reverse replication
// applied on blue, then re-enables the forward subscription.
func (r *run) resumeForward(ctx context.Context) error {
	slot := r.spec.SlotName()
	if lsn := r.out(keyRollbackBlueLSN); lsn != "" {
		st, err := pg.ReadSlot(ctx, r.blue, slot)
		if err != nil {
			return err
		}
		if st.Exists {
			var behind bool
			if err := r.blue.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn < $2::pg_lsn, true) FROM pg_replication_slots WHERE slot_name = $1", slot, lsn).Scan(&behind); err != nil {
				return fmt.Errorf("blue: read slot %q: %w", slot, err)
			}
			if behind {
				if _, err := r.blue.Exec(ctx, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", slot, lsn); err != nil {
					return fmt.Errorf("blue: advance slot %q to %s: %w", slot, lsn, err)
				}
			}
		}
	}
	return r.restoreForward(ctx)
}
