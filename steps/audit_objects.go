package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
)

// sequenceUsedShare is the share of its range a sequence that does not cycle
// may have used before the audit warns that it will run out.
const sequenceUsedShare = 0.9

// auditObjects: what logical replication does not carry, or carries only
// at the cutover.
func auditObjects(ctx context.Context, f *findings, blue *pgxpool.Pool, env *engine.Env, r *auditReport) error {
	var largeObjects int64
	var sequences int
	var unlogged, matviews, foreign, truncTriggers []string
	err := blue.QueryRow(ctx, `
WITH rel AS (
  SELECT c.oid, c.relkind, c.relpersistence, n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e'))
SELECT (SELECT count(*) FROM pg_largeobject_metadata),
       (SELECT count(*) FROM rel WHERE relkind = 'S')::int,
       coalesce((SELECT array_agg(format('%I.%I', nspname, relname) ORDER BY nspname, relname) FROM rel WHERE relkind IN ('r', 'p') AND relpersistence = 'u'), '{}'),
       coalesce((SELECT array_agg(format('%I.%I', nspname, relname) ORDER BY nspname, relname) FROM rel WHERE relkind = 'm'), '{}'),
       coalesce((SELECT array_agg(format('%I.%I', nspname, relname) ORDER BY nspname, relname) FROM rel WHERE relkind = 'f'), '{}'),
       coalesce((SELECT array_agg(DISTINCT format('%I.%I', rel.nspname, rel.relname)) FROM rel JOIN pg_trigger t ON t.tgrelid = rel.oid
                  WHERE NOT t.tgisinternal AND t.tgtype & 32 <> 0), '{}')`).
		Scan(&largeObjects, &sequences, &unlogged, &matviews, &foreign, &truncTriggers)
	if err != nil {
		return fmt.Errorf("inspect objects: %w", err)
	}
	r.sequences = sequences
	r.matviews = matviews // quoted where needed: REFRESH takes them as they are

	f.check("no large objects", largeObjects == 0, fmt.Sprintf("%d large objects", largeObjects),
		fmt.Sprintf("blue holds %s, which logical replication does not carry (pg_largeobject is not published): move them into bytea columns, or remove them (SELECT lo_unlink(oid) FROM pg_largeobject_metadata) once unused",
			words.Plural(int(largeObjects), "large object", "large objects")))
	if sequences > 0 {
		f.fact("%s synced at cutover", words.Plural(sequences, "sequence", "sequences"))
		f.detail("%s: values copied from blue to green at the cutover, plus a margin of %d", words.Plural(sequences, "sequence", "sequences"), env.Spec.Sequences.Margin)
		if err := auditSequencesNearEnd(ctx, f, blue); err != nil {
			return err
		}
	}
	if len(matviews) > 0 {
		f.fact("%s refreshed before cutover", words.Plural(len(matviews), "materialized view", "materialized views"))
		f.warn("%s not replicated: green refreshes %s before the cutover (REFRESH MATERIALIZED VIEW), which takes as long as on blue:%s",
			words.Pick(len(matviews), "materialized view", "materialized views"), words.Pick(len(matviews), "it", "them"), objects(matviews))
	}
	if len(unlogged) > 0 {
		f.warn("unlogged %s not replicated: the schema restore creates %s empty on green; refill %s after the cutover or make %s logged on blue (ALTER TABLE ... SET LOGGED):%s",
			words.Pick(len(unlogged), "table", "tables"), words.Pick(len(unlogged), "it", "them"), words.Pick(len(unlogged), "it", "them"), words.Pick(len(unlogged), "it", "them"), objects(unlogged))
	}
	if len(foreign) > 0 {
		f.warn("foreign %s not replicated: the schema restore creates %s on green pointing at the same servers; check user mappings and network access from green:%s",
			words.Pick(len(foreign), "table", "tables"), words.Pick(len(foreign), "it", "them"), objects(foreign))
	}
	if len(truncTriggers) > 0 {
		f.detail("ON TRUNCATE triggers: a TRUNCATE on blue replicates to green, where triggers do not fire for replicated changes (what they write on blue replicates as rows); they fire on green after the cutover:%s",
			objects(truncTriggers))
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
		f.warn("%s excluded by tables.include/exclude; the schema restore creates %s on green but no rows follow:%s",
			words.Plural(len(excluded), "table", "tables"), words.Pick(len(excluded), "it", "them"), objects(excluded))
	}
	return nil
}

// auditSequencesNearEnd warns of sequences that do not cycle and have used
// most of their range: they run out on green as they would on blue (the
// cutover copies the value). A sequence with CYCLE never runs out: it
// starts over.
func auditSequencesNearEnd(ctx context.Context, f *findings, blue pg.Querier) error {
	seqs, err := strings1(ctx, blue, "read sequences near their bound", `
SELECT format('%s.%s: last value %s of %s to %s: %s', quote_ident(schemaname), quote_ident(sequencename),
              last_value, min_value, max_value,
              CASE WHEN increment_by > 0 AND max_value < 9223372036854775807
                     THEN format('ALTER SEQUENCE %s.%s AS bigint MAXVALUE 9223372036854775807;', quote_ident(schemaname), quote_ident(sequencename))
                   WHEN increment_by < 0 AND min_value > -9223372036854775808
                     THEN format('ALTER SEQUENCE %s.%s AS bigint MINVALUE -9223372036854775808;', quote_ident(schemaname), quote_ident(sequencename))
                   ELSE 'already the whole bigint range: plan how its values start over' END)
  FROM pg_catalog.pg_sequences
 WHERE NOT cycle AND last_value IS NOT NULL
   AND schemaname NOT IN ('pg_catalog', 'information_schema')
   AND CASE WHEN increment_by > 0 THEN (last_value::numeric - min_value) >= $1 * (max_value::numeric - min_value)
            ELSE (max_value::numeric - last_value) >= $1 * (max_value::numeric - min_value) END
 ORDER BY 1`, sequenceUsedShare)
	if err != nil {
		return err
	}
	if len(seqs) > 0 {
		f.warn("%s without CYCLE %s used more than %d%% of %s range and will run out on green as on blue (the cutover copies %s value): raise the bound on blue (and widen the columns that take %s values, e.g. ALTER TABLE ... ALTER COLUMN id TYPE bigint):%s",
			words.Plural(len(seqs), "sequence", "sequences"), words.Pick(len(seqs), "has", "have"), int(sequenceUsedShare*100),
			words.Pick(len(seqs), "its", "their"), words.Pick(len(seqs), "its", "their"), words.Pick(len(seqs), "its", "their"), objects(seqs))
	}
	return nil
}
