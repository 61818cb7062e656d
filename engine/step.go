package engine

import (
	"context"

	"github.com/pgshift/pgshift/plans"
)

// Step is one node of the upgrade DAG. Steps are values with stable IDs (used
// in plans, state, metrics and logs); the engine knows them only through this
// interface, and the CLI registers the real ones.
type Step interface {
	ID() string
	Needs() []string
	// Observe inspects blue/green and says what applying would change.
	Observe(ctx context.Context, env *Env) (plans.Change, error)
	// Check returns the preconditions that must hold before Apply, each with
	// its live verdict.
	Check(ctx context.Context, env *Env) ([]plans.Precondition, error)
	// Apply is idempotent: run again after a crash at any point, it finishes
	// the job or says why not.
	Apply(ctx context.Context, env *Env) error
	// Rollback undoes Apply; also idempotent.
	Rollback(ctx context.Context, env *Env) error
}
