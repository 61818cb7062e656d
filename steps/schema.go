package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// pg_dump sections (pg_dump --section).
const (
	SectionPreData  = "pre-data"  // types, functions, tables, sequences
	SectionPostData = "post-data" // indexes, constraints, triggers, rules
)

// schemaMarkerPrefix starts the comment the restore leaves on green's
// database, listing the objects it created; rollback drops those and no
// other, even when a crash came between the restore and the state file.
const schemaMarkerPrefix = "pgshift schema restore: "

// schemaStep restores blue's schema into green: pg_dump --schema-only piped
// through psql in a single transaction, so that a crash leaves either
// nothing or everything. With the snapshot copy method it restores the
// pre-data section only; post-data follows the copy.
type schemaStep struct {
	sections []string // nil: the whole schema
	copy     bool     // schema.copy
}

func init() {
	register(func(spec *spec.Spec) []engine.Step {
		var sections []string
		if spec.Replication.InitialCopy.Method == "snapshot" {
			sections = []string{SectionPreData}
		}
		return []engine.Step{schemaStep{sections: sections, copy: spec.Schema.Copy}}
	})
}

func (schemaStep) ID() string      { return stepid.Schema }
func (schemaStep) Needs() []string { return []string{stepid.Roles} }

// Converges: DDL run on blue since the restore (a new column, table or
// index) is applied to green by the next apply; see schema_drift.go.
func (schemaStep) Converges() {}

// schemaState is green's schema compared with blue's selection, and the
// tools a restore would use.
type schemaState struct {
	selected []pg.Table
	present  []string // blue's relations (tables, views, sequences) green holds
	absent   []string // selected tables green lacks
	blue     pg.ServerVersion
	green    pg.ServerVersion
	counts   objectCounts
	pgDump   ClientTool
	psql     string
	toolErr  error // no fitting pg_dump or psql: blocks a restore
	restored bool  // green holds a restore of this spec (its marker)
	drift    []pg.DriftItem
}

func (s schemaStep) state(ctx context.Context, env *engine.Env) (*schemaState, error) {
	blue, green, err := env.Pools(ctx)
	if err != nil {
		return nil, err
	}
	st := &schemaState{}
	if st.blue, err = pg.ServerVersionOf(ctx, blue); err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	if st.green, err = pg.ServerVersionOf(ctx, green); err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	if st.selected, err = pg.SelectedTables(ctx, blue, env.Spec.Tables.Include, env.Spec.Tables.Exclude); err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	onGreen, err := pg.SelectedTables(ctx, green, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	// The dump holds every relation of blue, excluded and unlogged tables
	// too: any of them on green would make the restore fail.
	if st.present, err = sharedRelations(ctx, blue, green); err != nil {
		return nil, err
	}
	have := tableSet(onGreen)
	for _, t := range st.selected {
		if !have[t.QualifiedName()] {
			st.absent = append(st.absent, t.DisplayName())
		}
	}
	if st.counts, err = countObjects(ctx, blue); err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	st.pgDump, st.toolErr = FindPgDump(ctx, env.Spec.Schema.PgDump, st.blue.Major, st.green.Major)
	if st.toolErr == nil {
		st.psql, st.toolErr = FindPsql(st.pgDump)
	}
	m, err := readSchemaMarker(ctx, green, env.Spec.Name)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	st.restored = m != nil
	if st.converging() {
		if st.drift, err = pg.CompareSchemas(ctx, blue, green, st.selected); err != nil {
			return nil, err
		}
		if _, copied := env.Output(stepid.Copy, CopyRows); s.sections != nil && !copied {
			// The snapshot copy restores indexes and constraints after its
			// copy: until then they are missing on purpose.
			st.drift = slices.DeleteFunc(st.drift, func(d pg.DriftItem) bool { return d.Kind != pg.DriftTableMissing && !isColumnDrift(d.Kind) })
		}
	}
	return st, nil
}

func isColumnDrift(k pg.DriftKind) bool {
	switch k {
	case pg.DriftColumnMissing, pg.DriftColumnExtra, pg.DriftColumnType, pg.DriftColumnDefault, pg.DriftColumnNotNull:
		return true
	}
	return false
}

// converging: the schema is in place (restored by pgshift, or all there),
// so what differs now is drift to reconcile, not a restore to run.
func (st *schemaState) converging() bool {
	return len(st.selected) > 0 && (len(st.absent) == 0 || st.restored)
}

// done: green holds every selected table.
func (st *schemaState) done() bool { return len(st.absent) == 0 && len(st.selected) > 0 }

func (st *schemaState) partial() error {
	return fmt.Errorf("green already holds %s of blue's (%s) but lacks %s: a restore of blue's schema would fail on the existing ones; drop them on green and apply again, or restore the rest yourself and set schema.copy: false",
		words.Plural(len(st.present), "relation", "relations"), words.List(st.present), words.List(st.absent))
}

func (st *schemaState) notCopied() error {
	return fmt.Errorf("schema.copy is false but green lacks %s: restore blue's schema into green (pg_dump --schema-only | psql), or set schema.copy: true",
		words.List(st.absent))
}

func (s schemaStep) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	st, err := s.state(ctx, env)
	if err != nil {
		return plans.Change{}, err
	}
	blocked := func(err error) plans.Change {
		return plans.Change{Action: plans.ActionBlocker, Summary: "cannot restore the schema", Blockers: []string{err.Error()}}
	}
	switch {
	case st.converging():
		return s.observeDrift(env, st), nil
	case !env.Spec.Schema.Copy:
		return blocked(st.notCopied()), nil
	case len(st.present) > 0:
		return blocked(st.partial()), nil
	case st.toolErr != nil:
		return blocked(st.toolErr), nil
	}
	c := plans.Change{Action: plans.ActionCreate, Summary: "restore " + st.counts.String()}
	c.Details = []string{
		fmt.Sprintf("%s --schema-only --no-publications --no-subscriptions%s %s   # pg_dump %d",
			st.pgDump.Path, sectionFlags(s.sections), env.Source.Redacted(), st.pgDump.Major),
		fmt.Sprintf("%s --single-transaction -v ON_ERROR_STOP=1 %s", st.psql, env.Target.Redacted()),
	}
	return c, nil
}

