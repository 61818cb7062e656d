package steps

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
)

// outageRider lets a step that polls or reads for a long time (catch-up,
// verify) ride out a restart or a failover of blue or green: a lost
// connection or a server not taking connections yet (pg.IsTransient) is
// waited out, reconnecting with backoff, for up to the bound
// (replication.outage_timeout); then, or for any other error, the step
// fails with the error it met. The pools reconnect by themselves: pgxpool
// drops a dead connection and dials a new one at the next query. While
// planning (engine.Env.Planning) it waits for nothing: a plan reports an
// unreachable side as it finds it.
type outageRider struct {
	log    hclog.Logger
	bound  time.Duration
	first  time.Duration // first pause between attempts
	noWait bool          // planning: every error is returned as it is

	since   time.Time       // start of the current outage; zero while both sides answer
	logged  map[string]bool // sides already named in this outage's log
	pause   time.Duration
	lastEnd time.Time // when the last outage ended
}

// maxOutagePause caps the backoff between reconnection attempts.
const maxOutagePause = 10 * time.Second

func newOutageRider(env *engine.Env, bound, first time.Duration) *outageRider {
	if first <= 0 {
		first = time.Second
	}
	return &outageRider{log: env.Log, bound: bound, first: first, noWait: env.Planning}
}

// ride takes the outcome of one attempt. nil: both sides answer (ending an
// outage, which is logged). A transient error within the bound: logged once
// per outage and side, then a pause, and nil, so that the caller tries
// again. Any other error, a transient one past the bound or while
// planning, and a cancelled context are returned.
func (o *outageRider) ride(ctx context.Context, err error) error {
	now := time.Now()
	if err == nil {
		if !o.since.IsZero() {
			o.log.Info("connection back, going on", "outage", now.Sub(o.since).Round(time.Second).String())
			o.since, o.lastEnd, o.logged = time.Time{}, now, nil
		}
		return nil
	}
	if ctx.Err() != nil || !pg.IsTransient(err) || o.noWait {
		return err
	}
	side := pg.SideOf(err)
	if side == "" {
		side = "blue or green"
	}
	if o.since.IsZero() {
		o.since, o.pause, o.logged = now, o.first, map[string]bool{}
	}
	if !o.logged[side] {
		o.logged[side] = true
		o.log.Warn(fmt.Sprintf("%s unreachable (%s), waiting up to %s for it to come back", side, pg.TransientReason(err), o.bound))
	}
	left := o.bound - now.Sub(o.since)
	if left <= 0 {
		return fmt.Errorf("%s unreachable for %s, longer than replication.outage_timeout (%s): %w (bring %s back, or raise replication.outage_timeout to wait longer, then apply again)",
			side, now.Sub(o.since).Round(time.Second), o.bound, err, side)
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s to come back: %w", side, ctx.Err())
	case <-time.After(min(o.pause, left)):
	}
	o.pause = min(2*o.pause, maxOutagePause)
	return nil
}

// recent says whether an outage is going on or ended less than window ago.
func (o *outageRider) recent(window time.Duration) bool {
	return !o.since.IsZero() || (!o.lastEnd.IsZero() && time.Since(o.lastEnd) < window)
}
