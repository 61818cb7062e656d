package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/steps/stepid"
)

// Schema drift: once green holds the schema, DDL that blue runs during the
// weeks of a sync makes the two differ. Additive changes (a new table,
// column or index, a default, NOT NULL) are reconciled on green by apply;
// blue's rows that need them wait in the slot meanwhile (green's apply
// worker stops on "missing replicated column" and retries), so nothing is
// lost. Changes that rewrite or drop (a type, a dropped column, index or
// constraint) are named with the SQL to run and where.

// observeDrift is target.schema's plan line once the schema is in place.
func (s schemaStep) observeDrift(env *engine.Env, st *schemaState) plans.Change {
	additive, other := pg.AdditiveDrift(st.drift)
	c := plans.Change{Action: plans.ActionNone,
		Summary: fmt.Sprintf("green holds all %s", words.Plural(len(st.selected), "selected table", "selected tables"))}
	if len(st.drift) > 0 {
		c.Summary += fmt.Sprintf(", %s from blue", words.Plural(len(st.drift), "schema difference", "schema differences"))
	}
	for _, d := range other {
		c.Warnings = append(c.Warnings, d.String()+": "+d.Fix)
	}
	if len(additive) == 0 {
		return c
	}
	if !env.Spec.Schema.Copy {
		for _, d := range additive {
			c.Warnings = append(c.Warnings, d.String()+": schema.copy is false, so run on green yourself: "+driftSQL(d, env))
		}
		return c
	}
	if missing := missingTablesOf(additive); len(missing) > 0 && st.toolErr != nil {
		c.Action = plans.ActionBlocker
		c.Blockers = append(c.Blockers, "green lacks "+words.List(missing)+" and cannot copy their definition: "+st.toolErr.Error())
		return c
	}
	c.Action = plans.ActionChange
	c.Summary = fmt.Sprintf("bring green's schema in line with blue: %s", words.Plural(len(additive), "change", "changes"))
	for _, d := range additive {
		c.Details = append(c.Details, "+ "+d.String(), "  "+driftSQL(d, env))
	}
	return c
}

// driftSQL is what reconciles d on green, as the plan shows it.
func driftSQL(d pg.DriftItem, env *engine.Env) string {
	if d.Kind == pg.DriftTableMissing {
		return fmt.Sprintf("pg_dump --schema-only --table %s %s | psql %s", d.Table.Ident(), env.Source.Redacted(), env.Target.Redacted())
	}
	return d.SQL
}

func missingTablesOf(items []pg.DriftItem) []string {
	var out []string
	for _, d := range items {
		if d.Kind == pg.DriftTableMissing {
			out = append(out, d.Table.DisplayName())
		}
	}
	return out
}

// checkDrift is the precondition of reconciling: new tables need pg_dump.
func (s schemaStep) checkDrift(env *engine.Env, st *schemaState) []plans.Precondition {
	additive, _ := pg.AdditiveDrift(st.drift)
	pre := []plans.Precondition{{Name: "green schema", OK: true,
		Detail: fmt.Sprintf("all selected tables present, %s to reconcile", words.Plural(len(additive), "additive change", "additive changes"))}}
	if missing := missingTablesOf(additive); len(missing) > 0 && env.Spec.Schema.Copy {
		p := plans.Precondition{Name: "pg_dump at least blue's version", OK: st.toolErr == nil, Detail: "to copy the definition of " + words.List(missing)}
		if st.toolErr != nil {
			p.Detail = st.toolErr.Error()
		}
		pre = append(pre, p)
	}
	return passingOnly(pre)
}

