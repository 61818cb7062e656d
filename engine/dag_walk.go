package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// ErrHeld is returned by a walk function for a step it chose not to run yet
// (a gate awaiting approval): not a failure, but its dependents wait too.
var ErrHeld = errors.New("held")

// UpstreamError is the outcome of a step that did not run because a step it
// depends on failed or was held. Root names the root cause, so that knock-on
// errors are shown as such and never as causes.
type UpstreamError struct {
	Root    string // the failed (or held, or blocked) step at the origin
	Held    bool   // the root was held, not failed
	Blocked bool   // the root was blocked by its own observation (BlockedError)
}

func (e *UpstreamError) Error() string {
	switch {
	case e.Held:
		return fmt.Sprintf("not run: waits for %s", e.Root)
	case e.Blocked:
		return fmt.Sprintf("not run: %s is blocked", e.Root)
	}
	return fmt.Sprintf("not run: %s failed", e.Root)
}

// BlockedError is the outcome of a done step whose fresh observation is a
// blocker: it stays done and is not applied again, and the steps that need
// it do not run, since what they build on is no longer what the spec and
// the servers say.
type BlockedError struct {
	ID  string
	Why string
}

func (e *BlockedError) Error() string { return e.ID + " is blocked: " + e.Why }

// NotStartedError is the outcome of a step the walk never started because
// the run was interrupted (its context ended) first.
type NotStartedError struct{ Err error }

func (e *NotStartedError) Error() string { return "not started: " + e.Err.Error() }
func (e *NotStartedError) Unwrap() error { return e.Err }

// IsUpstream reports whether err is a knock-on outcome.
func IsUpstream(err error) bool {
	var u *UpstreamError
	return errors.As(err, &u)
}

// WalkOptions select and bound a walk.
type WalkOptions struct {
	// Only limits the walk to these steps (nil: all). A step waits only for
	// the steps of the set it depends on.
	Only map[string]bool
	// Reverse walks for rollback: a step waits for the steps that need it.
	Reverse bool
	// Parallelism bounds how many fn calls run at once (<= 0: 1).
	Parallelism int
}

// Walk runs fn once per step, one goroutine per step waiting for its
// dependencies, at most Parallelism at a time. A step whose dependency did
// not succeed is not run: its outcome is an *UpstreamError naming the root
// cause. Independent steps go on. A step not yet started when ctx ends gets
// ctx's error. The result maps every walked step to its outcome (nil: ran OK).
func (g *Graph) Walk(ctx context.Context, opts WalkOptions, fn func(ctx context.Context, s Step) error) map[string]error {
	par := opts.Parallelism
	if par <= 0 {
		par = 1
	}
	sem := make(chan struct{}, par)
	in := func(id string) bool { return opts.Only == nil || opts.Only[id] }
	deps := g.needs
	if opts.Reverse {
		deps = g.dependents
	}

	done := map[string]chan struct{}{}
	for _, id := range g.order {
		if in(id) {
			done[id] = make(chan struct{})
		}
	}
	var mu sync.Mutex
	results := map[string]error{}
	var wg sync.WaitGroup
	for _, id := range g.order {
		if !in(id) {
			continue
		}
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			defer close(done[id])
			var blocked error
			for _, d := range deps[id] {
				if !in(d) {
					continue
				}
				<-done[d]
				mu.Lock()
				derr := results[d]
				mu.Unlock()
				if derr != nil && blocked == nil {
					blocked = upstreamOf(d, derr)
				}
			}
			if blocked == nil {
				select {
				case sem <- struct{}{}:
					if err := ctx.Err(); err != nil {
						blocked = &NotStartedError{Err: err}
					} else {
						blocked = callSafely(ctx, g.steps[id], fn)
					}
					<-sem
				case <-ctx.Done():
					blocked = &NotStartedError{Err: ctx.Err()}
				}
			}
			mu.Lock()
			results[id] = blocked
			mu.Unlock()
		}(id)
	}
	wg.Wait()
	return results
}

// callSafely turns a panic in a step into that step's error, so that one
// faulty step fails alone and its failure is checkpointed.
func callSafely(ctx context.Context, s Step, fn func(ctx context.Context, s Step) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in step %s: %v\n%s", s.ID(), r, debug.Stack())
		}
	}()
	return fn(ctx, s)
}

func upstreamOf(dep string, err error) error {
	var u *UpstreamError
	if errors.As(err, &u) {
		return &UpstreamError{Root: u.Root, Held: u.Held, Blocked: u.Blocked}
	}
	return &UpstreamError{Root: dep, Held: errors.Is(err, ErrHeld), Blocked: errors.As(err, new(*BlockedError))}
}
