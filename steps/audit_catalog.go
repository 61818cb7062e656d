package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
)

// The catalog checks: the classes of pg_upgrade --check that matter to a
// logical copy, a schema dump of blue restored into green, then rows copied
// as text. Each applies to the major pairs where the restore (or the copy)
// would fail or change meaning, and says the fix for that pair.

// userObject keeps objects that users made: not built in (oids below 16384
// come with initdb) and not a member of an extension (green's CREATE
// EXTENSION makes its own). %[1]s is the catalog, %[2]s the object's oid.
const userObject = `%[2]s >= 16384 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
  WHERE d.classid = '%[1]s'::regclass AND d.objid = %[2]s AND d.deptype = 'e')`

// oldPolymorphics are the built-in functions whose anyarray/anyelement
// arguments became anycompatiblearray/anycompatible in PostgreSQL 14
// (pg_upgrade's check_for_incompatible_polymorphics). User objects naming
// them by their old signature do not restore on 14 or later.
var oldPolymorphics = []string{
	"array_append(anyarray,anyelement)", "array_cat(anyarray,anyarray)", "array_prepend(anyelement,anyarray)",
	"array_remove(anyarray,anyelement)", "array_replace(anyarray,anyelement,anyelement)",
	"array_position(anyarray,anyelement)", "array_position(anyarray,anyelement,integer)",
	"array_positions(anyarray,anyelement)", "width_bucket(anyelement,anyarray)",
}

// regTypes are the reg* types: stored as OIDs, written and read as names.
var regTypes = []string{"regclass", "regcollation", "regconfig", "regdictionary", "regnamespace", "regoper",
	"regoperator", "regproc", "regprocedure", "regrole", "regtype"}

// removedTypes left PostgreSQL in 12.
var removedTypes = []string{"abstime", "reltime", "tinterval"}

func auditCatalog(ctx context.Context, f *findings, blue *pgxpool.Pool, pair majorPair) error {
	if pair.crosses(14) {
		if err := auditPostfixOperators(ctx, f, blue, pair); err != nil {
			return err
		}
		if err := auditPolymorphics(ctx, f, blue, pair); err != nil {
			return err
		}
		if err := auditConversions(ctx, f, blue, pair); err != nil {
			return err
		}
	}
	if pair.crosses(12) {
		if err := auditRemovedTypes(ctx, f, blue, pair); err != nil {
			return err
		}
		if err := auditTablesWithOids(ctx, f, blue, pair); err != nil {
			return err
		}
	}
	if pair.crosses(18) {
		if err := auditNotNullInheritance(ctx, f, blue, pair); err != nil {
			return err
		}
	}
	if err := auditSystemComposites(ctx, f, blue); err != nil {
		return err
	}
	return auditRegColumns(ctx, f, blue)
}

