package engine

import (
	"context"

	"github.com/pgshift/pgshift/plans"
)

// Optional step abilities. A step implements any of these small interfaces
// besides Step; the engine checks them by type assertion, so a step kind
// adds only what it needs.

// Gated is a step that needs explicit approval before it applies (the
// cutover). Gate explains what approving means ("pauses writes for up to 10s
// and moves the application to green"); "" means no approval is needed (for
// example cutover.approval: auto). Without approval, apply stops before the
// step with exit status 0 and says how to go on (`--approve-cutover`, or
// `--approve STEP`).
type Gated interface {
	Gate() string
}

// Reporter gives live facts for `pgshift status`: replication lag, per-table
// sync state, verify progress. One short line per fact; it must be read-only
// and quick (status bounds it with a timeout).
type Reporter interface {
	Report(ctx context.Context, env *Env) ([]string, error)
}

// Describer says what a step would do without connecting anywhere: the SQL
// it would run, the objects it would create. `plan --offline` shows it under
// the step (the engine sets the action to uninspected).
type Describer interface {
	Describe() plans.Change
}

// RollbackDescriber says in one line what Rollback would undo; the rollback
// preview shows it.
type RollbackDescriber interface {
	DescribeRollback() string
}

// Fingerprinter picks the part of an observation that must not change
// between `plan -out` and `apply PLAN` for the plan to stay valid. Steps
// whose summary carries moving numbers (lag, row counts) implement it to
// leave them out; by default the whole change counts.
type Fingerprinter interface {
	Fingerprint(observed plans.Change) string
}

// Converger is a step whose Apply also brings it back in line with the spec
// and the servers once it is done (a table added to the selection, a role
// created on blue since, a column added on blue): when a fresh observation
// of the done step shows a change, apply runs it again. Steps without it
// are applied once; drift they observe is shown by plan, and said by apply.
type Converger interface {
	Converges()
}

// Rechecker is a done step whose verdict is about the steps it needs (lag
// caught up, rows equal): when one of them was applied in this run (a
// converged publication, a table added to the subscription), apply runs it
// again rather than trust a verdict on what has changed since.
type Rechecker interface {
	Rechecks()
}
