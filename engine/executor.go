package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// ApplyOptions tune an apply.
type ApplyOptions struct {
	// Parallelism bounds how many steps apply at once (<= 0: 4).
	Parallelism int
	// Until stops after this step: only it and the steps it needs run.
	Until string
	// Approve lists gated steps approved for this run (by ID).
	Approve map[string]bool
}

// StepError pairs a step with the error that stopped it.
type StepError struct {
	ID  string
	Err error
}

// ApplyResult says what an apply did, each list in graph order.
type ApplyResult struct {
	Applied     []string    // done in this run
	Skipped     []string    // already done by an earlier run
	Failed      []StepError // root causes
	Upstream    []StepError // not run: a step they need failed (knock-on, not causes)
	Held        []string    // gated steps that wait for approval
	Waiting     []string    // not run: they need a held step
	NotStarted  []string    // interrupted before they started, or waiting on an interrupted step
	Interrupted []string    // cut short by the end of the run: applied again by the next one
	Gates       map[string]string
}

// Complete says every step of the walk is done.
func (r *ApplyResult) Complete() bool {
	return len(r.Failed)+len(r.Upstream)+len(r.Held)+len(r.Waiting)+len(r.NotStarted)+len(r.Interrupted) == 0
}

// PreconditionError lists the preconditions that do not hold.
type PreconditionError struct {
	Step   string
	Failed []string
}

func (e *PreconditionError) Error() string {
	return "precondition failed: " + strings.Join(e.Failed, "; ")
}

// Apply runs the steps of g not yet done, in dependency order, checkpointing
// every transition to store: a step is marked running before it starts, then
// done or failed with its error, and each output as it is recorded. A step
// left running by a killed run is applied again (steps are idempotent). A
// failure stops the steps that need the failed one; independent steps go on.
// The error is for the run itself (state not writable); step failures are in
// the result.
func Apply(ctx context.Context, g *Graph, env *Env, store *StateStore, opts ApplyOptions) (*ApplyResult, error) {
	var only map[string]bool
	if opts.Until != "" {
		if _, ok := g.Step(opts.Until); !ok {
			return nil, fmt.Errorf("--until %s: no such step; steps are %s", opts.Until, strings.Join(g.Order(), ", "))
		}
		only = g.Ancestors(opts.Until)
		only[opts.Until] = true
	}
	par := opts.Parallelism
	if par <= 0 {
		par = 4
	}

	r, ctx := startRun(ctx, env, store)
	log := r.log
	for _, c := range store.Snapshot().Steps {
		env.Metrics.SetStepStatus(c.ID, c.Status)
		// Knock-on outcomes of an earlier run are stale: this walk decides them again.
		if c.Status == StatusUpstreamFailed && (only == nil || only[c.ID]) {
			r.update(c.ID, func(c *StepState) { c.Status, c.Note = StatusPending, "" })
		}
	}

	progress := func() string {
		s := store.Snapshot()
		done := 0
		for _, c := range s.Steps {
			if _, ok := g.Step(c.ID); ok && c.Status == StatusDone {
				done++
			}
		}
		env.Metrics.SetApplyProgress(done, g.Len())
		return fmt.Sprintf("%d/%d", done, g.Len())
	}
	progress()

	res := &ApplyResult{Gates: map[string]string{}}
	var resMu sync.Mutex
	results := g.Walk(ctx, WalkOptions{Only: only, Parallelism: par}, func(ctx context.Context, s Step) error {
		id := s.ID()
		if c := store.Snapshot().Step(id); c != nil && c.Status == StatusDone {
			log.Debug("already done", "step", id)
			resMu.Lock()
			res.Skipped = append(res.Skipped, id)
			resMu.Unlock()
			return nil
		}
		if gs, ok := s.(Gated); ok {
			if gate := gs.Gate(); gate != "" && !opts.Approve[id] {
				resMu.Lock()
				res.Gates[id] = gate
				resMu.Unlock()
				log.Info("waiting for approval", "step", id)
				r.update(id, func(c *StepState) { c.Status, c.Note = StatusPending, "waiting for approval" })
				return ErrHeld
			}
		}
		err := r.step(ctx, id, applying, func(c *StepState) { c.Attempts++ }, nil, func(senv *Env) error {
			if err := checkPreconditions(ctx, s, senv); err != nil {
				return err
			}
			return s.Apply(ctx, senv)
		})
		if err == nil {
			c := store.Snapshot().Step(id)
			log.Info("done", "step", id, "duration", c.FinishedAt.Sub(*c.StartedAt).Round(time.Millisecond).String(), "progress", progress())
		} else {
			progress()
		}
		return err
	})

	// Knock-on outcomes are checkpointed as such, never as failures.
	for _, id := range g.Order() {
		err, walked := results[id]
		if !walked {
			continue
		}
		var up *UpstreamError
		switch {
		case err == nil:
			if !slices.Contains(res.Skipped, id) {
				res.Applied = append(res.Applied, id)
			}
		case errors.Is(err, ErrHeld):
			res.Held = append(res.Held, id)
		case errors.As(err, &up) && up.Held:
			res.Waiting = append(res.Waiting, id)
			r.update(id, func(c *StepState) { c.Note = "waits for approval of " + up.Root })
		case r.wasInterrupted(id):
			res.Interrupted = append(res.Interrupted, id)
		case errors.As(err, &up) && r.stoppedShort(up.Root, results):
			res.NotStarted = append(res.NotStarted, id)
		case errors.As(err, &up):
			res.Upstream = append(res.Upstream, StepError{ID: id, Err: err})
			r.update(id, func(c *StepState) {
				c.Status = StatusUpstreamFailed
				c.Note = "not run: " + up.Root + " failed"
				c.StartedAt, c.FinishedAt, c.Error = nil, nil, ""
			})
			env.Metrics.SetStepStatus(id, StatusUpstreamFailed)
		case errors.As(err, new(*NotStartedError)):
			res.NotStarted = append(res.NotStarted, id)
		default:
			res.Failed = append(res.Failed, StepError{ID: id, Err: err})
		}
	}
	return res, r.end()
}

func checkPreconditions(ctx context.Context, s Step, env *Env) error {
	pcs, err := s.Check(ctx, env)
	if err != nil {
		return fmt.Errorf("check preconditions: %w", err)
	}
	var failed []string
	for _, pc := range pcs {
		if !pc.OK {
			msg := pc.Name
			if pc.Detail != "" {
				msg += ": " + pc.Detail
			}
			failed = append(failed, msg)
		}
	}
	if len(failed) > 0 {
		return &PreconditionError{Step: s.ID(), Failed: failed}
	}
	return nil
}