func (s schemaStep) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	st, err := s.state(ctx, env)
	if err != nil {
		return nil, err
	}
	if st.converging() {
		return s.checkDrift(env, st), nil
	}
	var pre []plans.Precondition
	if env.Spec.Schema.Copy {
		tool := plans.Precondition{Name: "pg_dump at least blue's version", OK: st.toolErr == nil}
		if st.toolErr != nil {
			tool.Detail = st.toolErr.Error()
		} else {
			tool.Detail = fmt.Sprintf("%s (pg_dump %d, blue %d)", st.pgDump.Path, st.pgDump.Major, st.blue.Major)
		}
		pre = append(pre, tool)
		pre = append(pre, plans.Precondition{Name: "green holds none of blue's tables", OK: len(st.present) == 0,
			Detail: fmt.Sprintf("%d present", len(st.present))})
	} else {
		pre = append(pre, plans.Precondition{Name: "green holds the schema (schema.copy is false)", OK: false, Detail: st.notCopied().Error()})
	}
	// Failures are the plan's blockers already, and Apply refuses on them.
	return passingOnly(pre), nil
}

// Apply restores the schema unless green holds it already. The restore is
// one transaction: after a crash green holds all of it or none.
func (s schemaStep) Apply(ctx context.Context, env *engine.Env) error {
	st, err := s.state(ctx, env)
	if err != nil {
		return err
	}
	switch {
	case st.converging():
		return s.applyDrift(ctx, env, st)
	case !env.Spec.Schema.Copy:
		return fmt.Errorf("%s: %w", stepid.Schema, st.notCopied())
	case len(st.present) > 0:
		return fmt.Errorf("%s: %w", stepid.Schema, st.partial())
	case st.toolErr != nil:
		return fmt.Errorf("%s: %w", stepid.Schema, st.toolErr)
	}
	dir, err := os.MkdirTemp("", "pgshift-schema-")
	if err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	defer os.RemoveAll(dir)
	dump := filepath.Join(dir, "schema.sql")
	env.Log.Info("dumping blue's schema", "pg_dump", st.pgDump.Path, "blue", env.Source.Redacted())
	if err := runPgDump(ctx, env, st.pgDump, dump, s.sections); err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	prelude, epilogue := filepath.Join(dir, "before.sql"), filepath.Join(dir, "after.sql")
	if err := os.WriteFile(prelude, []byte(restorePrelude), 0o600); err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	if err := os.WriteFile(epilogue, []byte(restoreEpilogue(env.Spec.Name)), 0o600); err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	env.Log.Info("restoring the schema into green", "psql", st.psql, "green", env.Target.Redacted(), "objects", st.counts.String())
	if err := runPsql(ctx, env, st.psql, prelude, dump, epilogue); err != nil {
		return fmt.Errorf("%s: %w", stepid.Schema, err)
	}
	after, err := s.state(ctx, env)
	if err != nil {
		return err
	}
	if !after.done() {
		return fmt.Errorf("%s: the restore finished but green lacks %s: is green's search_path or tables selection unusual?", stepid.Schema, words.List(after.absent))
	}
	env.Record("tables", strconv.Itoa(len(st.selected)))
	return nil
}

