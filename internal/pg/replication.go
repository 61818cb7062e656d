package pg

import (
	"context"
	"errors"
)

// minCatchupLag is the floor of the catch-up threshold. Catch-up only has to
// bring green close enough that verify and the cutover drain are short: the
// write freeze drains to cutover.max_lag_bytes anyway. 16 MiB is one WAL
// segment, a few seconds of apply on modest hardware, and far above the
// few hundred bytes an idle blue keeps between its WAL position and the
// slot (background records such as running-xacts snapshots).
const minCatchupLag = 16 << 20

// CatchupThreshold is the lag catch-up waits for: max(maxLagBytes, 16 MiB),
// maxLagBytes being cutover.max_lag_bytes.
func CatchupThreshold(maxLagBytes int64) int64 {
	return max(maxLagBytes, minCatchupLag)
}

// Progress is one measurement of the pipeline: green's subscription and
// its tables, blue's slot and its lag.
type Progress struct {
	Subscription Subscription
	Tables       []RelState
	Ready        int
	Slot         SlotStatus
	// SyncErrors and ApplyErrors count worker failures since the
	// subscription was made (PostgreSQL 15+ on green; -1 before).
	SyncErrors, ApplyErrors int64
}

func (p Progress) CaughtUp(threshold int64) bool {
	return p.Subscription.Exists && len(p.Tables) > 0 && p.Ready == len(p.Tables) &&
		p.Slot.Exists && p.Slot.LagBytes >= 0 && p.Slot.LagBytes <= threshold
}

// MeasureReplication reads the pipeline's state: the subscription and its
// tables' sync states and worker errors on green, the slot and its lag on
// blue.
func MeasureReplication(ctx context.Context, blue, green Querier, slot, subscription string) (Progress, error) {
	var p Progress
	var err error
	if p.Subscription, err = ReadSubscription(ctx, green, subscription); err != nil {
		return p, OnSide("green", err)
	}
	if p.Subscription.Exists {
		if p.Tables, err = ReadRelStates(ctx, green, subscription); err != nil {
			return p, OnSide("green", err)
		}
		p.Ready = CountReady(p.Tables)
		if p.SyncErrors, p.ApplyErrors, err = WorkerErrors(ctx, green, p.Subscription.OID); err != nil {
			return p, OnSide("green", err)
		}
	}
	if p.Slot, err = ReadSlot(ctx, blue, slot); err != nil {
		return p, OnSide("blue", err)
	}
	return p, nil
}

// SideError is an error met on one side ("blue" or "green"). Its message is
// the error's own: it only tells a caller which server to wait for.
type SideError struct {
	Side string
	Err  error
}

func (e *SideError) Error() string { return e.Err.Error() }
func (e *SideError) Unwrap() error { return e.Err }

// OnSide tags err with the side it came from (nil stays nil; an error
// already tagged keeps its side).
func OnSide(side string, err error) error {
	var se *SideError
	if err == nil || errors.As(err, &se) {
		return err
	}
	return &SideError{Side: side, Err: err}
}

// SideOf is the side an error was tagged with, or "" when it was not.
func SideOf(err error) string {
	var se *SideError
	if errors.As(err, &se) {
		return se.Side
	}
	return ""
}