// strings1 reads a one-column text result.
func strings1(ctx context.Context, db pg.Querier, what, sql string, args ...any) ([]string, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// auditPostfixOperators: PostgreSQL 14 removed postfix operators (an
// operator with a left argument only); CREATE OPERATOR without RIGHTARG
// fails there, and with it the schema restore.
func auditPostfixOperators(ctx context.Context, f *findings, blue pg.Querier, pair majorPair) error {
	ops, err := strings1(ctx, blue, "read postfix operators", `
SELECT format('%s.%s (%s, NONE): DROP OPERATOR %s.%s (%s, NONE);',
              quote_ident(n.nspname), o.oprname, format_type(o.oprleft, NULL),
              quote_ident(n.nspname), o.oprname, format_type(o.oprleft, NULL))
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
 WHERE o.oprright = 0 AND o.oprkind = 'r' AND `+fmt.Sprintf(userObject, "pg_catalog.pg_operator", "o.oid")+`
 ORDER BY 1`)
	if err != nil {
		return err
	}
	f.check("no postfix operators", len(ops) == 0, "none",
		fmt.Sprintf("blue has %s, which PostgreSQL 14 removed (green is %d): the schema restore would fail on CREATE OPERATOR. Before the upgrade, drop %s on blue and replace %s with a prefix operator (CREATE OPERATOR ... (RIGHTARG = type, FUNCTION = ...)) or a function call in the queries that use %s:%s",
			words.Plural(len(ops), "postfix operator", "postfix operators"), pair.green,
			words.Pick(len(ops), "it", "each"), words.Pick(len(ops), "it", "them"), words.Pick(len(ops), "it", "them"), objects(ops)))
	return nil
}

// auditPolymorphics: user aggregates and operators built on the array
// functions whose arguments PostgreSQL 14 changed to anycompatible; green's
// restore looks them up by the old signature, which no longer exists.
func auditPolymorphics(ctx context.Context, f *findings, blue pg.Querier, pair majorPair) error {
	objs, err := strings1(ctx, blue, "read objects using the old polymorphic array functions", `
WITH old AS (SELECT to_regprocedure(s)::oid AS fn FROM unnest($1::text[]) AS s)
SELECT format('aggregate %s.%s(%s) (%s = %s)', quote_ident(n.nspname), quote_ident(p.proname),
              pg_get_function_identity_arguments(p.oid),
              CASE WHEN a.aggtransfn::oid IN (SELECT fn FROM old) THEN 'SFUNC' ELSE 'FINALFUNC' END,
              CASE WHEN a.aggtransfn::oid IN (SELECT fn FROM old) THEN a.aggtransfn ELSE a.aggfinalfn END::regproc)
  FROM pg_catalog.pg_aggregate a
  JOIN pg_catalog.pg_proc p ON p.oid = a.aggfnoid
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE (a.aggtransfn::oid IN (SELECT fn FROM old) OR a.aggfinalfn::oid IN (SELECT fn FROM old))
   AND a.aggtranstype IN ('pg_catalog.anyarray'::regtype, 'pg_catalog.anyelement'::regtype)
   AND `+fmt.Sprintf(userObject, "pg_catalog.pg_proc", "p.oid")+`
UNION ALL
SELECT format('operator %s.%s (%s, %s) (FUNCTION = %s)', quote_ident(n.nspname), o.oprname,
              format_type(o.oprleft, NULL), format_type(o.oprright, NULL), o.oprcode)
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
 WHERE o.oprcode::oid IN (SELECT fn FROM old)
   AND o.oprleft IN ('pg_catalog.anyarray'::regtype, 'pg_catalog.anyelement'::regtype)
   AND `+fmt.Sprintf(userObject, "pg_catalog.pg_operator", "o.oid")+`
 ORDER BY 1`, oldPolymorphics)
	if err != nil {
		return err
	}
	f.check("no objects on the old polymorphic array functions", len(objs) == 0, "none",
		fmt.Sprintf("blue has %s built on array functions whose arguments PostgreSQL 14 changed from anyarray/anyelement to anycompatiblearray/anycompatible (green is %d): the schema restore would fail on %s. As pg_upgrade --check says, drop %s on blue before the upgrade and create %s again on green afterwards with the new types (e.g. CREATE AGGREGATE name(anycompatible) (SFUNC = array_append, STYPE = anycompatiblearray)); or keep %s on blue by pointing %s at a function of your own that calls the built-in (CREATE FUNCTION my_array_append(anyarray, anyelement) RETURNS anyarray LANGUAGE sql IMMUTABLE AS 'SELECT array_append($1, $2)'), which green restores as is:%s",
			words.Plural(len(objs), "object", "objects"), pair.green, words.Pick(len(objs), "it", "them"),
			words.Pick(len(objs), "it", "them"), words.Pick(len(objs), "it", "them"), words.Pick(len(objs), "it", "them"), words.Pick(len(objs), "it", "them"), objects(objs)))
	return nil
}

// auditConversions: the parameters of encoding conversion functions changed
// in PostgreSQL 14 (they return integer and take a noError flag); a
// conversion over a function of blue's own does not restore. Conversions
// over built-in functions restore, since green has those under the new
// signature.
func auditConversions(ctx context.Context, f *findings, blue pg.Querier, pair majorPair) error {
	convs, err := strings1(ctx, blue, "read encoding conversions", `
SELECT format('%s.%s (function %s): DROP CONVERSION %s.%s;', quote_ident(n.nspname), quote_ident(c.conname), c.conproc,
              quote_ident(n.nspname), quote_ident(c.conname))
  FROM pg_catalog.pg_conversion c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace
 WHERE c.conproc::oid >= 16384 AND `+fmt.Sprintf(userObject, "pg_catalog.pg_conversion", "c.oid")+`
 ORDER BY 1`)
	if err != nil {
		return err
	}
	f.check("no encoding conversions of your own", len(convs) == 0, "none",
		fmt.Sprintf("blue has %s whose function is blue's own, and the parameters of conversion functions changed in PostgreSQL 14 (green is %d: they return integer and take a noError boolean): the schema restore would fail on CREATE CONVERSION. Drop %s on blue before the upgrade, and create %s on green afterwards with a function written for PostgreSQL 14:%s",
			words.Plural(len(convs), "encoding conversion", "encoding conversions"), pair.green,
			words.Pick(len(convs), "it", "them"), words.Pick(len(convs), "it", "them"), objects(convs)))
	return nil
}

// typeColumnsSQL lists the columns (schema.table.column and type) of user
// relations whose type is one of the base types, or a domain, array,
// composite or range over one (as pg_upgrade's check_for_data_types_usage
// walks them). %[1]s selects the base types' oids; %[2]s the relkinds.
const typeColumnsSQL = `
WITH RECURSIVE oids AS (
  %[1]s
  UNION ALL
  SELECT * FROM (
    WITH x AS (SELECT oid FROM oids)
    SELECT t.oid FROM pg_catalog.pg_type t, x WHERE t.typbasetype = x.oid AND t.typtype = 'd'
    UNION ALL
    SELECT t.oid FROM pg_catalog.pg_type t, x WHERE t.typelem = x.oid AND t.typtype = 'b'
    UNION ALL
    SELECT t.oid FROM pg_catalog.pg_type t, pg_catalog.pg_class c, pg_catalog.pg_attribute a, x
     WHERE t.typtype = 'c' AND t.oid = c.reltype AND c.oid = a.attrelid AND NOT a.attisdropped AND a.atttypid = x.oid
    UNION ALL
    SELECT t.oid FROM pg_catalog.pg_type t, pg_catalog.pg_range r, x
     WHERE t.typtype = 'r' AND r.rngtypid = t.oid AND r.rngsubtype = x.oid
  ) foo
)
SELECT format('%%s.%%s.%%s (%%s)', quote_ident(n.nspname), quote_ident(c.relname), quote_ident(a.attname),
              format_type(a.atttypid, a.atttypmod))
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
 WHERE a.atttypid IN (SELECT oid FROM oids) AND a.attnum > 0 AND NOT a.attisdropped
   AND c.relkind IN (%[2]s)
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_(temp|toast)'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1`

// catalogTypesSQL selects pg_catalog types by name ($1).
const catalogTypesSQL = `SELECT t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
   WHERE n.nspname = 'pg_catalog' AND t.typname = ANY($1::text[])`

// auditRemovedTypes: abstime, reltime and tinterval left PostgreSQL in 12;
// a table, view or type using them does not restore.
func auditRemovedTypes(ctx context.Context, f *findings, blue pg.Querier, pair majorPair) error {
	cols, err := strings1(ctx, blue, "read columns of removed types",
		fmt.Sprintf(typeColumnsSQL, catalogTypesSQL, `'r', 'p', 'm', 'v', 'f', 'c'`), removedTypes)
	if err != nil {
		return err
	}
	f.check("no columns of removed types", len(cols) == 0, "none",
		fmt.Sprintf("blue has %s of abstime, reltime or tinterval, types PostgreSQL 12 removed (green is %d): the schema restore would fail on them. Change each on blue before the upgrade: abstime to timestamptz (ALTER TABLE t ALTER COLUMN c TYPE timestamptz USING c::timestamptz), reltime to interval (USING c::interval), tinterval to a tstzrange or two timestamptz columns:%s",
			words.Plural(len(cols), "column", "columns"), pair.green, objects(cols)))
	return nil
}

// auditTablesWithOids: WITH OIDS went in PostgreSQL 12. pg_dump leaves the
// option out (with a warning), so green's tables have no oid column: what
// reads it breaks after the cutover.
func auditTablesWithOids(ctx context.Context, f *findings, blue pg.Querier, pair majorPair) error {
	if pair.blue >= 12 {
		return nil // relhasoids is gone too
	}
	tables, err := strings1(ctx, blue, "read tables WITH OIDS", `
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relhasoids AND n.nspname <> 'pg_catalog' ORDER BY 1`)
	if err != nil {
		return err
	}
	f.check("no tables WITH OIDS", len(tables) == 0, "none",
		fmt.Sprintf("blue has %s WITH OIDS, which PostgreSQL 12 removed (green is %d): green's copy has no oid column. Before the upgrade, copy the oid into a column of your own if the application reads it, then run ALTER TABLE ... SET WITHOUT OIDS on blue for each:%s",
			words.Plural(len(tables), "table", "tables"), pair.green, objects(tables)))
	return nil
}

// auditNotNullInheritance: since PostgreSQL 18 a child table must keep its
// parent's NOT NULL; the restore of a child that lost it fails.
func auditNotNullInheritance(ctx context.Context, f *findings, blue pg.Querier, pair majorPair) error {
	cols, err := strings1(ctx, blue, "read inherited NOT NULL columns", `
SELECT DISTINCT format('%s.%s.%s: ALTER TABLE %s.%s ALTER COLUMN %s SET NOT NULL;',
              quote_ident(n.nspname), quote_ident(cc.relname), quote_ident(ac.attname),
              quote_ident(n.nspname), quote_ident(cc.relname), quote_ident(ac.attname))
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_attribute ac ON ac.attrelid = i.inhrelid
  JOIN pg_catalog.pg_attribute ap ON ap.attrelid = i.inhparent AND ap.attname = ac.attname
  JOIN pg_catalog.pg_class cc ON cc.oid = i.inhrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = cc.relnamespace
 WHERE ap.attnum > 0 AND ap.attnotnull AND NOT ac.attnotnull
 ORDER BY 1`)
	if err != nil {
		return err
	}
	f.check("inherited NOT NULL kept", len(cols) == 0, "none",
		fmt.Sprintf("blue has %s without the NOT NULL of the parent table's column, which PostgreSQL 18 requires (green is %d): the schema restore would fail on the child table. Set it on blue before the upgrade (it fails while a NULL is stored: update those rows first):%s",
			words.Plural(len(cols), "child column", "child columns"), pair.green, objects(cols)))
	return nil
}

// auditSystemComposites: a column whose type is a system table's row type
// (or information_schema's) gets green's version of that type, whose
// fields may differ: the copy of its values fails or shifts where they do.
func auditSystemComposites(ctx context.Context, f *findings, blue pg.Querier) error {
	cols, err := strings1(ctx, blue, "read columns of system row types",
		fmt.Sprintf(typeColumnsSQL, `SELECT t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
   WHERE t.typtype = 'c' AND (t.oid < 16384 OR n.nspname = 'information_schema')`, `'r', 'p', 'm'`))
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return nil
	}
	f.warn("%s whose type is a system catalog's row type, whose fields may change between majors: green restores the column with green's type, and the copy fails on its values (malformed record literal) or misplaces fields where they differ; change each on blue before the upgrade, e.g. to jsonb (ALTER TABLE t ALTER COLUMN c TYPE jsonb USING to_jsonb(c)):%s",
		words.Plural(len(cols), "column", "columns"), objects(cols))
	return nil
}

// auditRegColumns: reg* values travel as names (logical replication and the
// copy write them as text) and green resolves each name again; a name green
// lacks fails the copy, and one that means another object there changes
// meaning silently.
func auditRegColumns(ctx context.Context, f *findings, blue pg.Querier) error {
	cols, err := strings1(ctx, blue, "read reg* columns", fmt.Sprintf(typeColumnsSQL, catalogTypesSQL, `'r', 'p'`), regTypes)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return nil
	}
	f.warn("%s of a reg* type (regclass, regproc, regtype, ...): the values travel to green as names and green resolves each again, so a value naming an object green does not have (a function or type of blue's only, a dropped table) stops the copy with \"does not exist\", and one resolving to another object than on blue changes meaning; check that every referenced object exists on green, or store the name as text instead (ALTER TABLE t ALTER COLUMN c TYPE text):%s",
		words.Plural(len(cols), "column", "columns"), objects(cols))
	return nil
}
