package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// Outputs of target.settings.
const (
	// SettingsUndo is what the step changed on green, with the values
	// before (JSON list of settingsUndo), so that rollback restores them.
	SettingsUndo = "undo"
	// SettingsRestart lists the parameters of target.settings that wait
	// for a restart of green (comma-separated; "" when none).
	SettingsRestart = "restart"
)

// settingsStep provisions green's settings: the parameters target.settings
// names (ALTER SYSTEM, then a reload; those that need a restart are
// reported), blue's database and role settings mapped to green's major,
// and the database owner. It compares blue's server settings with green's
// and names the differences, the removed and renamed parameters, and the
// version at which green gets each extension. docs/settings.md.
type settingsStep struct{ spec *spec.Spec }

func init() {
	register(func(s *spec.Spec) []engine.Step { return []engine.Step{settingsStep{spec: s}} })
}

var (
	_ engine.Step              = settingsStep{}
	_ engine.Converger         = settingsStep{}
	_ engine.Describer         = settingsStep{}
	_ engine.RollbackDescriber = settingsStep{}
	_ engine.Reporter          = settingsStep{}
)

func (settingsStep) ID() string { return stepid.Settings }

// Needs target.roles (the roles whose settings are copied exist) and
// target.schema: settings such as default_transaction_read_only or a
// role's search_path must not reach green before the schema restore runs.
func (settingsStep) Needs() []string { return []string{stepid.Roles, stepid.Schema} }

// Converges: a setting added on blue since, or a new target.settings
// entry, is set by the next apply.
func (settingsStep) Converges() {}

func (s settingsStep) Describe() plans.Change {
	c := plans.Change{Summary: "compare blue's server, database and role settings with green's; set blue's database and role settings, the database owner and target.settings on green"}
	names := make([]string, 0, len(s.spec.Target.Settings))
	for n := range s.spec.Target.Settings {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c.Details = append(c.Details, alterSystemSQL(n, s.spec.Target.Settings[n]))
	}
	if len(names) > 0 {
		c.Details = append(c.Details, "SELECT pg_catalog.pg_reload_conf()")
	}
	return c
}

func (settingsStep) DescribeRollback() string {
	return "restore on green the settings target.settings changed (ALTER SYSTEM RESET or the value before), blue's database and role settings (RESET or the value before) and the database owner, where they still hold what pgshift set"
}

func (s settingsStep) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	p, err := s.plan(ctx, env)
	if err != nil {
		return plans.Change{}, err
	}
	return p.change(), nil
}

func (s settingsStep) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	p, err := s.plan(ctx, env)
	if err != nil {
		return nil, err
	}
	// A failure is the plan's blocker already, and Apply refuses on it.
	return passingOnly([]plans.Precondition{{Name: "target.settings names parameters green has and may set", OK: len(p.blockers) == 0,
		Detail: words.Plural(len(s.spec.Target.Settings), "parameter", "parameters")}}), nil
}

