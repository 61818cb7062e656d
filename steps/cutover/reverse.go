package cutover

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/spec"
)

// Reverse replication carries green's writes back to blue after the
// cutover, so that a rollback loses nothing: a publication on green (the
// same tables), a logical slot on green, and a subscription on blue with
// copy_data = false. All three are named spec.ReverseName().
//
// Where it starts matters. A slot decodes everything after the point it
// is created at. Created before the freeze, it would also carry the rows
// the forward subscription applies on green, and blue would receive its
// own changes back (an echo loop; blue is the older major, usually before
// 16, so its subscription cannot ask for origin = none). So the slot is
// created inside the freeze, after the forward subscription has been
// drained and its worker has exited: from then on every change on green is
// an application's, and the slot starts exactly where the first of them
// will be. The publication and the (disabled) subscription do nothing by
// themselves and are made before the freeze, to keep it short.

// EnsureReversePublication creates (or aligns) the publication on green
// with the tables the forward publication carries.
func EnsureReversePublication(ctx context.Context, env *engine.Env, blue, green *pgxpool.Pool) error {
	spec := env.Spec
	tables, err := pg.SelectedTables(ctx, blue, spec.Tables.Include, spec.Tables.Exclude)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	if len(tables) == 0 {
		return errors.New("no table selected on blue: nothing to replicate back")
	}
	p := pg.PublicationPlan{Name: spec.ReverseName(), Tables: tables}
	for _, t := range tables {
		if t.Partitioned {
			p.Partitioned = true
		}
	}
	st, err := pg.ReadPublication(ctx, green, p.Name, spec.Name)
	if err != nil {
		return fmt.Errorf("green: %w", err)
	}
	switch {
	case !st.Exists:
		err := pgx.BeginFunc(ctx, green, func(tx pgx.Tx) error {
			for _, q := range p.CreateMarkedSQL(spec.Name) {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("green: create publication %q: %w", p.Name, err)
		}
		env.Log.Info("reverse publication created on green", "publication", p.Name, "tables", len(tables))
	case !st.Ours:
		return fmt.Errorf("publication %q on green was not made by pgshift for %s: drop it or rename the spec", p.Name, spec.Name)
	case len(p.Mismatch(st)) > 0:
		for _, stmt := range p.AlterSQL() {
			if _, err := green.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("green: %s: %w", stmt, err)
			}
		}
	}
	return nil
}

// reverseSubscriptionSQL is CREATE SUBSCRIPTION on blue, disabled, on the
// slot the freeze creates, with the replication.options blue's major
// accepts (see pg.ReverseSubscriptionOptions).
func reverseSubscriptionSQL(spec *spec.Spec, conninfo string, options []string) string {
	name := spec.ReverseName()
	with := append([]string{"enabled = false", "create_slot = false", "slot_name = " + pg.QuoteLiteral(name), "copy_data = false"}, options...)
	return fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (%s)",
		pg.QuoteIdent(name), pg.QuoteLiteral(conninfo), pg.QuoteIdent(name), strings.Join(with, ", "))
}

// EnsureReverseSubscription creates the disabled subscription on blue. It
// connects to green once, to list the publication's tables.
func EnsureReverseSubscription(ctx context.Context, env *engine.Env, blue *pgxpool.Pool) error {
	name := env.Spec.ReverseName()
	st, err := pg.ReadSubscription(ctx, blue, name)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	if st.Exists {
		if st.Slot != name || len(st.Publications) != 1 || st.Publications[0] != name {
			return fmt.Errorf("subscription %q on blue is not pgshift's reverse subscription (slot %q, publications %v): drop it", name, st.Slot, st.Publications)
		}
		if st.Enabled {
			return fmt.Errorf("subscription %q on blue is enabled before the cutover: a previous run left it; run pgshift rollback --step cutover, or disable and drop it", name)
		}
		return nil
	}
	dsn, field, err := env.Target.PeerDSN()
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	full, redacted, err := pg.SubscriptionConninfo(dsn, env.Target.Password())
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	version, err := pg.ServerVersionOf(ctx, blue)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	options, skipped, err := pg.ReverseSubscriptionOptions(env.Spec.Replication.Options, version.Major)
	if err != nil {
		return err
	}
	for _, note := range skipped {
		env.Log.Info("replication.options."+note, "subscription", name)
	}
	env.Log.Info("creating reverse subscription on blue (disabled until the switch)", "sql", reverseSubscriptionSQL(env.Spec, redacted, options))
	if _, err := blue.Exec(ctx, reverseSubscriptionSQL(env.Spec, full, options)); err != nil {
		return fmt.Errorf("blue: create subscription %q: %s", name, pg.RedactConninfoErr(err.Error(), full, env.Target.Password()))
	}
	return nil
}

// createReverseSlot creates green's slot; called inside the freeze, once
// the forward subscription's worker has exited.
func createReverseSlot(ctx context.Context, green *pgxpool.Pool, name string) (string, error) {
	var lsn string
	if err := green.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", name).Scan(&lsn); err != nil {
		return "", fmt.Errorf("green: create replication slot %q: %w", name, err)
	}
	return lsn, nil
}

// DropReverse removes the reverse objects, each where it lives; a side
// that is unreachable (nil) keeps its objects and is named in the error.
func DropReverse(ctx context.Context, env *engine.Env, blue, green *pgxpool.Pool) error {
	name := env.Spec.ReverseName()
	var errs []error
	if blue != nil {
		var pub pg.Querier
		if green != nil {
			pub = green
		}
		if err := pg.DropSubscription(ctx, env.Log, blue, pub, name); err != nil {
			errs = append(errs, fmt.Errorf("reverse subscription on blue: %w", err))
		}
	} else {
		errs = append(errs, fmt.Errorf("blue unreachable: drop subscription %s there by hand", pg.QuoteIdent(name)))
	}
	if green == nil {
		errs = append(errs, fmt.Errorf("green unreachable: drop replication slot %s and publication %s there (pgshift rollback or cleanup does it once green answers)", pg.QuoteLiteral(name), pg.QuoteIdent(name)))
		return errors.Join(errs...)
	}
	if err := pg.DropSlot(ctx, env.Log, green, name, pg.SlotReleaseWait); err != nil {
		errs = append(errs, fmt.Errorf("green: %w", err))
	}
	st, err := pg.ReadPublication(ctx, green, name, env.Spec.Name)
	if err != nil {
		errs = append(errs, fmt.Errorf("green: %w", err))
	} else if st.Exists && st.Ours {
		if _, err := green.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pg.QuoteIdent(name)); err != nil {
			errs = append(errs, fmt.Errorf("green: drop publication %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
