package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
)

// PlanOptions tunes BuildPlan.
type PlanOptions struct {
	// Offline plans without connecting: every step is uninspected and shows
	// its Describer output when it has one.
	Offline bool
	// Parallelism bounds concurrent observations (<= 0: 4).
	Parallelism int
	// Versions reads both servers' versions; nil queries server_version
	// through env.Source and env.Target.
	Versions func(ctx context.Context, env *Env) (blue, green string, err error)
}

// BuildPlan observes every step of g and returns the plan, steps in g's
// order. Online, both servers must answer (a plan of an unreachable database
// would mislead); a step whose observation fails shows as a blocker saying
// why. A step's preconditions are checked only when every step it needs is
// already in place (or only warns), since otherwise apply would see another
// world.
func BuildPlan(ctx context.Context, g *Graph, env *Env, opts PlanOptions) (*plans.Plan, error) {
	p := &plans.Plan{
		FormatVersion: plans.FormatVersion,
		Name:          env.Spec.Name,
		Blue:          plans.Server{Address: env.Source.Redacted()},
		Green:         plans.Server{Address: env.Target.Redacted()},
		Offline:       opts.Offline,
		SpecHash:      env.Spec.Hash(),
	}
	if opts.Offline {
		for _, id := range g.Order() {
			s, _ := g.Step(id)
			c := plans.Change{Summary: "not inspected (offline)"}
			if d, ok := s.(Describer); ok {
				c = d.Describe()
			}
			c.Action = plans.ActionUninspected
			p.Steps = append(p.Steps, plans.Step{ID: id, Needs: nonNilStrings(g.Needs(id)), Change: c})
		}
		p.Summarize()
		return p, nil
	}

	versions := opts.Versions
	if versions == nil {
		versions = ServerVersions
	}
	blue, green, err := versions(ctx, env)
	if err != nil && !greenDatabaseMissing(err) {
		return nil, fmt.Errorf("%w (to plan without connecting, run plan --offline)", err)
	}
	// A database green lacks is preflight.target's blocker, with the
	// statement that makes it: the plan goes on to show it.
	p.Blue.Version, p.Green.Version = blue, green

	par := opts.Parallelism
	if par <= 0 {
		par = 4
	}
	var mu sync.Mutex
	observed := map[string]plans.Step{}
	inPlace := map[string]bool{}
	waiting := map[string]bool{} // could not look because a step it needs blocks
	g.Walk(ctx, WalkOptions{Parallelism: par}, func(ctx context.Context, s Step) error {
		id := s.ID()
		senv := env.ForStep(id)
		senv.Planning = true
		ps := plans.Step{ID: id, Needs: nonNilStrings(g.Needs(id))}
		c, err := s.Observe(ctx, senv)
		mu.Lock()
		ready := true
		var blockedBy []string
		for _, n := range ps.Needs {
			// Readiness is transitive: a blocker upstream is reported once,
			// where it is, not again by every step below it.
			if !inPlace[n] {
				ready = false
			}
			if observed[n].Action == plans.ActionBlocker || waiting[n] {
				blockedBy = append(blockedBy, n)
			}
		}
		mu.Unlock()
		switch {
		case err != nil && len(blockedBy) > 0:
			// It cannot look because of what a step it needs blocks on:
			// that step says why.
			c = plans.Change{Action: plans.ActionUninspected, Summary: "not inspected: waits for " + strings.Join(blockedBy, ", ")}
			mu.Lock()
			waiting[id] = true
			mu.Unlock()
		case err != nil:
			c = plans.Change{Action: plans.ActionBlocker, Summary: "cannot inspect: " + firstLineOf(err.Error())}
		}
		ps.Change = c
		if ready && err == nil {
			pcs, cerr := s.Check(ctx, senv)
			if cerr != nil {
				pcs = append(pcs, plans.Precondition{Name: "check", Detail: "cannot check: " + firstLineOf(cerr.Error())})
			}
			ps.Preconditions = pcs
		}
		mu.Lock()
		observed[id] = ps
		// A step that only warns (audit always does) changes nothing that
		// its dependents' checks could see.
		inPlace[id] = ready && err == nil && (c.Action == plans.ActionNone || c.Action == plans.ActionWarning) &&
			len(c.Blockers) == 0 && !failedPrecondition(ps.Preconditions)
		mu.Unlock()
		return nil
	})
	for _, id := range g.Order() {
		p.Steps = append(p.Steps, observed[id])
	}
	p.Summarize()
	p.Fingerprint = fingerprint(p, g)
	return p, nil
}

