package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
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

// audit is the compatibility report: what blue uses that green must offer
// (extensions) and what logical replication does not carry, each with what
// pgshift does about it. It changes nothing.
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
	gv, err := pg.ServerVersionOf(ctx, green)
	if err != nil {
		return nil, r, fmt.Errorf("green: %w", err)
	}
	if err := auditExtensions(ctx, f, blue, green, gv.Major); err != nil {
		return nil, r, err
	}
	if err := auditObjects(ctx, f, blue, env, &r); err != nil {
		return nil, r, fmt.Errorf("blue: %w", err)
	}
	f.warn("DDL is not replicated: after a schema change on blue, run pgshift plan and apply (they add new tables, columns and indexes on green; green's replication waits until then); changes of type, dropped columns and constraints are named for you to run on green")
	return f, r, nil
}

// auditExtensions: every extension on blue must be available on green
// (the schema restore runs CREATE EXTENSION, which installs green's default
// version).
func auditExtensions(ctx context.Context, f *findings, blue, green *pgxpool.Pool, greenMajor int) error {
	type ext struct{ name, version string }
	rows, err := blue.Query(ctx, `SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("blue: list extensions: %w", err)
	}
	var exts []ext
	for rows.Next() {
		var e ext
		if err := rows.Scan(&e.name, &e.version); err != nil {
			rows.Close()
			return fmt.Errorf("blue: list extensions: %w", err)
		}
		exts = append(exts, e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("blue: list extensions: %w", err)
	}
	var missing []string
	for _, e := range exts {
		var defaultVersion *string
		var versions []string
		err := green.QueryRow(ctx, `
SELECT (SELECT default_version FROM pg_available_extensions WHERE name = $1),
       coalesce((SELECT array_agg(version ORDER BY version) FROM pg_available_extension_versions WHERE name = $1), '{}')`,
			e.name).Scan(&defaultVersion, &versions)
		if err != nil {
			return fmt.Errorf("green: read available extensions: %w", err)
		}
		switch {
		case defaultVersion == nil:
			missing = append(missing, e.name)
			f.detail("extension %s %s: not available on green", e.name, e.version)
		case *defaultVersion == e.version:
			f.detail("extension %s %s: available on green", e.name, e.version)
		default:
			f.detail("extension %s %s: green installs %s", e.name, e.version, *defaultVersion)
			f.warn("extension %s is %s on blue and green installs %s: check its release notes for changes the application sees", e.name, e.version, *defaultVersion)
		}
	}
	f.check("extensions available on green", len(missing) == 0, fmt.Sprintf("%d of %d available", len(exts)-len(missing), len(exts)),
		fmt.Sprintf("green does not offer %s %s used on blue: install the package that provides %s on green's host (Debian/Ubuntu: postgresql-%d-<name>, e.g. postgresql-%d-%s), or drop it on blue if unused",
			words.Pick(len(missing), "extension", "extensions"), words.List(missing), words.Pick(len(missing), "it", "them"), greenMajor, greenMajor, firstOr(missing, "<name>")))
	if len(exts) > 0 {
		f.fact("%s", words.Plural(len(exts), "extension", "extensions"))
	}
	return nil
}

// auditObjects: what logical replication does not carry.
func auditObjects(ctx context.Context, f *findings, blue *pgxpool.Pool, env *engine.Env, r *auditReport) error {
	var largeObjects int64
	var sequences int
	var unlogged, matviews, matviewIdents, foreign []string
	err := blue.QueryRow(ctx, `
WITH rel AS (
  SELECT c.relkind, c.relpersistence, n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e'))
SELECT (SELECT count(*) FROM pg_largeobject_metadata),
       (SELECT count(*) FROM rel WHERE relkind = 'S')::int,
       coalesce((SELECT array_agg(nspname || '.' || relname ORDER BY 1) FROM rel WHERE relkind IN ('r', 'p') AND relpersistence = 'u'), '{}'),
       coalesce((SELECT array_agg(nspname || '.' || relname ORDER BY 1) FROM rel WHERE relkind = 'm'), '{}'),
       coalesce((SELECT array_agg(format('%I.%I', nspname, relname) ORDER BY nspname, relname) FROM rel WHERE relkind = 'm'), '{}'),
       coalesce((SELECT array_agg(nspname || '.' || relname ORDER BY 1) FROM rel WHERE relkind = 'f'), '{}')`).
		Scan(&largeObjects, &sequences, &unlogged, &matviews, &matviewIdents, &foreign)
	if err != nil {
		return fmt.Errorf("inspect objects: %w", err)
	}
	r.sequences = sequences
	r.matviews = matviewIdents

	f.check("no large objects", largeObjects == 0, fmt.Sprintf("%d large objects", largeObjects),
		fmt.Sprintf("blue holds %s, which logical replication does not carry: move them into bytea columns, or remove them (SELECT lo_unlink(oid) FROM pg_largeobject_metadata) once unused",
			words.Plural(int(largeObjects), "large object", "large objects")))
	if sequences > 0 {
		f.fact("%s synced at cutover", words.Plural(sequences, "sequence", "sequences"))
		f.detail("%s: values copied from blue to green at the cutover, plus a margin of %d", words.Plural(sequences, "sequence", "sequences"), env.Spec.Sequences.Margin)
	}
	if len(matviews) > 0 {
		f.fact("%s refreshed before cutover", words.Plural(len(matviews), "materialized view", "materialized views"))
		f.warn("%s %s not replicated: green refreshes %s before the cutover (REFRESH MATERIALIZED VIEW), which takes as long as on blue",
			words.Pick(len(matviews), "materialized view", "materialized views"), words.List(matviews), words.Pick(len(matviews), "it", "them"))
	}
	if len(unlogged) > 0 {
		f.warn("unlogged %s %s not replicated: the schema restore creates %s empty on green; refill %s after the cutover or make %s logged on blue (ALTER TABLE ... SET LOGGED)",
			words.Pick(len(unlogged), "table", "tables"), words.List(unlogged), words.Pick(len(unlogged), "it", "them"), words.Pick(len(unlogged), "it", "them"), words.Pick(len(unlogged), "it", "them"))
	}
	if len(foreign) > 0 {
		f.warn("foreign %s %s not replicated: the schema restore creates %s on green pointing at the same servers; check user mappings and network access from green",
			words.Pick(len(foreign), "table", "tables"), words.List(foreign), words.Pick(len(foreign), "it", "them"))
	}

	selected, err := pg.SelectedTables(ctx, blue, env.Spec.Tables.Include, env.Spec.Tables.Exclude)
	if err != nil {
		return err
	}
	all, err := pg.SelectedTables(ctx, blue, nil, nil)
	if err != nil {
		return err
	}
	in := tableSet(selected)
	var excluded []string
	for _, t := range all {
		if !in[t.QualifiedName()] {
			excluded = append(excluded, t.DisplayName())
		}
	}
	if len(excluded) > 0 {
		f.warn("%s excluded by tables.include/exclude: %s; the schema restore creates %s on green but no rows follow",
			words.Plural(len(excluded), "table", "tables"), words.List(excluded), words.Pick(len(excluded), "it", "them"))
	}
	return nil
}
