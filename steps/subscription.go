package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

func init() {
	register(func(spec *spec.Spec) []engine.Step { return []engine.Step{&subscriptionStep{spec: spec}} })
}

// subscriptionStep creates green's subscription on the slot source.slot made
// (create_slot = false), with native copy_data, passing the spec's options
// only where green's major accepts them.
type subscriptionStep struct{ spec *spec.Spec }

func (s *subscriptionStep) ID() string { return stepid.Subscription }

// Converges: tables the publication gained or lost since are taken up with
// REFRESH PUBLICATION (the new ones copied).
func (s *subscriptionStep) Converges() {}
func (s *subscriptionStep) Needs() []string {
	if s.spec.Replication.InitialCopy.Method == "snapshot" {
		// pgshift copies the rows itself; the subscription only streams.
		return []string{stepid.Schema, stepid.Slot, stepid.Copy}
	}
	return []string{stepid.Schema, stepid.Slot}
}

// copyData: the subscription copies the rows itself unless target.copy did
// (snapshot method).
func (s *subscriptionStep) copyData() bool {
	return s.spec.Replication.InitialCopy.Method != "snapshot"
}

// createSQL builds CREATE SUBSCRIPTION; conninfo is either the real
// one (to run) or the redacted one (to show).
func (s *subscriptionStep) createSQL(conninfo string, options []string) string {
	with := []string{
		fmt.Sprintf("copy_data = %t", s.copyData()),
		"create_slot = false",
		"slot_name = " + pg.QuoteLiteral(s.spec.SlotName()),
	}
	with = append(with, options...)
	return fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (%s)",
		pg.QuoteIdent(s.spec.SubscriptionName()), pg.QuoteLiteral(conninfo), pg.QuoteIdent(s.spec.PublicationName()), strings.Join(with, ", "))
}

// conninfos returns blue's connection string as green will use it: the
// real one and the one fit for plans and logs.
func (s *subscriptionStep) conninfos(env *engine.Env) (full, redacted string, err error) {
	dsn, field, err := env.Source.PeerDSN()
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", field, err)
	}
	full, redacted, err = pg.SubscriptionConninfo(dsn, env.Source.Password())
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", field, err)
	}
	return full, redacted, nil
}

// missingTables lists the published tables green lacks (CREATE SUBSCRIPTION
// would fail on the first one).
func missingTables(ctx context.Context, green pg.Querier, tables []pg.Table) ([]string, error) {
	var missing []string
	for _, t := range tables {
		var ok bool
		if err := green.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.Ident()).Scan(&ok); err != nil {
			return nil, fmt.Errorf("green: look up table %s: %w", t.QualifiedName(), err)
		}
		if !ok {
			missing = append(missing, t.QualifiedName())
		}
	}
	return missing, nil
}

