package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// RollbackOptions tune a rollback.
type RollbackOptions struct {
	Parallelism int // <= 0: 4
}

// RollbackResult says what a rollback did, each list in rollback order.
type RollbackResult struct {
	RolledBack []string
	Failed     []StepError // root causes
	Blocked    []StepError // kept: a step that needs them could not be rolled back
	NotStarted []string
	Orphans    []string // started under the state but no longer in the spec: cannot be undone
}

// Complete says every target was rolled back.
func (r *RollbackResult) Complete() bool {
	return len(r.Failed)+len(r.Blocked)+len(r.NotStarted)+len(r.Orphans) == 0
}

// needsRollback says whether Apply may have changed something: it started
// and was not rolled back since.
func needsRollback(s Status) bool {
	switch s {
	case StatusRunning, StatusDone, StatusFailed, StatusRollingBack, StatusRollbackFailed:
		return true
	}
	return false
}

// RollbackTargets are the steps a rollback would undo, in rollback order
// (every step before the steps it needs), and the checkpointed steps that
// would need it but are no longer in the graph.
func RollbackTargets(g *Graph, st *State) (targets, orphans []string) {
	for _, id := range g.Reverse() {
		if c := st.Step(id); c != nil && needsRollback(c.Status) {
			targets = append(targets, id)
		}
	}
	for _, c := range st.Steps {
		if _, ok := g.Step(c.ID); !ok && needsRollback(c.Status) {
			orphans = append(orphans, c.ID)
		}
	}
	return targets, orphans
}

// Rollback undoes every started step in reverse dependency order, each step
// after the steps that need it, checkpointed like Apply (rolling-back before,
// rolled-back or rollback-failed after). When a step's rollback fails, the
// steps it needs are kept as they are: undoing them under a live dependent
// would break it.
func Rollback(ctx context.Context, g *Graph, env *Env, store *StateStore, opts RollbackOptions) (*RollbackResult, error) {
	log := env.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	par := opts.Parallelism
	if par <= 0 {
		par = 4
	}
	snap := store.Snapshot()
	targets, orphans := RollbackTargets(g, snap)
	only := map[string]bool{}
	for _, id := range targets {
		only[id] = true
	}
	for _, c := range snap.Steps {
		if len(c.Outputs) > 0 {
			env.LoadOutputs(c.ID, c.Outputs)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fatalMu sync.Mutex
	var fatal error
	setFatal := func(err error) {
		fatalMu.Lock()
		defer fatalMu.Unlock()
		if fatal == nil {
			fatal = err
			cancel()
		}
	}
	env.OnRecord(func(step, key, value string) {
		if err := store.UpdateStep(step, func(c *StepState) {
			if c.Outputs == nil {
				c.Outputs = map[string]string{}
			}
			c.Outputs[key] = value
		}); err != nil {
			setFatal(err)
		}
	})
	defer env.OnRecord(nil)

	results := g.Walk(ctx, WalkOptions{Only: only, Reverse: true, Parallelism: par}, func(ctx context.Context, s Step) error {
		id := s.ID()
		started := time.Now().UTC()
		if err := store.UpdateStep(id, func(c *StepState) {
			c.Status = StatusRollingBack
			c.StartedAt = &started
			c.FinishedAt = nil
			c.Error = ""
			c.Note = ""
		}); err != nil {
			setFatal(err)
			return &NotStartedError{Err: err}
		}
		env.Metrics.SetStepStatus(id, StatusRollingBack)
		log.Info("rolling back", "step", id)
		err := s.Rollback(ctx, env.ForStep(id))
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		finished := time.Now().UTC()
		status := StatusRolledBack
		if err != nil {
			status = StatusRollbackFailed
		}
		if werr := store.UpdateStep(id, func(c *StepState) {
			c.Status = status
			c.FinishedAt = &finished
			if err != nil {
				c.Error = err.Error()
			} else {
				c.Outputs = nil
			}
		}); werr != nil {
			setFatal(werr)
			if err == nil {
				err = werr
			}
		}
		if err == nil {
			env.outputs.clear(id)
		}
		env.Metrics.SetStepStatus(id, status)
		env.Metrics.StepFinished(id, "rollback", finished.Sub(started), err)
		if err != nil {
			log.Error("rollback failed", "step", id, "error", err)
			return err
		}
		log.Info("rolled back", "step", id, "duration", finished.Sub(started).Round(time.Millisecond).String())
		return nil
	})

	res := &RollbackResult{Orphans: orphans}
	for _, id := range targets {
		err := results[id]
		var up *UpstreamError
		switch {
		case err == nil:
			res.RolledBack = append(res.RolledBack, id)
		case errors.As(err, &up):
			res.Blocked = append(res.Blocked, StepError{ID: id, Err: fmt.Errorf("kept: the rollback of %s failed", up.Root)})
			if werr := store.UpdateStep(id, func(c *StepState) { c.Note = "kept: the rollback of " + up.Root + " failed" }); werr != nil {
				setFatal(werr)
			}
		case errors.As(err, new(*NotStartedError)):
			res.NotStarted = append(res.NotStarted, id)
		default:
			res.Failed = append(res.Failed, StepError{ID: id, Err: err})
		}
	}
	return res, fatal
}