// StalePlanError says a saved plan no longer matches the spec or the live
// databases.
type StalePlanError struct {
	PlanFile string
	Reason   string
}

func (e *StalePlanError) Error() string {
	return fmt.Sprintf("saved plan %s is stale: %s since it was made. Run `pgshift plan -out %s` again, review it, and apply the new plan "+
		"(to resume an interrupted apply, run `pgshift apply -f SPEC` instead)", e.PlanFile, e.Reason, e.PlanFile)
}

// CheckSavedPlan compares a saved plan with the spec and a fresh observation
// and refuses it when either moved on.
func CheckSavedPlan(ctx context.Context, saved *plans.Plan, planFile string, g *Graph, env *Env, opts PlanOptions) error {
	if err := CheckSavedPlanSpec(saved, planFile, env.Spec); err != nil {
		return err
	}
	opts.Offline = false
	fresh, err := BuildPlan(ctx, g, env, opts)
	if err != nil {
		return err
	}
	if fresh.Fingerprint != saved.Fingerprint {
		var moved []string
		old := map[string]plans.Step{}
		for _, s := range saved.Steps {
			old[s.ID] = s
		}
		for _, s := range fresh.Steps {
			o, ok := old[s.ID]
			if !ok || o.Action != s.Action || o.Summary != s.Summary {
				moved = append(moved, s.ID)
			}
		}
		reason := "blue or green has changed"
		if len(moved) > 0 {
			reason = "blue or green has changed (" + strings.Join(moved, ", ") + ")"
		}
		return &StalePlanError{PlanFile: planFile, Reason: reason}
	}
	return nil
}

// CheckSavedPlanSpec is the part of CheckSavedPlan that needs no
// connection: the plan is of this spec, observed something, and the spec's
// value has not changed.
func CheckSavedPlanSpec(saved *plans.Plan, planFile string, s *spec.Spec) error {
	if saved.Name != s.Name {
		return &StalePlanError{PlanFile: planFile, Reason: fmt.Sprintf("it is a plan of spec %q, not %q", saved.Name, s.Name)}
	}
	if saved.Offline || saved.Fingerprint == "" {
		return fmt.Errorf("saved plan %s was made with --offline: it observed nothing, so it cannot be applied. Run `pgshift plan -out %s` without --offline", planFile, planFile)
	}
	if saved.SpecHash != s.Hash() {
		return &StalePlanError{PlanFile: planFile, Reason: "the spec has changed"}
	}
	return nil
}

// ServerVersions reads server_version on both sides ("13.23", "17.10").
func ServerVersions(ctx context.Context, env *Env) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out [2]string
	for i, db := range []*Database{env.Source, env.Target} {
		pool, err := db.Pool(ctx)
		if err != nil {
			return out[0], out[1], err
		}
		var v string
		if err := pool.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
			return out[0], out[1], fmt.Errorf("%s: read server_version on %s: %w", db.Role, db.Redacted(), err)
		}
		if f := strings.Fields(v); len(f) > 0 {
			v = f[0]
		}
		out[i] = v
	}
	return out[0], out[1], nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// failedPrecondition reports whether any precondition does not hold.
func failedPrecondition(pcs []plans.Precondition) bool {
	for _, pc := range pcs {
		if !pc.OK {
			return true
		}
	}
	return false
}

// greenDatabaseMissing says whether err is green refusing a connection to
// a database it does not have (SQLSTATE 3D000).
func greenDatabaseMissing(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000" && strings.HasPrefix(err.Error(), "green")
}
