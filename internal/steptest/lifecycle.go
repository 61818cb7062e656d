// Package steptest checks the contract every step keeps, on real servers:
// observe says what apply would do; apply is idempotent (a second apply
// changes nothing); once applied, observe shows nothing to do; rollback
// is idempotent too.
package steptest

import (
	"context"
	"testing"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/plans"
)

// Objects describes the database objects a step may touch (catalog counts,
// names, row counts), so that a second apply can be seen to change none.
type Objects func(t *testing.T) string

// ApplyTwice observes the step, applies it, applies it again and checks
// that the second apply changed no object.
func ApplyTwice(t *testing.T, ctx context.Context, env *engine.Env, step engine.Step, objects Objects) {
	t.Helper()
	env = env.ForStep(step.ID())
	if _, err := step.Observe(ctx, env); err != nil {
		t.Fatalf("%s: observe before apply: %v", step.ID(), err)
	}
	if err := step.Apply(ctx, env); err != nil {
		t.Fatalf("%s: apply: %v", step.ID(), err)
	}
	before := objects(t)
	if err := step.Apply(ctx, env); err != nil {
		t.Fatalf("%s: second apply: %v", step.ID(), err)
	}
	if after := objects(t); after != before {
		t.Errorf("%s: the second apply changed objects:\n before %s\n after  %s", step.ID(), before, after)
	}
}

// InPlace checks that observe shows each applied step in place (✓, or only
// warnings for the inspecting steps): what the next plan shows. A step may
// rely on a later one to finish its work (source.slot on target.copy's
// snapshot slot), so this runs once all are applied.
func InPlace(t *testing.T, ctx context.Context, env *engine.Env, steps []engine.Step) {
	t.Helper()
	for _, step := range steps {
		c, err := step.Observe(ctx, env.ForStep(step.ID()))
		if err != nil {
			t.Fatalf("%s: observe after apply: %v", step.ID(), err)
		}
		if c.Action != plans.ActionNone && c.Action != plans.ActionWarning {
			t.Errorf("%s: observe after apply says %s (%s), want nothing to do", step.ID(), c.Action, c.Summary)
		}
	}
}

// RollbackTwice rolls the step back twice: both must succeed, and the
// second must change no object.
func RollbackTwice(t *testing.T, ctx context.Context, env *engine.Env, step engine.Step, objects Objects) {
	t.Helper()
	env = env.ForStep(step.ID())
	if err := step.Rollback(ctx, env); err != nil {
		t.Fatalf("%s: rollback: %v", step.ID(), err)
	}
	before := objects(t)
	if err := step.Rollback(ctx, env); err != nil {
		t.Fatalf("%s: second rollback: %v", step.ID(), err)
	}
	if after := objects(t); after != before {
		t.Errorf("%s: the second rollback changed objects:\n before %s\n after  %s", step.ID(), before, after)
	}
}

// Lifecycle runs ApplyTwice on each step in order (each may need the ones
// before it), checks them InPlace, then runs RollbackTwice on each in
// reverse order.
func Lifecycle(t *testing.T, ctx context.Context, env *engine.Env, steps []engine.Step, objects Objects) {
	t.Helper()
	for _, s := range steps {
		ApplyTwice(t, ctx, env, s, objects)
	}
	InPlace(t, ctx, env, steps)
	for i := len(steps) - 1; i >= 0; i-- {
		RollbackTwice(t, ctx, env, steps[i], objects)
	}
}