func (s *subscriptionStep) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return plans.Change{}, err
	}
	name := s.spec.SubscriptionName()
	st, err := pg.ReadSubscription(ctx, green, name)
	if err != nil {
		return plans.Change{}, err
	}
	major, err := pg.ServerMajor(ctx, green)
	if err != nil {
		return plans.Change{}, fmt.Errorf("green: %w", err)
	}
	options, optErr := pg.SubscriptionWithOptions(s.spec.Replication.Options, major)
	if !st.Exists {
		if optErr != nil {
			return plans.Change{Action: plans.ActionBlocker, Summary: "subscription " + name + ": unsupported option",
				Blockers: []string{optErr.Error()}}, nil
		}
		_, redacted, err := s.conninfos(env)
		if err != nil {
			return plans.Change{}, err
		}
		c := plans.Change{Action: plans.ActionCreate,
			Summary: fmt.Sprintf("CREATE SUBSCRIPTION %s ... copy_data = %t", pg.QuoteIdent(name), s.copyData()),
			Details: []string{s.createSQL(redacted, options)}}
		if w := s.binaryCopyNote(ctx, env); w != "" {
			c.Warnings = append(c.Warnings, w)
		}
		return c, nil
	}
	if p := s.conflict(st); p != "" {
		return plans.Change{Action: plans.ActionBlocker, Summary: "subscription " + name + " exists and differs",
			Blockers: []string{p}}, nil
	}
	var details []string
	if st.Slot == "" {
		details = append(details, fmt.Sprintf("ALTER SUBSCRIPTION %s SET (slot_name = %s)", pg.QuoteIdent(name), pg.QuoteLiteral(s.spec.SlotName())))
	}
	if !st.Enabled || st.Slot == "" {
		details = append(details, fmt.Sprintf("ALTER SUBSCRIPTION %s ENABLE", pg.QuoteIdent(name)))
	}
	states, err := pg.ReadRelStates(ctx, green, name)
	if err != nil {
		return plans.Change{}, err
	}
	if add, drop, err := s.unsubscribedTables(ctx, env, states); err == nil && len(add)+len(drop) > 0 {
		filled, err := rejoiningWithRows(ctx, green, add)
		if err != nil {
			return plans.Change{}, err
		}
		if len(filled) > 0 {
			return plans.Change{Action: plans.ActionBlocker,
				Summary:  fmt.Sprintf("subscription %s: %s would be copied again onto rows green still holds", name, words.Count(len(filled), "table")),
				Blockers: filled}, nil
		}
		for _, t := range add {
			details = append(details, "+ table "+t)
		}
		for _, t := range drop {
			details = append(details, "- table "+t+" (green keeps the table and its rows)")
		}
		details = append(details, fmt.Sprintf("ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = true)", pg.QuoteIdent(name)))
	}
	if len(details) > 0 {
		return plans.Change{Action: plans.ActionChange, Summary: "subscription " + name + ": catch up with the spec", Details: details}, nil
	}
	return plans.Change{Action: plans.ActionNone,
		Summary: fmt.Sprintf("subscription %s, %d/%d tables ready", name, pg.CountReady(states), len(states))}, nil
}

// conflict says why an existing subscription of that name is not ours.
func (s *subscriptionStep) conflict(st pg.Subscription) string {
	name, slot, pub := s.spec.SubscriptionName(), s.spec.SlotName(), s.spec.PublicationName()
	// slot_name = NONE: a rollback stopped between detaching and dropping;
	// Apply attaches it again.
	if st.Slot != slot && st.Slot != "" {
		return fmt.Sprintf("subscription %q on green uses slot %q, not %q: drop it (ALTER SUBSCRIPTION ... DISABLE; DROP SUBSCRIPTION ...) or set replication.subscription to another name",
			name, st.Slot, slot)
	}
	if len(st.Publications) != 1 || st.Publications[0] != pub {
		return fmt.Sprintf("subscription %q on green subscribes to %s, not %q: drop it or set replication.subscription to another name",
			name, strings.Join(st.Publications, ", "), pub)
	}
	return ""
}

// unsubscribedTables lists tables blue's publication carries that green's
// subscription does not track yet, and tables it tracks that the
// publication no longer carries (the publication changed after the
// subscription was made).
func (s *subscriptionStep) unsubscribedTables(ctx context.Context, env *engine.Env, states []pg.RelState) (add, drop []string, err error) {
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return nil, nil, err
	}
	st, err := pg.ReadPublication(ctx, blue, s.spec.PublicationName(), s.spec.Name)
	if err != nil || !st.Exists {
		return nil, nil, err
	}
	have := make([]string, len(states))
	for i, r := range states {
		have[i] = r.Table
	}
	add, drop = pg.DiffTables(have, st.Tables)
	return add, drop, nil
}

// rejoiningWithRows names, with the fix, each table of add (tables about
// to join the subscription) that green already holds rows of: REFRESH
// PUBLICATION ... copy_data = true copies every row of blue's on top of
// them, which doubles the rows of a table without a key and leaves the
// table-sync worker failing on the key forever with one. That is a table
// that left the selection (or blue's publication) and came back, or one
// dropped and made again on blue: green kept its copy meanwhile. A new
// table is empty on green (target.schema made it) and passes.
func rejoiningWithRows(ctx context.Context, green pg.Querier, add []string) ([]string, error) {
	if len(add) == 0 {
		return nil, nil
	}
	tables, err := pg.ResolveTables(ctx, green, add)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	filled, err := pg.TablesWithRows(ctx, green, tables)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	var out []string
	for _, f := range filled {
		out = append(out, fmt.Sprintf("green's %s already holds %s from before it left the replication, and joining the subscription copies all of blue's rows on top of them: TRUNCATE it on green (TRUNCATE %s;), then apply; blue's rows, those written since included, are copied again",
			f.DisplayName(), f.RowsText(), f.DisplayName()))
	}
	return out, nil
}

