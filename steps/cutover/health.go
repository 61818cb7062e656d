package cutover

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/steps/stepid"
)

// healthWindow is how long a worker found down or with errors counted is
// watched: longer than wal_retrieve_retry_interval's default (5 s), after
// which the launcher restarts a failed worker.
const healthWindow = 7 * time.Second

// subscriptionHealth is the part of the cutover's preconditions that asks
// whether green is applying blue's changes at all: a freeze waits for green
// to confirm blue's last position, which a stopped or failing worker never
// does, so these are checked before any freeze, never by one.
//
// prior is the worker's last health this process saw (updated here): the
// engine checks the preconditions and the cutover checks them again right
// after, and a worker steady since the first check needs no second window.
func subscriptionHealth(ctx context.Context, env *engine.Env, blue, green pg.Querier, sub pg.Subscription, tables []pg.Table, prior *pg.ApplyWorkerHealth) ([]plans.Precondition, error) {
	var pre []plans.Precondition
	name := env.Spec.SubscriptionName()
	if !sub.Exists {
		return []plans.Precondition{{Name: "apply worker running on green", OK: false,
			Detail: fmt.Sprintf("subscription %s does not exist on green: run pgshift apply", name)}}, nil
	}
	if recorded, _ := env.Output(stepid.Cutover, keyPhase); !sub.Enabled && phase(recorded) == phaseAborted {
		// An abort that could not reach green leaves it disabled; the
		// cutover's preparation enables it and watches the worker again
		// before any freeze.
		return []plans.Precondition{{Name: "apply worker running on green", OK: true,
			Detail: fmt.Sprintf("subscription %s was left disabled by the aborted cutover: the cutover enables it and checks its worker before the freeze", name)}}, nil
	}
	if !sub.Enabled {
		return []plans.Precondition{{Name: "apply worker running on green", OK: false,
			Detail: fmt.Sprintf("subscription %s is disabled on green: run pgshift apply (it enables it), or ALTER SUBSCRIPTION %s ENABLE", name, pg.QuoteIdent(name))}}, nil
	}
	h, err := pg.CheckApplyWorker(ctx, green, sub, healthWindow, *prior)
	if err != nil {
		return nil, err
	}
	*prior = h
	logHint := "green's server log names the change it fails on"
	running := plans.Precondition{Name: "apply worker running on green", OK: h.Running,
		Detail: fmt.Sprintf("pid %d", h.PID)}
	if !h.Running {
		running.Detail = fmt.Sprintf("subscription %s has no steady apply worker (watched %s): %s; when it is a missing column or table, run pgshift plan and pgshift apply", name, h.Watched.Round(time.Second), logHint)
	}
	pre = append(pre, running)
	errs := plans.Precondition{Name: "no apply errors", OK: h.NewErrors == 0}
	switch {
	case h.ApplyErrors < 0:
		errs.Detail = "green runs a version before 15 (no pg_stat_subscription_stats): judged by the worker staying up"
	case h.NewErrors > 0:
		errs.Detail = fmt.Sprintf("%s in the last %s (%d since the subscription was made): %s", words.Count(int(h.NewErrors), "apply error"), h.Watched.Round(time.Second), h.ApplyErrors, logHint)
	case h.ApplyErrors > 0:
		errs.Detail = fmt.Sprintf("none for %s (%d earlier, since resolved)", h.Watched.Round(time.Second), h.ApplyErrors)
	default:
		errs.Detail = "none since the subscription was made"
	}
	pre = append(pre, errs)

	drift, err := pg.CompareSchemas(ctx, blue, green, tables)
	if err != nil {
		return nil, err
	}
	var breaking []string
	for _, d := range drift {
		if d.Kind == pg.DriftIndexExtra || d.Kind == pg.DriftConstraintExtra || (d.Kind == pg.DriftColumnExtra && !d.Blocks) {
			continue // green's own additions: named by target.schema, they do not stop rows
		}
		fix := d.Fix
		if d.Additive {
			fix = "pgshift apply adds it on green"
		}
		breaking = append(breaking, d.String()+" ("+fix+")")
	}
	parity := plans.Precondition{Name: "schema parity on the replicated tables", OK: len(breaking) == 0,
		Detail: words.Count(len(tables), "table") + " alike on blue and green"}
	if len(breaking) > 0 {
		parity.Detail = strings.Join(breaking, "; ")
	}
	pre = append(pre, parity)
	return pre, nil
}

// workerSteady fails when sub's apply worker on green is not running
// steadily: used right after the cutover enables a subscription an abort
// left disabled, before the freeze.
func workerSteady(ctx context.Context, green pg.Querier, name string, sub pg.Subscription) error {
	h, err := pg.CheckApplyWorker(ctx, green, sub, healthWindow, pg.ApplyWorkerHealth{})
	if err != nil {
		return err
	}
	if h.Failing() {
		return fmt.Errorf("subscription %q was enabled again, but its apply worker on green is not steady (%d new apply errors in %s): green's server log names the change it fails on",
			name, h.NewErrors, h.Watched.Round(time.Second))
	}
	return nil
}