// Rollback drops what the restore created, as listed by its marker on
// green's database, and puts back the comment that was there before.
// Objects green held before the restore are never dropped.
func (s schemaStep) Rollback(ctx context.Context, env *engine.Env) error {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	m, err := readSchemaMarker(ctx, green, env.Spec.Name)
	if err != nil {
		return fmt.Errorf("%s: green: %w", stepid.Schema, err)
	}
	if m == nil {
		env.Log.Info("green holds no schema restored by pgshift: nothing to drop")
		return nil
	}
	err = pgx.BeginFunc(ctx, green, func(tx pgx.Tx) error {
		// An empty search_path makes regclass and friends print qualified names.
		if _, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('search_path', '', true)"); err != nil {
			return err
		}
		if err := refuseForeignDependents(ctx, tx, m); err != nil {
			return err
		}
		for _, class := range dropOrder {
			for _, o := range m.Objects {
				if o[0] != class {
					continue
				}
				stmt, err := dropStatement(ctx, tx, o[0], o[1])
				if err != nil {
					return err
				}
				if stmt == "" {
					continue // gone already, with what it depended on
				}
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", stmt, err)
				}
			}
		}
		db, err := pg.Scalar[string](ctx, tx, "SELECT pg_catalog.current_database()")
		if err != nil {
			return err
		}
		restore := "NULL"
		if m.PreviousComment != nil {
			restore = pg.QuoteLiteral(*m.PreviousComment)
		}
		_, err = tx.Exec(ctx, "COMMENT ON DATABASE "+pg.QuoteIdent(db)+" IS "+restore)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: drop the restored schema on green: %w", stepid.Schema, err)
	}
	env.Log.Info("dropped the schema pgshift restored", "objects", len(m.Objects))
	return nil
}

// foreignDependentsSQL lists green's own views and foreign keys that hang on
// restored relations: DROP ... CASCADE would take them along unasked.
const foreignDependentsSQL = `
WITH restored AS (SELECT unnest($1::oid[]) AS oid)
SELECT DISTINCT 'view ' || r.ev_class::pg_catalog.regclass::text
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
 WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.refobjid IN (SELECT oid FROM restored)
   AND r.ev_class NOT IN (SELECT oid FROM restored)
UNION
SELECT 'foreign key ' || pg_catalog.quote_ident(c.conname) || ' on ' || c.conrelid::pg_catalog.regclass::text
  FROM pg_catalog.pg_constraint c
 WHERE c.contype = 'f'
   AND c.confrelid IN (SELECT oid FROM restored)
   AND c.conrelid NOT IN (SELECT oid FROM restored)
 ORDER BY 1`

