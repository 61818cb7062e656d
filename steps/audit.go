package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// Output keys audit records for later steps.
const (
	// AuditMaterializedViews lists blue's materialized views (quoted
	// identifiers, comma separated): refreshed on green before the cutover.
	AuditMaterializedViews = "materialized_views"
	// AuditSequences is how many sequences blue has (synced at cutover).
	AuditSequences = "sequences"
)

// audit is the compatibility report for a logical copy from blue's major to
// green's: what blue uses that green must offer (extensions,
// audit_extensions.go), what green's schema restore would refuse and what
// differs in meaning (catalog checks, the classes of pg_upgrade --check that
// matter to a dump and restore, audit_catalog.go; encodings and locales,
// audit_locale.go), and what logical replication does not carry
// (audit_objects.go), each with the fix for the pair. It changes nothing.
// docs/audit.md lists every check.
type audit struct{}

func init() {
	register(func(*spec.Spec) []engine.Step { return []engine.Step{inspecting{audit{}}} })
}

func (audit) ID() string      { return stepid.Audit }
func (audit) Needs() []string { return []string{stepid.PreflightSource, stepid.PreflightTarget} }

// auditReport is what audit found, beside the findings shown in the plan.
type auditReport struct {
	matviews  []string // quoted identifiers
	sequences int
}

// inspect is the report as findings, with what later steps act on as
// outputs (recorded when apply passes).
func (a audit) inspect(ctx context.Context, env *engine.Env) (*findings, error) {
	f, r, err := a.report(ctx, env)
	if err != nil {
		return nil, err
	}
	f.output(AuditMaterializedViews, strings.Join(r.matviews, ","))
	f.output(AuditSequences, strconv.Itoa(r.sequences))
	return f, nil
}

func (audit) report(ctx context.Context, env *engine.Env) (*findings, auditReport, error) {
	var r auditReport
	f := &findings{}
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return nil, r, err
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return nil, r, err
	}
	bv, err := pg.ServerVersionOf(ctx, blue)
	if err != nil {
		return nil, r, fmt.Errorf("blue: %w", err)
	}
	gv, err := pg.ServerVersionOf(ctx, green)
	if err != nil {
		return nil, r, fmt.Errorf("green: %w", err)
	}
	pair := majorPair{blue: bv.Major, green: gv.Major}
	if err := auditExtensions(ctx, f, blue, green, pair); err != nil {
		return nil, r, err
	}
	if err := auditLocale(ctx, f, blue, green); err != nil {
		return nil, r, err
	}
	if err := auditCatalog(ctx, f, blue, pair); err != nil {
		return nil, r, fmt.Errorf("blue: %w", err)
	}
	if err := auditObjects(ctx, f, blue, env, &r); err != nil {
		return nil, r, fmt.Errorf("blue: %w", err)
	}
	f.warn("DDL is not replicated: after a schema change on blue, run pgshift plan and apply (they add new tables, columns and indexes on green; green's replication waits until then); changes of type, dropped columns and constraints are named for you to run on green")
	return f, r, nil
}

// majorPair is the upgrade's blue and green major versions: which checks
// apply, and which fix fits, depends on both.
type majorPair struct{ blue, green int }

// crosses says whether the upgrade goes from before major to major or later:
// a change made in PostgreSQL major matters.
func (p majorPair) crosses(major int) bool { return p.blue < major && p.green >= major }

// objects ends a finding with its objects: inline when there are few, else
// as an object list (plans.ObjectList) that JSON carries whole and text
// folds.
func objects(names []string) string {
	if len(names) <= 3 {
		return " " + strings.Join(names, ", ")
	}
	return plans.ObjectList(names)
}