// Report is the status line: parameters green has been told about and
// only a restart applies.
func (settingsStep) Report(ctx context.Context, env *engine.Env) ([]string, error) {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := green.Query(ctx, `SELECT name FROM pg_catalog.pg_settings WHERE pending_restart ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("green: read pg_settings: %w", err)
	}
	pending, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("green: read pg_settings: %w", err)
	}
	if len(pending) == 0 {
		return nil, nil
	}
	return []string{fmt.Sprintf("green waits for a restart to apply %s", words.List(pending))}, nil
}

// settingsUndo is one change of the step, with what green had before.
// Prev nil means the parameter was not set there (RESET restores it).
type settingsUndo struct {
	Kind string `json:"kind"` // system, setting, owner
	settingKey
	Prev *string `json:"prev"`
	Set  string  `json:"set"`
}

func (u settingsUndo) id() string {
	b, _ := json.Marshal([]any{u.Kind, u.Role, u.InDB, u.Name})
	return string(b)
}

func readUndo(env *engine.Env) ([]settingsUndo, error) {
	prev, ok := env.Output(stepid.Settings, SettingsUndo)
	if !ok || prev == "" {
		return nil, nil
	}
	var out []settingsUndo
	if err := json.Unmarshal([]byte(prev), &out); err != nil {
		return nil, fmt.Errorf("%s: the recorded previous values (output %s) are unreadable: %w", stepid.Settings, SettingsUndo, err)
	}
	return out, nil
}

func recordUndo(env *engine.Env, undo []settingsUndo) {
	if len(undo) == 0 {
		env.Record(SettingsUndo, "")
		return
	}
	b, _ := json.Marshal(undo)
	env.Record(SettingsUndo, string(b))
}

// Apply sets what the plan lists: target.settings with ALTER SYSTEM (one
// statement each: ALTER SYSTEM may not run in a transaction) and a reload,
// then blue's database and role settings and the owner in one
// transaction. The values before are recorded first, so that a rollback
// after a crash at any point restores them.
func (s settingsStep) Apply(ctx context.Context, env *engine.Env) error {
	p, err := s.plan(ctx, env)
	if err != nil {
		return err
	}
	if len(p.blockers) > 0 {
		return fmt.Errorf("%s: %s", stepid.Settings, strings.Join(p.blockers, "; "))
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	undo, err := readUndo(env)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, u := range undo {
		seen[u.id()] = true
	}
	add := func(u settingsUndo) {
		// The first value recorded is the one green had before pgshift.
		if !seen[u.id()] {
			seen[u.id()] = true
			undo = append(undo, u)
		}
	}
	for _, sys := range p.system {
		if sys.write {
			add(settingsUndo{Kind: "system", settingKey: settingKey{Name: sys.name}, Prev: sys.file, Set: sys.value})
		}
	}
	for _, st := range p.sets {
		add(settingsUndo{Kind: "setting", settingKey: st.key, Prev: st.green, Set: st.value})
	}
	if p.owner != nil {
		from := p.owner.from
		add(settingsUndo{Kind: "owner", Prev: &from, Set: p.owner.to})
	}
	recordUndo(env, undo)

	for _, sys := range p.system {
		if !sys.write {
			continue
		}
		if _, err := green.Exec(ctx, alterSystemSQL(sys.name, sys.value)); err != nil {
			return fmt.Errorf("%s: green: ALTER SYSTEM SET %s TO %s: %w; fix target.settings.%s", stepid.Settings, sys.name, sys.value, err, sys.name)
		}
		env.Log.Info("server parameter set", "parameter", sys.name, "value", sys.value, "was", sys.current)
	}
	if p.reloadNeeded() {
		if _, err := green.Exec(ctx, `SELECT pg_catalog.pg_reload_conf()`); err != nil {
			return fmt.Errorf("%s: green: reload the configuration: %w", stepid.Settings, err)
		}
	}
	if len(p.sets) > 0 || p.owner != nil {
		err = pgx.BeginFunc(ctx, green, func(tx pgx.Tx) error {
			for _, st := range p.sets {
				if _, err := tx.Exec(ctx, st.key.setSQL(p.greenDB, st.value)); err != nil {
					return fmt.Errorf("set %s for %s on green: %w (green's role needs to own the database, or CREATEROLE for a role's settings, or to be a superuser)",
						st.key.Name, st.key.describe(p.greenDB), err)
				}
				env.Log.Info("setting copied", "scope", st.key.describe(p.greenDB), "parameter", st.key.Name, "value", st.value)
			}
			if p.owner != nil {
				if _, err := tx.Exec(ctx, ownerSQL(p.greenDB, p.owner.to)); err != nil {
					return fmt.Errorf("give database %s on green to %s: %w (green's role needs to be a superuser, or own the database and be a member of %s)",
						p.greenDB, p.owner.to, err, p.owner.to)
				}
				env.Log.Info("database owner set", "database", p.greenDB, "owner", p.owner.to, "was", p.owner.from)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", stepid.Settings, err)
		}
	}
	if p.reloadNeeded() {
		if err := waitReload(ctx, env, p.system); err != nil {
			return err
		}
	}
	restart := p.pendingRestart()
	env.Record(SettingsRestart, strings.Join(restart, ","))
	if len(restart) > 0 {
		env.Log.Warn("green needs a restart to apply these parameters: restart green before the cutover", "parameters", strings.Join(restart, ", "))
	}
	return nil
}

// waitReload waits until green runs with the reloaded values of the
// parameters that need no restart: pg_reload_conf only signals the
// servers, and each session reads the file at its next command.
func waitReload(ctx context.Context, env *engine.Env, system []systemSet) error {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		settings, err := readServerSettings(ctx, green)
		if err != nil {
			return fmt.Errorf("%s: green: %w", stepid.Settings, err)
		}
		var waiting []string
		for _, s := range system {
			g, ok := settings[s.name]
			if ok && s.context != "postmaster" && g.canon() != g.canonOf(s.value) {
				waiting = append(waiting, s.name)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: green did not take %s after a reload within 10s: read green's server log for the reason (an invalid value is logged there), fix target.settings, and apply again",
				stepid.Settings, words.List(waiting))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Rollback restores, in reverse order, each value the step changed, where
// green still holds what the step set (a value changed since is the
// owner's, and left).
func (s settingsStep) Rollback(ctx context.Context, env *engine.Env) error {
	undo, err := readUndo(env)
	if err != nil {
		return err
	}
	if len(undo) == 0 {
		env.Record(SettingsRestart, "")
		return nil
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	db, err := pg.Scalar[string](ctx, green, `SELECT pg_catalog.current_database()`)
	if err != nil {
		return fmt.Errorf("%s: green: %w", stepid.Settings, err)
	}
	settings, err := readServerSettings(ctx, green)
	if err != nil {
		return fmt.Errorf("%s: green: %w", stepid.Settings, err)
	}
	auto, autoReadable, err := readAutoConf(ctx, green)
	if err != nil {
		return fmt.Errorf("%s: green: %w", stepid.Settings, err)
	}
	stored, err := readDBRoleSettings(ctx, green)
	if err != nil {
		return fmt.Errorf("%s: green: %w", stepid.Settings, err)
	}
	reload := false
	for i := len(undo) - 1; i >= 0; i-- {
		u := undo[i]
		switch u.Kind {
		case "system":
			gs := settings[u.Name]
			cur, inFile := auto[u.Name]
			if autoReadable && (!inFile || gs.canonOf(cur) != gs.canonOf(u.Set)) {
				env.Log.Info("server parameter changed since pgshift set it: left as it is", "parameter", u.Name)
				continue
			}
			q := "ALTER SYSTEM RESET " + pg.QuoteIdent(u.Name)
			if u.Prev != nil {
				q = alterSystemSQL(u.Name, *u.Prev)
			}
			if _, err := green.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: green: restore %s: %w", stepid.Settings, u.Name, err)
			}
			reload = true
		case "setting":
			if u.Role != "" {
				exists, err := pg.Scalar[bool](ctx, green, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`, u.Role)
				if err != nil {
					return fmt.Errorf("%s: green: look up role %s: %w", stepid.Settings, u.Role, err)
				}
				if !exists {
					continue // gone, and its settings with it
				}
			}
			cur, ok := stored[u.settingKey]
			if !ok || !sameStored(u.Name, cur, u.Set) {
				if ok || u.Prev != nil {
					env.Log.Info("setting changed since pgshift set it: left as it is", "scope", u.describe(db), "parameter", u.Name)
				}
				continue
			}
			q := u.resetSQL(db)
			if u.Prev != nil {
				q = u.setSQL(db, *u.Prev)
			}
			if _, err := green.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: green: restore %s for %s: %w", stepid.Settings, u.Name, u.describe(db), err)
			}
		case "owner":
			owner, err := pg.Scalar[string](ctx, green, `SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()`)
			if err != nil {
				return fmt.Errorf("%s: green: read the database owner: %w", stepid.Settings, err)
			}
			if owner != u.Set || u.Prev == nil || *u.Prev == owner {
				continue
			}
			if _, err := green.Exec(ctx, ownerSQL(db, *u.Prev)); err != nil {
				return fmt.Errorf("%s: green: give database %s back to %s: %w", stepid.Settings, db, *u.Prev, err)
			}
		}
	}
	if reload {
		if _, err := green.Exec(ctx, `SELECT pg_catalog.pg_reload_conf()`); err != nil {
			return fmt.Errorf("%s: green: reload the configuration: %w", stepid.Settings, err)
		}
	}
	recordUndo(env, nil)
	env.Record(SettingsRestart, "")
	return nil
}