// refuseForeignDependents stops the rollback before it drops objects green
// made itself after the restore.
func refuseForeignDependents(ctx context.Context, tx pgx.Tx, m *schemaMarker) error {
	var rels []uint32
	for _, o := range m.Objects {
		if o[0] == classPgClass {
			rels = append(rels, uint32(o[1]))
		}
	}
	if len(rels) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, foreignDependentsSQL, rels)
	if err != nil {
		return fmt.Errorf("look for objects of green's own that depend on the restored tables: %w", err)
	}
	deps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("look for objects of green's own that depend on the restored tables: %w", err)
	}
	if len(deps) > 0 {
		return fmt.Errorf("green holds objects of its own that depend on the restored tables and would be dropped with them: %s; drop them (or move them off these tables) first, then roll back again", words.List(deps))
	}
	return nil
}

// DumpSchema runs pg_dump --schema-only on blue into a file under dir
// (restricted to the given sections when any), with the pg_dump FindPgDump
// picks. The later steps of the snapshot method use it for post-data.
func DumpSchema(ctx context.Context, env *engine.Env, dir string, sections ...string) (string, error) {
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return "", err
	}
	bv, err := pg.ServerVersionOf(ctx, blue)
	if err != nil {
		return "", fmt.Errorf("blue: %w", err)
	}
	greenMajor := 0
	if green, err := env.Target.Pool(ctx); err == nil {
		if gv, err := pg.ServerVersionOf(ctx, green); err == nil {
			greenMajor = gv.Major
		}
	}
	tool, err := FindPgDump(ctx, env.Spec.Schema.PgDump, bv.Major, greenMajor)
	if err != nil {
		return "", err
	}
	name := "schema.sql"
	if len(sections) > 0 {
		name = strings.Join(sections, "+") + ".sql"
	}
	out := filepath.Join(dir, name)
	return out, runPgDump(ctx, env, tool, out, sections)
}

func sectionFlags(sections []string) string {
	var b strings.Builder
	for _, s := range sections {
		b.WriteString(" --section=" + s)
	}
	return b.String()
}

// runPgDump dumps blue's schema into out. The password travels in the
// environment, never in argv.
// tables, when given, restrict the dump to those (pg_dump --table, each
// an exact quoted name).
func runPgDump(ctx context.Context, env *engine.Env, tool ClientTool, out string, sections []string, tables ...string) error {
	args := []string{"--schema-only", "--no-publications", "--no-subscriptions", "--no-password", "--file", out}
	for _, s := range sections {
		args = append(args, "--section="+s)
	}
	for _, t := range tables {
		args = append(args, "--table", t)
	}
	conninfo, environ, err := libpqTarget(env.Source)
	if err != nil {
		return err
	}
	args = append(args, "--dbname", conninfo)
	cmd := exec.CommandContext(ctx, tool.Path, args...)
	cmd.Env = environ
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := runChild(cmd); err != nil {
		return fmt.Errorf("pg_dump of blue (%s) failed: %v: %s", env.Source.Redacted(), err, lastLines(stderr.String(), 10))
	}
	return nil
}

// runPsql runs the files in order in one transaction on green, stopping at
// the first error.
func runPsql(ctx context.Context, env *engine.Env, psql string, files ...string) error {
	args := []string{"-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction"}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	conninfo, environ, err := libpqTarget(env.Target)
	if err != nil {
		return err
	}
	args = append(args, "--dbname", conninfo)
	cmd := exec.CommandContext(ctx, psql, args...)
	cmd.Env = environ
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := runChild(cmd); err != nil {
		msg := lastLines(stderr.String(), 10)
		greenMajor := 0
		if green, perr := env.Target.Pool(ctx); perr == nil {
			greenMajor, _ = pg.ServerMajor(ctx, green)
		}
		return fmt.Errorf("restore into green (%s) failed and was rolled back: %v: %s%s", env.Target.Redacted(), err, msg, restoreHint(msg, greenMajor))
	}
	return nil
}

// missingExtensionRE finds the extension a restore could not create.
var missingExtensionRE = regexp.MustCompile(`extension "([^"]+)" is not available|extension control file "[^"]*/([^/"]+)\.control"`)

