package cutover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/steps/switcher"
)

// abortBudget bounds the work of an abort once pause_timeout has run out:
// traffic must return to blue even when the freeze took all the time.
const abortBudget = 30 * time.Second

// abort ends a cutover that failed inside the freeze: traffic back to blue
// (when the switch may have moved), blue unfrozen (the pause ends here),
// then the reverse objects dropped and the forward subscription re-enabled,
// all recorded. Green took no application write (it was never unfrozen), so
// nothing is lost: blue has every row, and the forward subscription
// carries on from where it stopped.
func (r *run) abort(ctx context.Context, cause error) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortBudget)
	defer cancel()
	r.env.Log.Error("cutover failed inside the freeze: aborting, back to blue", "error", cause)
	back, problems := r.backToBlue(actx)
	if !r.frozen.IsZero() {
		took := time.Since(r.frozen)
		r.recordPause(keyPauseMS, "cutover", took)
		r.env.Log.Info(fmt.Sprintf("cutover aborted: write pause %s", took.Round(time.Millisecond)), "pause_ms", took.Milliseconds())
	}
	r.record(keyAborted, cause.Error())
	if !back {
		return fmt.Errorf("cutover aborted (%w), and returning to blue failed: %s", cause, joinLines(problems))
	}
	r.setPhase(phaseAborted)
	msg := "cutover aborted: traffic is on blue and blue takes writes again; nothing was lost (green took no write)"
	if len(problems) > 0 {
		return fmt.Errorf("%s: %w; cleanup left to do: %s", msg, cause, joinLines(problems))
	}
	return fmt.Errorf("%s: %w; fix the cause and run pgshift apply --approve-cutover again", msg, cause)
}

// backToBlue switches back when needed and unfreezes blue, then cleans up.
// back says whether traffic is on blue and blue is unfrozen.
func (r *run) backToBlue(ctx context.Context) (back bool, problems []string) {
	back = true
	if r.phase().reached(phaseSwitching) {
		if err := r.drv.Switch(ctx, switcher.Blue); err != nil {
			back = false
			problems = append(problems, fmt.Sprintf("switch back to blue: %v (traffic may still go to green: run the switch back by hand, then %s)", err, r.howToUnfreeze(switcher.Blue)))
		}
	}
	if back {
		if err := r.unfreeze(ctx, r.blue, r.blueDB, r.out(keyBlueReadOnlyBefore) == "true"); err != nil {
			back = false
			problems = append(problems, fmt.Sprintf("unfreeze blue: %v (by hand: %s)", err, r.howToUnfreeze(switcher.Blue)))
		}
	}
	if !back {
		return false, problems
	}
	// Clients write on blue again; what follows is bookkeeping.
	r.setPhase(phaseAborted)
	if r.spec.Cutover.ReverseReplication {
		if err := DropReverse(ctx, r.env, r.blue, r.green); err != nil {
			problems = append(problems, "reverse replication objects: "+err.Error())
		}
	}
	if err := r.restoreForward(ctx); err != nil {
		problems = append(problems, err.Error())
	}
	return true, problems
}

// restoreForward re-enables the forward subscription with its own
// synchronous_commit.
func (r *run) restoreForward(ctx context.Context) error {
	fwd := r.spec.SubscriptionName()
	if r.green == nil {
		return fmt.Errorf("green unreachable: the forward subscription %s stays disabled; pgshift apply --approve-cutover re-enables it once green answers (or ALTER SUBSCRIPTION %s ENABLE)", fwd, pg.QuoteIdent(fwd))
	}
	var errs []error
	if v := r.out(keySyncCommit); v != "" {
		if err := setSubscriptionSyncCommit(ctx, r.green, fwd, v); err != nil {
			errs = append(errs, err)
		}
	}
	st, err := pg.ReadSubscription(ctx, r.green, fwd)
	if err != nil {
		errs = append(errs, err)
	} else if st.Exists && !st.Enabled {
		if err := enableSubscription(ctx, r.green, fwd); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the forward subscription %s may stay disabled on green, so green falls behind blue (%w): pgshift apply --approve-cutover re-enables it once green answers, or run ALTER SUBSCRIPTION %s ENABLE on green", fwd, errors.Join(errs...), pg.QuoteIdent(fwd))
	}
	return nil
}

// recoverToBlue aborts a cutover a killed run left inside its freeze.
func (r *run) recoverToBlue(ctx context.Context) error {
	back, problems := r.backToBlue(ctx)
	if !back {
		return fmt.Errorf("an interrupted cutover left blue frozen, and unfreezing failed: %s", joinLines(problems))
	}
	r.record(keyAborted, "interrupted during the freeze; recovered by the next run")
	for _, p := range problems {
		r.env.Log.Warn("after recovering the interrupted cutover", "problem", p)
	}
	r.env.Log.Info("interrupted cutover undone: traffic on blue, blue unfrozen")
	return nil
}