// binaryCopyNote explains, when the spec asks for binary, that the initial
// copy itself stays in text unless both sides run 16 or later.
func (s *subscriptionStep) binaryCopyNote(ctx context.Context, env *engine.Env) string {
	if !pg.IsTrue(s.spec.Replication.Options["binary"]) {
		return ""
	}
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return ""
	}
	major, err := pg.ServerMajor(ctx, blue)
	if err != nil || major >= 16 {
		return ""
	}
	return fmt.Sprintf("binary = true: changes travel in binary, but the initial copy stays in text because blue runs PostgreSQL %d (binary copy needs 16 or later on both sides)", major)
}

func (s *subscriptionStep) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return []plans.Precondition{{Name: "green reachable", OK: false, Detail: err.Error()}}, nil
	}
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return []plans.Precondition{{Name: "blue reachable", OK: false, Detail: err.Error()}}, nil
	}
	var pre []plans.Precondition
	major, err := pg.ServerMajor(ctx, green)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	_, optErr := pg.SubscriptionWithOptions(s.spec.Replication.Options, major)
	p := plans.Precondition{Name: "subscription options supported by green", OK: optErr == nil,
		Detail: fmt.Sprintf("green runs PostgreSQL %d", major)}
	if optErr != nil {
		p.Detail = optErr.Error()
	}
	pre = append(pre, p)
	rights, err := pg.CheckSubscriptionRights(ctx, green)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	peer, _, _ := env.Source.PeerDSN()
	name, ok, detail := pg.SubscriptionPrecondition(rights, "green", "blue", "source.password_env",
		env.Source.Password() != "" || pg.ConninfoHasPassword(peer))
	pre = append(pre, plans.Precondition{Name: name, OK: ok, Detail: detail})
	slot, err := pg.ReadSlot(ctx, blue, s.spec.SlotName())
	if err != nil {
		return nil, err
	}
	pre = append(pre, plans.Precondition{Name: "slot exists on blue", OK: slot.Exists,
		Detail: fmt.Sprintf("slot %q (created by %s)", s.spec.SlotName(), stepid.Slot)})
	tables, err := pg.SelectedTables(ctx, blue, s.spec.Tables.Include, s.spec.Tables.Exclude)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	missing, err := missingTables(ctx, green, tables)
	if err != nil {
		return nil, err
	}
	tp := plans.Precondition{Name: "published tables exist on green", OK: len(missing) == 0,
		Detail: words.Count(len(tables), "table")}
	if len(missing) > 0 {
		tp.Detail = "missing on green: " + strings.Join(missing, ", ") + " (target.schema creates them; with schema.copy false create them yourself)"
	}
	pre = append(pre, tp)
	// Tables joining an existing subscription are copied whole: green's
	// copies of them must be empty.
	sub, err := pg.ReadSubscription(ctx, green, s.spec.SubscriptionName())
	if err != nil {
		return nil, err
	}
	if !sub.Exists && s.copyData() {
		// preflight.target checks this before the first copy; a
		// subscription rolled back on its own (rollback --step) is created
		// again long after it, onto tables that kept their rows.
		gone := map[string]bool{}
		for _, m := range missing {
			gone[m] = true
		}
		var present []pg.Table
		for _, t := range tables {
			if !gone[t.QualifiedName()] {
				present = append(present, t)
			}
		}
		filled, err := pg.TablesWithRows(ctx, green, present)
		if err != nil {
			return nil, fmt.Errorf("green: %w", err)
		}
		ep := plans.Precondition{Name: "green tables empty before the initial copy", OK: len(filled) == 0,
			Detail: words.Count(len(present), "table") + " empty"}
		if len(filled) > 0 {
			var msgs []string
			for _, f := range filled {
				msgs = append(msgs, fmt.Sprintf("green's %s already holds %s, and the initial copy adds all of blue's rows on top of them: TRUNCATE it on green (TRUNCATE %s;), then apply, or exclude it in tables.exclude",
					f.DisplayName(), f.RowsText(), f.DisplayName()))
			}
			ep.Detail = strings.Join(msgs, "; ")
		}
		pre = append(pre, ep)
	}
	if sub.Exists && s.conflict(sub) == "" {
		states, err := pg.ReadRelStates(ctx, green, s.spec.SubscriptionName())
		if err != nil {
			return nil, err
		}
		add, _, err := s.unsubscribedTables(ctx, env, states)
		if err != nil {
			return nil, err
		}
		filled, err := rejoiningWithRows(ctx, green, add)
		if err != nil {
			return nil, err
		}
		if len(add) > 0 {
			rp := plans.Precondition{Name: "tables joining the subscription are empty on green", OK: len(filled) == 0,
				Detail: fmt.Sprintf("%s to copy: %s", words.Count(len(add), "table"), words.List(add))}
			if len(filled) > 0 {
				rp.Detail = strings.Join(filled, "; ")
			}
			pre = append(pre, rp)
		}
	}
	return pre, nil
}

