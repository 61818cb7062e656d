package pg

import (
	"context"
	"fmt"
	"time"
)

// ApplyWorkerHealth is what green says of a subscription's apply worker
// over a short window: a worker that fails on a change (a column green
// lacks, a unique violation) exits, is restarted by the launcher after
// wal_retrieve_retry_interval, and fails again on the same change, so one
// look can catch it up or down; two looks apart tell.
type ApplyWorkerHealth struct {
	Running bool  // a pid at the end of the window, the same as at its start
	PID     int32 // the last pid seen (0: none)
	// ApplyErrors counts apply failures since the subscription was made
	// (pg_stat_subscription_stats, 15+; -1 before), NewErrors those within
	// the window.
	ApplyErrors, NewErrors int64
	Watched                time.Duration // 0 when one look was enough
	// SteadySince is when the worker with PID was first seen steady (zero
	// when it is not): a later look that finds the same pid and the same
	// error count knows it has been steady since then.
	SteadySince time.Time
}

// Failing says whether the worker is down or failing now.
func (h ApplyWorkerHealth) Failing() bool { return !h.Running || h.NewErrors > 0 }

// The apply worker is the one without a table (relid) and, from 16 on,
// without a leader (parallel apply workers have one); to_jsonb reads
// leader_pid where the column exists and NULL elsewhere.
const applyWorkerSQL = `
SELECT coalesce((SELECT s.pid FROM pg_stat_subscription s
                  WHERE s.subid = $1 AND s.relid IS NULL AND s.pid IS NOT NULL
                    AND to_jsonb(s) ->> 'leader_pid' IS NULL
                  ORDER BY s.pid LIMIT 1), 0)`

// CheckApplyWorker looks at sub's apply worker on green. When the first
// look finds it missing or with errors counted, it looks again until the
// worker has been up for window with no new error, or window has passed.
// prior is an earlier result for the same subscription (zero if none): when
// it was steady and the first look finds the same pid and error count, the
// worker has neither restarted nor failed since, and no window is needed.
func CheckApplyWorker(ctx context.Context, green Querier, sub Subscription, window time.Duration, prior ApplyWorkerHealth) (ApplyWorkerHealth, error) {
	look := func() (int32, int64, error) {
		pid, err := Scalar[int32](ctx, green, applyWorkerSQL, sub.OID)
		if err != nil {
			return 0, 0, fmt.Errorf("read the apply worker of subscription oid %d on green: %w", sub.OID, err)
		}
		_, applyErrors, err := WorkerErrors(ctx, green, sub.OID)
		return pid, applyErrors, err
	}
	pid, errs, err := look()
	if err != nil {
		return ApplyWorkerHealth{}, err
	}
	h := ApplyWorkerHealth{Running: pid != 0, PID: pid, ApplyErrors: errs}
	if pid != 0 && !prior.SteadySince.IsZero() && prior.PID == pid && prior.ApplyErrors == errs {
		h.SteadySince, h.Watched = prior.SteadySince, time.Since(prior.SteadySince)
		return h, nil
	}
	if pid != 0 && errs <= 0 {
		h.SteadySince = time.Now()
		return h, nil
	}
	start, firstErrs, firstPID := time.Now(), errs, pid
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < window {
		select {
		case <-ctx.Done():
			return h, ctx.Err()
		case <-tick.C:
		}
		pid, errs, err = look()
		if err != nil {
			return h, err
		}
		if firstPID == 0 && pid != 0 {
			firstPID = pid // came up during the window: watch it from here
		}
		h.PID, h.ApplyErrors = pid, errs
		if errs >= 0 && firstErrs >= 0 {
			h.NewErrors = errs - firstErrs
		}
	}
	h.Watched = time.Since(start)
	h.Running = pid != 0 && pid == firstPID
	if !h.Failing() {
		h.SteadySince = start
	}
	return h, nil
}