// restoreHint adds the fix for the usual causes of a failed restore; an
// extension green lacks gets the fix right for green's major (greenMajor,
// 0 when unknown): one removed from PostgreSQL is dropped on blue, not
// installed.
func restoreHint(stderr string, greenMajor int) string {
	switch {
	case strings.Contains(stderr, "role") && strings.Contains(stderr, "does not exist"):
		return "\nfix: create the role on green, or set schema.roles: true so that pgshift copies blue's roles first"
	case strings.Contains(stderr, "extension") && (strings.Contains(stderr, "is not available") || strings.Contains(stderr, "could not open extension control file")):
		if m := missingExtensionRE.FindStringSubmatch(stderr); m != nil && greenMajor > 0 {
			name := m[1]
			if name == "" {
				name = m[2]
			}
			return "\nfix: " + missingExtensionFix(name, greenMajor)
		}
		return "\nfix: install the extension's package on green's host (Debian/Ubuntu: postgresql-<major>-<name>)"
	case strings.Contains(stderr, "tablespace") && strings.Contains(stderr, "does not exist"):
		return "\nfix: create the tablespace on green first"
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// objectCounts is what the plan says a restore creates.
type objectCounts struct {
	Tables, Sequences, Views, MatViews, Functions, Types, Extensions int
}

func (c objectCounts) String() string {
	parts := []string{words.Plural(c.Tables, "table", "tables")}
	add := func(n int, one, many string) {
		if n > 0 {
			parts = append(parts, words.Plural(n, one, many))
		}
	}
	add(c.Sequences, "sequence", "sequences")
	add(c.Views, "view", "views")
	add(c.MatViews, "materialized view", "materialized views")
	add(c.Functions, "function", "functions")
	add(c.Types, "type", "types")
	add(c.Extensions, "extension", "extensions")
	return strings.Join(parts, ", ")
}

// countObjects counts blue's user objects (not those of extensions).
func countObjects(ctx context.Context, db *pgxpool.Pool) (objectCounts, error) {
	var c objectCounts
	err := db.QueryRow(ctx, `
WITH ns AS (
  SELECT oid FROM pg_namespace
   WHERE nspname NOT IN ('pg_catalog', 'information_schema')
     AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp%'),
ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e'),
rel AS (
  SELECT c.relkind FROM pg_class c
   WHERE c.relnamespace IN (SELECT oid FROM ns) AND c.relpersistence <> 't'
     AND (c.tableoid, c.oid) NOT IN (SELECT classid, objid FROM ext))
SELECT (SELECT count(*) FROM rel WHERE relkind IN ('r', 'p', 'f'))::int,
       (SELECT count(*) FROM rel WHERE relkind = 'S')::int,
       (SELECT count(*) FROM rel WHERE relkind = 'v')::int,
       (SELECT count(*) FROM rel WHERE relkind = 'm')::int,
       (SELECT count(*) FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns)
           AND (p.tableoid, p.oid) NOT IN (SELECT classid, objid FROM ext))::int,
       (SELECT count(*) FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM ns)
           AND t.typtype IN ('e', 'd', 'r') AND (t.tableoid, t.oid) NOT IN (SELECT classid, objid FROM ext))::int,
       (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')::int`).
		Scan(&c.Tables, &c.Sequences, &c.Views, &c.MatViews, &c.Functions, &c.Types, &c.Extensions)
	if err != nil {
		return c, fmt.Errorf("count schema objects: %w", err)
	}
	return c, nil
}

// The restore's bookkeeping runs in its own transaction: the prelude notes
// every object green holds before, the epilogue lists those the dump added
// in a comment on the database. Every catalog a schema dump creates objects
// in is tracked, so that a rollback leaves nothing behind for the next
// restore to fail on ("collation already exists"); indexes, constraints,
// triggers, rules, policies, statistics and the like go with their tables,
// user mappings with their servers. Objects of extensions are left to
// DROP EXTENSION. Default privileges are not tracked: they go with their
// schema, and ALTER DEFAULT PRIVILEGES again changes nothing.
const (
	classPgClass        = 1259
	classPgProc         = 1255
	classPgType         = 1247
	classPgNamespace    = 2615
	classPgExtension    = 3079
	classPgCollation    = 3456
	classPgOperator     = 2617
	classPgOpclass      = 2616
	classPgOpfamily     = 2753
	classPgCast         = 2605
	classPgConversion   = 2607
	classPgTSConfig     = 3602
	classPgTSDict       = 3600
	classPgTSParser     = 3601
	classPgTSTemplate   = 3764
	classPgFDW          = 2328
	classPgForeignSrv   = 1417
	classPgEventTrigger = 3466
	classPgLanguage     = 2612
	classPgAm           = 2601
)

// dropOrder: event triggers first (one on sql_drop would fire during the
// rollback), relations (taking views, indexes and sequences they own with
// them), then what hangs on functions and types (casts, operators and
// their classes, text search objects, conversions, collations), functions,
// types, foreign servers and their wrappers, languages, access methods,
// schemas, extensions. Anything an earlier DROP ... CASCADE took along is
// skipped.
var dropOrder = []int64{classPgEventTrigger, classPgClass, classPgCast, classPgOpclass, classPgOpfamily, classPgOperator,
	classPgTSConfig, classPgTSDict, classPgTSParser, classPgTSTemplate, classPgConversion, classPgCollation,
	classPgProc, classPgType, classPgForeignSrv, classPgFDW, classPgLanguage, classPgAm, classPgNamespace, classPgExtension}

// trackedObjectsSQL lists green's objects of every tracked class (the class
// oids are fixed in every version: catalogs are bootstrapped with them).
const trackedObjectsSQL = `
SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid AS classid, n.oid AS objid
  FROM pg_catalog.pg_namespace n
 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid, e.oid FROM pg_catalog.pg_extension e
UNION ALL
SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, c.oid FROM pg_catalog.pg_class c
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relpersistence <> 't'
UNION ALL
SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid, p.oid FROM pg_catalog.pg_proc p
UNION ALL
SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, t.oid FROM pg_catalog.pg_type t
 WHERE t.typcategory <> 'A'
   AND (t.typtype IN ('e', 'd', 'r', 'b')
        OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_catalog.pg_class r
                                         WHERE r.oid = t.typrelid AND r.relkind = 'c')))
UNION ALL
SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_collation o
UNION ALL
SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_operator o
UNION ALL
SELECT 'pg_catalog.pg_opclass'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_opclass o
UNION ALL
SELECT 'pg_catalog.pg_opfamily'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_opfamily o
UNION ALL
SELECT 'pg_catalog.pg_cast'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_cast o
UNION ALL
SELECT 'pg_catalog.pg_conversion'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_conversion o
UNION ALL
SELECT 'pg_catalog.pg_ts_config'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_ts_config o
UNION ALL
SELECT 'pg_catalog.pg_ts_dict'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_ts_dict o
UNION ALL
SELECT 'pg_catalog.pg_ts_parser'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_ts_parser o
UNION ALL
SELECT 'pg_catalog.pg_ts_template'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_ts_template o
UNION ALL
SELECT 'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_foreign_data_wrapper o
UNION ALL
SELECT 'pg_catalog.pg_foreign_server'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_foreign_server o
UNION ALL
SELECT 'pg_catalog.pg_event_trigger'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_event_trigger o
UNION ALL
SELECT 'pg_catalog.pg_language'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_language o
UNION ALL
SELECT 'pg_catalog.pg_am'::pg_catalog.regclass::pg_catalog.oid, o.oid FROM pg_catalog.pg_am o`

const restorePrelude = `CREATE TEMP TABLE pgshift_before ON COMMIT DROP AS ` + trackedObjectsSQL + `;
`

func restoreEpilogue(specName string) string {
	return `DO $pgshift$
DECLARE
  prefix constant text := ` + pg.QuoteLiteral(schemaMarkerPrefix) + `;
  spec constant text := ` + pg.QuoteLiteral(specName) + `;
  old text := pg_catalog.shobj_description(
                (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()),
                'pg_database');
  prev jsonb := '[]';
  prev_comment text := old;
  created jsonb;
  m jsonb;
BEGIN
  IF old IS NOT NULL AND pg_catalog.starts_with(old, prefix) THEN
    m := pg_catalog.substr(old, pg_catalog.length(prefix) + 1)::jsonb;
    IF m ->> 'spec' = spec THEN
      prev := m -> 'objects';
      prev_comment := m ->> 'previous_comment';
    END IF;
  END IF;
  SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(x.classid::bigint, x.objid::bigint)
                                       ORDER BY x.classid, x.objid), '[]')
    INTO created
    FROM (` + trackedObjectsSQL + `) x
   WHERE NOT EXISTS (SELECT 1 FROM pg_temp.pgshift_before b WHERE b.classid = x.classid AND b.objid = x.objid)
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = x.classid AND d.objid = x.objid AND d.deptype = 'e');
  EXECUTE pg_catalog.format('COMMENT ON DATABASE %I IS %L', pg_catalog.current_database(),
    prefix || pg_catalog.jsonb_build_object('spec', spec, 'objects', prev || created,
                                            'previous_comment', prev_comment)::text);
END
$pgshift$;
`
}

// schemaMarker is the restore's record on green's database.
type schemaMarker struct {
	Spec            string     `json:"spec"`
	Objects         [][2]int64 `json:"objects"` // [classid, objid]
	PreviousComment *string    `json:"previous_comment"`
}

// readSchemaMarker reads the marker of this spec's restore, nil when none.
func readSchemaMarker(ctx context.Context, db pg.Querier, specName string) (*schemaMarker, error) {
	comment, err := pg.Scalar[*string](ctx, db, `
SELECT pg_catalog.shobj_description(d.oid, 'pg_database')
  FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()`)
	if err != nil {
		return nil, fmt.Errorf("read the database comment: %w", err)
	}
	if comment == nil || !strings.HasPrefix(*comment, schemaMarkerPrefix) {
		return nil, nil
	}
	var m schemaMarker
	if err := json.Unmarshal([]byte(strings.TrimPrefix(*comment, schemaMarkerPrefix)), &m); err != nil {
		return nil, fmt.Errorf("the database comment starts like pgshift's restore marker but does not parse: %w", err)
	}
	if m.Spec != specName {
		return nil, nil
	}
	return &m, nil
}

// dropStatement is the DROP for one tracked object, named as the server
// prints it (quoted and qualified), or "" when the object is gone.
func dropStatement(ctx context.Context, tx pgx.Tx, classid, objid int64) (string, error) {
	var q string
	switch classid {
	case classPgClass:
		q = `SELECT CASE relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                 WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, oid::pg_catalog.regclass::text
               FROM pg_catalog.pg_class WHERE oid = $1`
	case classPgProc:
		q = `SELECT CASE prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                    oid::pg_catalog.regprocedure::text
               FROM pg_catalog.pg_proc WHERE oid = $1`
	case classPgType:
		q = `SELECT CASE typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, oid::pg_catalog.regtype::text
               FROM pg_catalog.pg_type WHERE oid = $1`
	case classPgNamespace:
		q = `SELECT 'SCHEMA', pg_catalog.quote_ident(nspname) FROM pg_catalog.pg_namespace WHERE oid = $1`
	case classPgExtension:
		q = `SELECT 'EXTENSION', pg_catalog.quote_ident(extname) FROM pg_catalog.pg_extension WHERE oid = $1`
	case classPgCollation:
		q = qualifiedDrop("COLLATION", "pg_collation", "collname", "collnamespace")
	case classPgConversion:
		q = qualifiedDrop("CONVERSION", "pg_conversion", "conname", "connamespace")
	case classPgTSConfig:
		q = qualifiedDrop("TEXT SEARCH CONFIGURATION", "pg_ts_config", "cfgname", "cfgnamespace")
	case classPgTSDict:
		q = qualifiedDrop("TEXT SEARCH DICTIONARY", "pg_ts_dict", "dictname", "dictnamespace")
	case classPgTSParser:
		q = qualifiedDrop("TEXT SEARCH PARSER", "pg_ts_parser", "prsname", "prsnamespace")
	case classPgTSTemplate:
		q = qualifiedDrop("TEXT SEARCH TEMPLATE", "pg_ts_template", "tmplname", "tmplnamespace")
	case classPgOperator:
		// regoperator prints name(left,right), NONE for a prefix operator's left.
		q = `SELECT 'OPERATOR', oid::pg_catalog.regoperator::text FROM pg_catalog.pg_operator WHERE oid = $1`
	case classPgOpclass:
		q = `SELECT 'OPERATOR CLASS', pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(o.opcname)
                    || ' USING ' || pg_catalog.quote_ident(a.amname)
               FROM pg_catalog.pg_opclass o JOIN pg_catalog.pg_namespace n ON n.oid = o.opcnamespace
               JOIN pg_catalog.pg_am a ON a.oid = o.opcmethod WHERE o.oid = $1`
	case classPgOpfamily:
		q = `SELECT 'OPERATOR FAMILY', pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(o.opfname)
                    || ' USING ' || pg_catalog.quote_ident(a.amname)
               FROM pg_catalog.pg_opfamily o JOIN pg_catalog.pg_namespace n ON n.oid = o.opfnamespace
               JOIN pg_catalog.pg_am a ON a.oid = o.opfmethod WHERE o.oid = $1`
	case classPgCast:
		q = `SELECT 'CAST', '(' || pg_catalog.format_type(castsource, NULL) || ' AS ' || pg_catalog.format_type(casttarget, NULL) || ')'
               FROM pg_catalog.pg_cast WHERE oid = $1`
	case classPgFDW:
		q = `SELECT 'FOREIGN DATA WRAPPER', pg_catalog.quote_ident(fdwname) FROM pg_catalog.pg_foreign_data_wrapper WHERE oid = $1`
	case classPgForeignSrv:
		q = `SELECT 'SERVER', pg_catalog.quote_ident(srvname) FROM pg_catalog.pg_foreign_server WHERE oid = $1`
	case classPgEventTrigger:
		q = `SELECT 'EVENT TRIGGER', pg_catalog.quote_ident(evtname) FROM pg_catalog.pg_event_trigger WHERE oid = $1`
	case classPgLanguage:
		q = `SELECT 'LANGUAGE', pg_catalog.quote_ident(lanname) FROM pg_catalog.pg_language WHERE oid = $1`
	case classPgAm:
		q = `SELECT 'ACCESS METHOD', pg_catalog.quote_ident(amname) FROM pg_catalog.pg_am WHERE oid = $1`
	default:
		return "", nil
	}
	rows, err := tx.Query(ctx, q, uint32(objid))
	if err != nil {
		return "", fmt.Errorf("look up object %d/%d: %w", classid, objid, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return "", rows.Err()
	}
	var kind, name string
	if err := rows.Scan(&kind, &name); err != nil {
		return "", err
	}
	return "DROP " + kind + " IF EXISTS " + name + " CASCADE", nil
}

// qualifiedDrop is the query of dropStatement for an object named by
// schema and name.
func qualifiedDrop(kind, catalog, nameCol, nspCol string) string {
	return `SELECT '` + kind + `', pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(o.` + nameCol + `)
               FROM pg_catalog.` + catalog + ` o JOIN pg_catalog.pg_namespace n ON n.oid = o.` + nspCol + `
              WHERE o.oid = $1`
}

// userRelationsSQL lists a database's tables, views and sequences outside
// the system schemas and extensions: the names a schema restore creates.
const userRelationsSQL = `
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2`

// sharedRelations names the relations of blue that green holds too.
func sharedRelations(ctx context.Context, blue, green pg.Querier) ([]string, error) {
	list := func(db pg.Querier) ([][2]string, error) {
		rows, err := db.Query(ctx, userRelationsSQL)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
			var v [2]string
			err := r.Scan(&v[0], &v[1])
			return v, err
		})
	}
	b, err := list(blue)
	if err != nil {
		return nil, fmt.Errorf("blue: list relations: %w", err)
	}
	g, err := list(green)
	if err != nil {
		return nil, fmt.Errorf("green: list relations: %w", err)
	}
	onGreen := make(map[[2]string]bool, len(g))
	for _, r := range g {
		onGreen[r] = true
	}
	var shared []string
	for _, r := range b {
		if onGreen[r] {
			shared = append(shared, pg.DisplayName(r[0], r[1]))
		}
	}
	return shared, nil
}
