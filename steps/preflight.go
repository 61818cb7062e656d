package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
)

// findings collects what an inspecting step (preflight, audit) learned: facts
// for the summary line, preconditions with verdicts, and warnings and
// blockers that each say what is wrong and the fix.
type findings struct {
	facts    []string
	checks   []plans.Precondition
	warnings []string
	blockers []string
	details  []string
	outputs  [][2]string // recorded in the state when apply passes
}

func (f *findings) output(key, value string) { f.outputs = append(f.outputs, [2]string{key, value}) }

func (f *findings) fact(format string, args ...any) {
	f.facts = append(f.facts, fmt.Sprintf(format, args...))
}

func (f *findings) detail(format string, args ...any) {
	f.details = append(f.details, fmt.Sprintf(format, args...))
}

func (f *findings) warn(format string, args ...any) {
	f.warnings = append(f.warnings, fmt.Sprintf(format, args...))
}

// check records a precondition; when it fails, blocker (what is wrong and
// the fix) is also recorded, and is the precondition's detail so that apply
// refusing on it names the fix too.
func (f *findings) check(name string, ok bool, detail, blocker string) {
	if !ok {
		detail = blocker
		f.blockers = append(f.blockers, blocker)
	}
	f.checks = append(f.checks, plans.Precondition{Name: name, OK: ok, Detail: detail})
}

// change is the plan line: a blocker if anything blocks, a warning if a
// reviewer must read something, nothing to do otherwise.
func (f *findings) change() plans.Change {
	c := plans.Change{
		Action:   plans.ActionNone,
		Summary:  strings.Join(f.facts, ", "),
		Details:  f.details,
		Warnings: f.warnings,
		Blockers: f.blockers,
	}
	switch {
	case len(f.blockers) > 0:
		c.Action = plans.ActionBlocker
	case len(f.warnings) > 0:
		c.Action = plans.ActionWarning
	}
	return c
}

// passing is what Check returns: the preconditions that hold. A failed one
// is already a blocker of the plan's change, and Apply refuses on it with its
// fix; listing it as a failed precondition too would show and count every
// problem twice.
func (f *findings) passing() []plans.Precondition {
	return passingOnly(f.checks)
}

func passingOnly(pcs []plans.Precondition) []plans.Precondition {
	var ok []plans.Precondition
	for _, pc := range pcs {
		if pc.OK {
			ok = append(ok, pc)
		}
	}
	return ok
}

// err is Apply's verdict: nil when nothing blocks, else every blocker.
func (f *findings) err(stepID string) error {
	if len(f.blockers) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s:\n  - %s", stepID, words.Count(len(f.blockers), "blocker"), strings.Join(f.blockers, "\n  - "))
}

// inspector is an inspecting step (preflight.source, preflight.target,
// audit): it changes nothing, and says what it found as findings.
type inspector interface {
	ID() string
	Needs() []string
	engine.Describer
	engine.RollbackDescriber
	engine.Fingerprinter
	inspect(ctx context.Context, env *engine.Env) (*findings, error)
}

// inspecting gives an inspector its Step methods: plan, check and apply all
// inspect again; apply fails while anything blocks, and otherwise records
// the findings' outputs; there is nothing to roll back.
type inspecting struct{ inspector }

func (s inspecting) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	f, err := s.inspect(ctx, env)
	if err != nil {
		return plans.Change{}, err
	}
	return f.change(), nil
}

func (s inspecting) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	f, err := s.inspect(ctx, env)
	if err != nil {
		return nil, err
	}
	return f.passing(), nil
}

func (s inspecting) Apply(ctx context.Context, env *engine.Env) error {
	f, err := s.inspect(ctx, env)
	if err != nil {
		return err
	}
	if err := f.err(s.ID()); err != nil {
		return err
	}
	for _, kv := range f.outputs {
		env.Record(kv[0], kv[1])
	}
	return nil
}

func (inspecting) Rollback(context.Context, *engine.Env) error { return nil }

// connectCheck opens a side's pool and records the connection verdict. A
// failure is a blocker, not an error, so that the plan shows it beside the
// other findings.
func connectCheck(ctx context.Context, f *findings, db *engine.Database, dsnField string) (*pgxpool.Pool, bool) {
	pool, err := db.Pool(ctx)
	if err != nil {
		fix := fmt.Sprintf("check %s", dsnField)
		if db.PasswordEnv != "" {
			fix += fmt.Sprintf(" and the password in $%s", db.PasswordEnv)
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "3D000" {
			cfg, _ := db.ConnConfig()
			name := ""
			if cfg != nil {
				name = cfg.Database
			}
			fix = fmt.Sprintf("create it on %s: CREATE DATABASE %s", db.Role, pg.QuoteIdent(name))
		}
		// The engine's connection errors already name the side, and for a
		// refused connection or login say what to fix: add ours only where
		// it says more.
		var authErr *pgconn.PgError
		hinted := errors.Is(err, syscall.ECONNREFUSED) ||
			(errors.As(err, &authErr) && (authErr.Code == "28P01" || authErr.Code == "28000"))
		msg := err.Error()
		if !hinted {
			msg += ": " + fix
		}
		f.check("connect to "+db.Role, false, err.Error(), msg)
		return nil, false
	}
	f.check("connect to "+db.Role, true, db.Redacted(), "")
	return pool, true
}
