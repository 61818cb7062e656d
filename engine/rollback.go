package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RollbackOptions tune a rollback.
type RollbackOptions struct {
	Parallelism int // <= 0: 4
	// Step, when set, limits the rollback to that step and the steps that
	// need it, directly or not; the steps it needs are kept as they are.
	// `pgshift rollback --step cutover` moves the application back to blue
	// and keeps the replication a new cutover goes on from.
	Step string
}

// RollbackResult says what a rollback did, each list in rollback order.
type RollbackResult struct {
	RolledBack  []string
	Failed      []StepError // root causes
	Blocked     []StepError // kept: a step that needs them could not be rolled back
	NotStarted  []string    // interrupted before they started, or waiting on an interrupted step
	Interrupted []string    // cut short by the end of the run: rolled back by the next one
	Orphans     []string    // started under the state but no longer in the spec: cannot be undone
}

// Complete says every target was rolled back.
func (r *RollbackResult) Complete() bool {
	return len(r.Failed)+len(r.Blocked)+len(r.NotStarted)+len(r.Interrupted)+len(r.Orphans) == 0
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

// RollbackScope is RollbackTargets limited to step and the steps that need
// it (step "": every step, and the orphans). A step not in the graph is an
// error naming the steps there are.
func RollbackScope(g *Graph, st *State, step string) (targets, orphans []string, err error) {
	targets, orphans = RollbackTargets(g, st)
	if step == "" {
		return targets, orphans, nil
	}
	if _, ok := g.Step(step); !ok {
		return nil, nil, fmt.Errorf("--step %s: no such step; steps are %s", step, strings.Join(g.Order(), ", "))
	}
	scope := g.Descendants(step)
	scope[step] = true
	var in []string
	for _, id := range targets {
		if scope[id] {
			in = append(in, id)
		}
	}
	// Orphans are not in the graph, so nothing says whether they need
	// step: a partial rollback leaves them to a full one.
	return in, nil, nil
}

// Rollback undoes every started step (or, with opts.Step, that step and the
// steps that need it) in reverse dependency order, each step after the steps
// that need it, checkpointed like Apply (rolling-back before,
// rolled-back or rollback-failed after). When a step's rollback fails, the
// steps it needs are kept as they are: undoing them under a live dependent
// would break it.
func Rollback(ctx context.Context, g *Graph, env *Env, store *StateStore, opts RollbackOptions) (*RollbackResult, error) {
	par := opts.Parallelism
	if par <= 0 {
		par = 4
	}
	snap := store.Snapshot()
	targets, orphans, err := RollbackScope(g, snap, opts.Step)
	if err != nil {
		return nil, err
	}
	only := map[string]bool{}
	for _, id := range targets {
		only[id] = true
	}
	r, ctx := startRun(ctx, env, store)
	log := r.log

	results := g.Walk(ctx, WalkOptions{Only: only, Reverse: true, Parallelism: par}, func(ctx context.Context, s Step) error {
		id := s.ID()
		err := r.step(ctx, id, rollingBack, nil, func(c *StepState) { c.Outputs = nil }, func(senv *Env) error {
			return s.Rollback(ctx, senv)
		})
		if err != nil {
			return err
		}
		env.outputs.clear(id) // after its rollback they describe nothing
		c := store.Snapshot().Step(id)
		log.Info("rolled back", "step", id, "duration", c.FinishedAt.Sub(*c.StartedAt).Round(time.Millisecond).String())
		return nil
	})

	res := &RollbackResult{Orphans: orphans}
	for _, id := range targets {
		err := results[id]
		var up *UpstreamError
		switch {
		case err == nil:
			res.RolledBack = append(res.RolledBack, id)
		case r.wasInterrupted(id):
			res.Interrupted = append(res.Interrupted, id)
		case errors.As(err, &up) && r.stoppedShort(up.Root, results):
			res.NotStarted = append(res.NotStarted, id)
		case errors.As(err, &up):
			res.Blocked = append(res.Blocked, StepError{ID: id, Err: fmt.Errorf("kept: the rollback of %s failed", up.Root)})
			r.update(id, func(c *StepState) { c.Note = "kept: the rollback of " + up.Root + " failed" })
		case errors.As(err, new(*NotStartedError)):
			res.NotStarted = append(res.NotStarted, id)
		default:
			res.Failed = append(res.Failed, StepError{ID: id, Err: err})
		}
	}
	return res, r.end()
}
