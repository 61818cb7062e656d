package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgshift/pgshift/plans"
)

// ApplyOptions tune an apply.
type ApplyOptions struct {
	// Parallelism bounds how many steps apply at once (<= 0: 4).
	Parallelism int
	// Until stops after this step: only it and the steps it needs run.
	Until string
	// Approve lists gated steps approved for this run (by ID).
	Approve map[string]bool
	// HoldConvergence, when set and returning a reason, keeps done steps as
	// they are even when they drifted (after the application moved to
	// green, the forward pipeline must not change under it).
	HoldConvergence func(env *Env) string
}

// StepError pairs a step with the error that stopped it.
type StepError struct {
	ID  string
	Err error
}

// ApplyResult says what an apply did, each list in graph order.
type ApplyResult struct {
	Applied   []string // done in this run
	Skipped   []string // already done by an earlier run, nothing to change
	Converged []string // done by an earlier run, drifted, and applied again in this one
	Drifted   []string // done, drifted, and not converged: a person has to act
	// Why says, for each drifted step, why it was not applied again; a
	// step in Blocked was held by its own observation (a blocker), not by
	// HoldConvergence: the pipeline cannot go on until a person acts.
	Why         map[string]string
	Blocked     []string
	Stalled     []string    // not run: they need a blocked step (done ones stay done)
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
	return len(r.Failed)+len(r.Upstream)+len(r.Held)+len(r.Waiting)+len(r.NotStarted)+len(r.Interrupted)+len(r.Blocked)+len(r.Stalled) == 0
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
		if c.Status == StatusPending && strings.HasSuffix(c.Note, " is blocked") && (only == nil || only[c.ID]) {
			r.update(c.ID, func(c *StepState) { c.Note = "" })
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

	res := &ApplyResult{Gates: map[string]string{}, Why: map[string]string{}}
	var resMu sync.Mutex
	// converging: done steps applied again in this run; they are listed as
	// Converged once they succeeded (a failure is listed as such, only).
	converging := map[string]bool{}
	results := g.Walk(ctx, WalkOptions{Only: only, Parallelism: par}, func(ctx context.Context, s Step) error {
		id := s.ID()
		again := false
		if c := store.Snapshot().Step(id); c != nil && c.Status == StatusDone && r.recheck(s, g) {
			log.Info("done, but a step it needs was applied again: applying it again", "step", id)
			again = true
		} else if c != nil && c.Status == StatusDone {
			drift, hold, blocked := r.drift(ctx, s, opts)
			resMu.Lock()
			switch {
			case drift == "":
				res.Skipped = append(res.Skipped, id)
			case hold != "":
				res.Drifted = append(res.Drifted, id)
				res.Why[id] = hold
				if blocked {
					res.Blocked = append(res.Blocked, id)
				}
			}
			resMu.Unlock()
			if drift == "" {
				log.Debug("already done", "step", id)
				return nil
			}
			if hold != "" {
				log.Warn("done, but no longer what the spec and the servers say: not applied again", "step", id, "change", drift, "why", hold)
				if blocked {
					return &BlockedError{ID: id, Why: hold}
				}
				return nil
			}
			log.Info("done, but drifted since: applying it again", "step", id, "change", drift)
			again = true
		}
		if again {
			resMu.Lock()
			converging[id] = true
			resMu.Unlock()
		} else if err := r.gate(id, s, opts, res, &resMu); err != nil {
			return err
		}
		err := r.step(ctx, id, applying, func(c *StepState) { c.Attempts++ }, nil, func(senv *Env) error {
			if err := checkPreconditions(ctx, s, senv); err != nil {
				return err
			}
			return s.Apply(ctx, senv)
		})
		if err == nil {
			r.markApplied(id)
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
		case err == nil && converging[id]:
			res.Converged = append(res.Converged, id)
		case err == nil:
			if !slices.Contains(res.Skipped, id) && !slices.Contains(res.Drifted, id) {
				res.Applied = append(res.Applied, id)
			}
		case errors.Is(err, ErrHeld):
			res.Held = append(res.Held, id)
		case errors.As(err, new(*BlockedError)):
			// In Drifted and Blocked already; it stays done.
		case errors.As(err, &up) && up.Blocked:
			res.Stalled = append(res.Stalled, id)
			r.update(id, func(c *StepState) {
				if c.Status != StatusDone {
					c.Note = "not run: " + up.Root + " is blocked"
				}
			})
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

// markApplied notes that id ran in this run, for the Recheckers below it.
func (r *run) markApplied(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied == nil {
		r.applied = map[string]bool{}
	}
	r.applied[id] = true
}

// recheck says whether a done Rechecker must run again: a step it needs ran
// in this run.
func (r *run) recheck(s Step, g *Graph) bool {
	if _, ok := s.(Rechecker); !ok {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range g.Needs(s.ID()) {
		if r.applied[n] {
			return true
		}
	}
	return false
}

// gate holds a gated step that this run has not approved.
func (r *run) gate(id string, s Step, opts ApplyOptions, res *ApplyResult, mu *sync.Mutex) error {
	gs, ok := s.(Gated)
	if !ok {
		return nil
	}
	gate := gs.Gate()
	if gate == "" || opts.Approve[id] {
		return nil
	}
	mu.Lock()
	res.Gates[id] = gate
	mu.Unlock()
	r.log.Info("waiting for approval", "step", id)
	r.update(id, func(c *StepState) { c.Status, c.Note = StatusPending, "waiting for approval" })
	return ErrHeld
}

// drift observes a done step again: drift is the change it would make now
// ("" when none, or when the step does not converge), hold why it must not
// be applied again now, blocked whether its own observation is a blocker.
// A failed observation is not drift: the step stays done, and plan shows
// why it could not look.
func (r *run) drift(ctx context.Context, s Step, opts ApplyOptions) (drift, hold string, blocked bool) {
	if _, ok := s.(Converger); !ok {
		return "", "", false
	}
	senv := r.env.ForStep(s.ID())
	c, err := s.Observe(ctx, senv)
	if err != nil {
		r.log.Warn("could not observe a done step again; it stays done", "step", s.ID(), "error", err)
		return "", "", false
	}
	switch c.Action {
	case plans.ActionChange, plans.ActionCreate:
	case plans.ActionBlocker:
		// A blocker is never applied again, whether or not it lists what
		// blocks it: it is reported as drifted, for a person to act.
		drift, hold = c.Summary, strings.Join(c.Blockers, "; ")
		if drift == "" {
			drift = "blocked"
		}
		if hold == "" {
			hold = "its observation is a blocker: " + drift
		}
		// Once traffic may be on green nothing converges anyway: the
		// blocker is reported as drift, not as what stops the pipeline.
		if opts.HoldConvergence != nil {
			if why := opts.HoldConvergence(senv); why != "" {
				return drift, hold + " (" + why + ")", false
			}
		}
		return drift, hold, true
	default:
		return "", "", false
	}
	if opts.HoldConvergence != nil {
		hold = opts.HoldConvergence(senv)
	}
	return c.Summary, hold, false
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