func (s *subscriptionStep) Apply(ctx context.Context, env *engine.Env) error {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	name := s.spec.SubscriptionName()
	major, err := pg.ServerMajor(ctx, green)
	if err != nil {
		return fmt.Errorf("green: %w", err)
	}
	options, err := pg.SubscriptionWithOptions(s.spec.Replication.Options, major)
	if err != nil {
		return err
	}
	st, err := pg.ReadSubscription(ctx, green, name)
	if err != nil {
		return err
	}
	slot, err := pg.ReadSlot(ctx, blue, s.spec.SlotName())
	if err != nil {
		return err
	}
	if !slot.Exists {
		return fmt.Errorf("replication slot %q does not exist on blue: apply %s first (pgshift apply runs it before this step)", s.spec.SlotName(), stepid.Slot)
	}
	if !st.Exists {
		if slot.Active {
			return fmt.Errorf("replication slot %q on blue is already in use by %s, so green's subscription could not stream from it: stop that consumer or set replication.slot to another name",
				s.spec.SlotName(), pg.SlotHolder(ctx, blue, slot.ActivePID))
		}
		tables, err := pg.SelectedTables(ctx, blue, s.spec.Tables.Include, s.spec.Tables.Exclude)
		if err != nil {
			return fmt.Errorf("blue: %w", err)
		}
		if missing, err := missingTables(ctx, green, tables); err != nil {
			return err
		} else if len(missing) > 0 {
			return fmt.Errorf("subscription %q: tables missing on green: %s: apply target.schema first, or create them on green", name, strings.Join(missing, ", "))
		}
		full, redacted, err := s.conninfos(env)
		if err != nil {
			return err
		}
		env.Log.Info("creating subscription on green", "sql", s.createSQL(redacted, options))
		// A single statement outside any transaction block (pgx sends
		// argument-less Exec through the simple protocol).
		if _, err := green.Exec(ctx, s.createSQL(full, options)); err != nil {
			return fmt.Errorf("create subscription %q on green: %s", name, pg.RedactConninfoErr(err.Error(), full, env.Source.Password()))
		}
		st, err = pg.ReadSubscription(ctx, green, name)
		if err != nil {
			return err
		}
	} else {
		if p := s.conflict(st); p != "" {
			return errors.New(p)
		}
		// What REFRESH PUBLICATION will do is settled before anything
		// changes: a table green would get twice refuses the whole of it.
		states, err := pg.ReadRelStates(ctx, green, name)
		if err != nil {
			return err
		}
		add, drop, err := s.unsubscribedTables(ctx, env, states)
		if err != nil {
			return err
		}
		filled, err := rejoiningWithRows(ctx, green, add)
		if err != nil {
			return err
		}
		if len(filled) > 0 {
			return fmt.Errorf("subscription %q on green not refreshed (nothing changed): %s", name, strings.Join(filled, "; "))
		}
		if st.Slot == "" {
			if _, err := green.Exec(ctx, fmt.Sprintf("ALTER SUBSCRIPTION %s SET (slot_name = %s)", pg.QuoteIdent(name), pg.QuoteLiteral(s.spec.SlotName()))); err != nil {
				return fmt.Errorf("attach subscription %q on green to slot %q: %w", name, s.spec.SlotName(), err)
			}
		}
		if !st.Enabled || st.Slot == "" {
			if _, err := green.Exec(ctx, fmt.Sprintf("ALTER SUBSCRIPTION %s ENABLE", pg.QuoteIdent(name))); err != nil {
				return fmt.Errorf("enable subscription %q on green: %w", name, err)
			}
		}
		if len(add)+len(drop) > 0 {
			env.Log.Info("refreshing the subscription: the publication's tables changed", "added", strings.Join(add, ", "), "removed", strings.Join(drop, ", "))
			if _, err := green.Exec(ctx, fmt.Sprintf("ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = true)", pg.QuoteIdent(name))); err != nil {
				return fmt.Errorf("refresh subscription %q on green: %w", name, err)
			}
		}
	}
	env.Record("oid", fmt.Sprint(st.OID))
	return nil
}