// applyDrift reconciles the additive drift on green: new tables first
// (their definition dumped from blue, restored in one transaction and
// added to the restore's marker, so rollback drops them too), then each
// statement on its own (CREATE INDEX CONCURRENTLY runs outside a
// transaction; every statement is idempotent or checked by the next
// comparison, so a crash between two is taken up by the next apply).
func (s schemaStep) applyDrift(ctx context.Context, env *engine.Env, st *schemaState) error {
	additive, other := pg.AdditiveDrift(st.drift)
	for _, d := range other {
		env.Log.Warn("schema drift pgshift does not reconcile", "drift", d.String(), "fix", d.Fix)
	}
	if len(additive) > 0 && !env.Spec.Schema.Copy {
		for _, d := range additive {
			env.Log.Warn("schema drift: schema.copy is false, so pgshift leaves green's schema alone", "drift", d.String(), "run_on_green", driftSQL(d, env))
		}
		return nil
	}
	if missing := missingTablesOf(additive); len(missing) > 0 {
		if err := s.restoreTables(ctx, env, st, additive); err != nil {
			return err
		}
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	for _, d := range additive {
		if d.Kind == pg.DriftTableMissing {
			continue
		}
		env.Log.Info("reconciling green's schema with blue", "drift", d.String(), "sql", d.SQL)
		if _, err := green.Exec(ctx, d.SQL); err != nil {
			return fmt.Errorf("%s: %s on green: %s: %w", stepid.Schema, d.String(), d.SQL, err)
		}
	}
	env.Record("tables", strconv.Itoa(len(st.selected)))
	return nil
}

// restoreTables copies the definitions of the tables green lacks (with
// their partitions, indexes, constraints and owned sequences) from blue.
func (s schemaStep) restoreTables(ctx context.Context, env *engine.Env, st *schemaState, additive []pg.DriftItem) error {
	if st.toolErr != nil {
		return fmt.Errorf("%s: green lacks %s: %w", stepid.Schema, words.List(missingTablesOf(additive)), st.toolErr)
	}
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, d := range additive {
		if d.Kind != pg.DriftTableMissing {
			continue
		}
		names = append(names, d.Table.Ident())
		// pg_dump --table takes the table alone; partitions are tables of
		// their own.
		rows, err := blue.Query(ctx, `SELECT n.nspname, c.relname
  FROM pg_partition_tree($1::regclass) p
  JOIN pg_class c ON c.oid = p.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.level > 0`, d.Table.Ident())
		if err != nil {
			return fmt.Errorf("%s: blue: list partitions of %s: %w", stepid.Schema, d.Table.DisplayName(), err)
		}
		parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var schema, name string
			err := r.Scan(&schema, &name)
			return pgx.Identifier{schema, name}.Sanitize(), err
		})
		if err != nil {
			return fmt.Errorf("%s: blue: list partitions of %s: %w", stepid.Schema, d.Table.DisplayName(), err)
		}
		names = append(names, parts...)
	}
	dir, err := os.MkdirTemp("", "pgshift-schema-")
	if err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	defer os.RemoveAll(dir)
	dump := filepath.Join(dir, "tables.sql")
	env.Log.Info("copying the definition of tables created on blue", "tables", words.List(missingTablesOf(additive)))
	if err := runPgDump(ctx, env, st.pgDump, dump, nil, names...); err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	prelude, epilogue := filepath.Join(dir, "before.sql"), filepath.Join(dir, "after.sql")
	if err := os.WriteFile(prelude, []byte(restorePrelude), 0o600); err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	if err := os.WriteFile(epilogue, []byte(restoreEpilogue(env.Spec.Name)), 0o600); err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	if err := runPsql(ctx, env, st.psql, prelude, dump, epilogue); err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	return nil
}

// Report, for `pgshift status`: how blue's and green's replicated tables
// differ now, each difference with what reconciles it.
func (s schemaStep) Report(ctx context.Context, env *engine.Env) ([]string, error) {
	blue, green, err := env.Pools(ctx)
	if err != nil {
		return nil, err
	}
	tables, err := pg.SelectedTables(ctx, blue, env.Spec.Tables.Include, env.Spec.Tables.Exclude)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	drift, err := pg.CompareSchemas(ctx, blue, green, tables)
	if err != nil {
		return nil, err
	}
	if len(drift) == 0 {
		return []string{fmt.Sprintf("schema: the %s are alike on blue and green", words.Plural(len(tables), "replicated table", "replicated tables"))}, nil
	}
	out := []string{fmt.Sprintf("schema: %s between blue and green", words.Plural(len(drift), "difference", "differences"))}
	for _, d := range drift {
		fix := d.Fix
		if d.Additive {
			fix = "pgshift apply reconciles it"
		}
		out = append(out, "  "+d.String()+": "+fix)
	}
	return out, nil
}
