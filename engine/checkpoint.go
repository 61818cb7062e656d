package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// run is what Apply and Rollback share: outputs seeded from the state,
// outputs checkpointed as steps record them, and the first checkpoint that
// cannot be written stopping the whole run (a run whose state cannot be
// saved must not go on changing the databases).
type run struct {
	env    *Env
	store  *StateStore
	log    hclog.Logger
	cancel context.CancelFunc

	mu          sync.Mutex
	fatal       error
	interrupted map[string]bool // steps cut short by the end of the run
	applied     map[string]bool // steps applied in this run (Apply only)
}

// startRun seeds env with the outputs the state holds and checkpoints every
// output recorded from now on. The returned context ends with the run.
func startRun(ctx context.Context, env *Env, store *StateStore) (*run, context.Context) {
	r := &run{env: env, store: store, log: env.Log}
	if r.log == nil {
		r.log = hclog.NewNullLogger()
	}
	for _, c := range store.Snapshot().Steps {
		if len(c.Outputs) > 0 {
			env.LoadOutputs(c.ID, c.Outputs)
		}
	}
	ctx, r.cancel = context.WithCancel(ctx)
	env.OnRecord(func(step, key, value string) {
		r.update(step, func(c *StepState) {
			if c.Outputs == nil {
				c.Outputs = map[string]string{}
			}
			c.Outputs[key] = value
		})
	})
	return r, ctx
}

// end stops checkpointing outputs and returns the run's fatal error, if any.
func (r *run) end() error {
	r.env.OnRecord(nil)
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fatal
}

// setFatal records the first error that stops the run, and stops it.
func (r *run) setFatal(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fatal == nil {
		r.fatal = err
		r.cancel()
	}
}

// update checkpoints a change to one step; a write failure stops the run.
func (r *run) update(id string, fn func(*StepState)) error {
	err := r.store.UpdateStep(id, fn)
	if err != nil {
		r.setFatal(err)
	}
	return err
}

// wasInterrupted says whether step id was cut short by the end of the run:
// neither it nor the steps waiting on it failed.
func (r *run) wasInterrupted(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.interrupted[id]
}

// stoppedShort says whether step id did not finish because the run ended
// (cut short, or never started): the steps waiting on it did not run, but
// nothing failed.
func (r *run) stoppedShort(id string, results map[string]error) bool {
	return r.wasInterrupted(id) || errors.As(results[id], new(*NotStartedError))
}

// transition names the statuses a step goes through in one operation.
type transition struct {
	operation string // "apply" or "rollback": metrics label and log wording
	running   Status // checkpointed before fn runs
	ok, fail  Status // checkpointed after it
}

var (
	applying    = transition{"apply", StatusRunning, StatusDone, StatusFailed}
	rollingBack = transition{"rollback", StatusRollingBack, StatusRolledBack, StatusRollbackFailed}
)

// step runs fn for one step between two checkpoints: tr.running before,
// tr.ok or tr.fail (with the error) after. A step cut short because the
// run was interrupted stays tr.running, as after a kill: the next run takes
// it up again, and status names it as interrupted. begin and done adjust the
// checkpoint further (attempt count, outputs).
func (r *run) step(ctx context.Context, id string, tr transition, begin, done func(*StepState), fn func(*Env) error) error {
	started := time.Now().UTC()
	if err := r.update(id, func(c *StepState) {
		c.Status = tr.running
		c.StartedAt = &started
		c.FinishedAt = nil
		c.Error = ""
		c.Note = ""
		if begin != nil {
			begin(c)
		}
	}); err != nil {
		return &NotStartedError{Err: err}
	}
	r.env.Metrics.SetStepStatus(id, tr.running)
	if tr.operation == "apply" {
		r.log.Info("applying", "step", id)
	} else {
		r.log.Info("rolling back", "step", id)
	}

	err := fn(r.env.ForStep(id))
	finished := time.Now().UTC()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted: %w", err)
		r.mu.Lock()
		if r.interrupted == nil {
			r.interrupted = map[string]bool{}
		}
		r.interrupted[id] = true
		r.mu.Unlock()
		r.log.Warn("interrupted: the step is taken up again by the next run", "step", id, "operation", tr.operation, "cause", errors.Unwrap(err))
		if werr := r.update(id, func(c *StepState) { c.Note = "interrupted by a signal" }); werr != nil {
			return werr
		}
		r.env.Metrics.StepFinished(id, tr.operation, finished.Sub(started), err)
		return err
	}
	status := tr.ok
	if err != nil {
		status = tr.fail
		err = withServerDetail(err)
	}
	if werr := r.update(id, func(c *StepState) {
		c.Status = status
		c.FinishedAt = &finished
		if err != nil {
			c.Error = err.Error()
		} else if done != nil {
			done(c)
		}
	}); werr != nil && err == nil {
		err = werr
	}
	r.env.Metrics.SetStepStatus(id, status)
	r.env.Metrics.StepFinished(id, tr.operation, finished.Sub(started), err)
	if err != nil {
		if tr.operation == "apply" {
			r.log.Error("step failed", "step", id, "error", err)
		} else {
			r.log.Error("rollback failed", "step", id, "error", err)
		}
	}
	return err
}