func (s *subscriptionStep) Rollback(ctx context.Context, env *engine.Env) error {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	return pg.DropSubscription(ctx, env.Log, green, blue, s.spec.SubscriptionName())
}

// Report lists, for `pgshift status`, the subscription and every table with
// its sync state (pg_subscription_rel.srsubstate).
func (s *subscriptionStep) Report(ctx context.Context, env *engine.Env) ([]string, error) {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return nil, err
	}
	name := s.spec.SubscriptionName()
	st, err := pg.ReadSubscription(ctx, green, name)
	if err != nil {
		return nil, err
	}
	if !st.Exists {
		return []string{"subscription " + name + " does not exist on green"}, nil
	}
	states, err := pg.ReadRelStates(ctx, green, name)
	if err != nil {
		return nil, err
	}
	state := "enabled"
	if !st.Enabled {
		state = "DISABLED"
	}
	out := []string{fmt.Sprintf("subscription %s %s, %d/%d tables ready", name, state, pg.CountReady(states), len(states))}
	for _, r := range states {
		out = append(out, fmt.Sprintf("  %-40s %s", r.Table, pg.DescribeSyncState(r.State)))
	}
	return out, nil
}

func (s *subscriptionStep) Describe() plans.Change {
	dsn, field, err := engine.NewDatabase("blue", s.spec.Source).PeerDSN()
	var redacted string
	if err == nil {
		_, redacted, err = pg.SubscriptionConninfo(dsn, "")
	}
	if err != nil {
		return plans.Change{Action: plans.ActionBlocker, Summary: field + " cannot be turned into a conninfo", Blockers: []string{err.Error()}}
	}
	if s.spec.Source.PasswordEnv != "" && !strings.Contains(redacted, " password=") {
		redacted += " password=********"
	}
	var opts []string
	for k, v := range s.spec.Replication.Options {
		opts = append(opts, k+" = "+pg.QuoteLiteral(v))
	}
	sort.Strings(opts)
	return plans.Change{Action: plans.ActionCreate,
		Summary: fmt.Sprintf("CREATE SUBSCRIPTION %s ... copy_data = %t", pg.QuoteIdent(s.spec.SubscriptionName()), s.copyData()),
		Details: []string{s.createSQL(redacted, opts)}}
}

func (s *subscriptionStep) DescribeRollback() string {
	q := pg.QuoteIdent(s.spec.SubscriptionName())
	return fmt.Sprintf("ALTER SUBSCRIPTION %s DISABLE; ALTER SUBSCRIPTION %s SET (slot_name = NONE); DROP SUBSCRIPTION %s on green", q, q, q)
}

// Fingerprint leaves the moving count of ready tables out.
func (s *subscriptionStep) Fingerprint(c plans.Change) string {
	return string(c.Action) + "\n" + strings.Join(c.Details, "\n") + "\n" + strings.Join(c.Blockers, "\n")
}

// libpqTarget is how pg_dump and psql reach a side: a conninfo with libpq's
// keywords only (pgx's pool settings would make them refuse the DSN) and
// no password, which travels in PGPASSWORD instead, out of argv where any
// user on the host could read it with ps.
func libpqTarget(db *engine.Database) (conninfo string, environ []string, err error) {
	kv, err := pg.ParseConninfo(db.DSN)
	if err != nil {
		field := "source.dsn"
		if db.Role == "green" {
			field = "target.dsn"
		}
		return "", nil, fmt.Errorf("%s: %w", field, err)
	}
	password := db.Password()
	if password == "" {
		password = kv["password"]
	}
	delete(kv, "password")
	environ = os.Environ()
	if password != "" {
		environ = append(environ, "PGPASSWORD="+password)
	}
	return pg.FormatConninfo(kv), environ, nil
}
