package steps

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

func init() {
	register(func(spec *spec.Spec) []engine.Step { return []engine.Step{&publicationStep{spec: spec}} })
}

// publicationStep creates, on blue, a publication with an explicit list of
// the selected tables (never FOR ALL TABLES: a table added to blue later, or
// a bookkeeping table without a replica identity, must not join silently).
// A partitioned table is published through its root so that rows land in
// green's partitions whatever their layout there.
type publicationStep struct{ spec *spec.Spec }

func (s *publicationStep) ID() string      { return stepid.Publication }
func (s *publicationStep) Needs() []string { return []string{stepid.Audit} }

// ownerComment marks a publication pgshift created, so that rollback and
// cleanup never drop a publication the user made.
func ownerComment(spec *spec.Spec) string { return "pgshift: created for " + spec.Name }

// publicationState is a publication on blue as the catalogs show it.
type publicationState struct {
	Exists     bool
	AllTables  bool
	AllActions bool // publishes insert, update, delete and truncate
	ViaRoot    bool
	Ours       bool     // carries ownerComment
	Tables     []string // schema.table, sorted
	Filtered   []string // tables with a row filter or column list (15+)
	Schemas    int      // FOR TABLES IN SCHEMA entries (15+)
}

func readPublication(ctx context.Context, db pg.Querier, name string, spec *spec.Spec) (publicationState, error) {
	var st publicationState
	var comment string
	err := db.QueryRow(ctx, `
SELECT p.puballtables,
       p.pubinsert AND p.pubupdate AND p.pubdelete AND coalesce((to_jsonb(p)->>'pubtruncate')::bool, true),
       coalesce((to_jsonb(p)->>'pubviaroot')::bool, false),
       coalesce(obj_description(p.oid, 'pg_publication'), '')
  FROM pg_publication p WHERE p.pubname = $1`, name).Scan(&st.AllTables, &st.AllActions, &st.ViaRoot, &comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read publication %q on blue: %w", name, err)
	}
	st.Exists = true
	st.Ours = comment == ownerComment(spec)
	rows, err := db.Query(ctx, `
SELECT n.nspname || '.' || c.relname,
       coalesce(to_jsonb(pr)->>'prqual', '') <> '' OR coalesce(to_jsonb(pr)->>'prattrs', '') <> ''
  FROM pg_publication_rel pr
  JOIN pg_publication p ON p.oid = pr.prpubid
  JOIN pg_class c ON c.oid = pr.prrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.pubname = $1
 ORDER BY 1`, name)
	if err != nil {
		return st, fmt.Errorf("read tables of publication %q on blue: %w", name, err)
	}
	for rows.Next() {
		var t string
		var filtered bool
		if err := rows.Scan(&t, &filtered); err != nil {
			rows.Close()
			return st, fmt.Errorf("read tables of publication %q on blue: %w", name, err)
		}
		st.Tables = append(st.Tables, t)
		if filtered {
			st.Filtered = append(st.Filtered, t)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("read tables of publication %q on blue: %w", name, err)
	}
	var hasNamespaces bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('pg_catalog.pg_publication_namespace') IS NOT NULL`).Scan(&hasNamespaces); err != nil {
		return st, fmt.Errorf("read publication %q on blue: %w", name, err)
	}
	if hasNamespaces {
		if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_publication_namespace pn JOIN pg_publication p ON p.oid = pn.pnpubid WHERE p.pubname = $1`, name).Scan(&st.Schemas); err != nil {
			return st, fmt.Errorf("read schemas of publication %q on blue: %w", name, err)
		}
	}
	return st, nil
}

// publicationPlan is what the step wants on blue, from the live tables.
type publicationPlan struct {
	Name        string
	Tables      []pg.Table
	Partitioned bool
}

func (p publicationPlan) names() []string {
	out := make([]string, len(p.Tables))
	for i, t := range p.Tables {
		out[i] = t.QualifiedName()
	}
	sort.Strings(out)
	return out
}

func (p publicationPlan) tableList() string {
	ids := make([]string, len(p.Tables))
	for i, t := range p.Tables {
		ids[i] = t.Ident()
	}
	return strings.Join(ids, ", ")
}

func (p publicationPlan) withClause() string {
	w := "publish = 'insert, update, delete, truncate'"
	if p.Partitioned {
		w += ", publish_via_partition_root = true"
	}
	return "WITH (" + w + ")"
}

// createMarkedSQL creates the publication with pgshift's owner mark; run
// in one transaction, so that a crash never leaves a publication that
// rollback would not recognise as pgshift's (and a rerun would refuse).
func (p publicationPlan) createMarkedSQL(spec *spec.Spec) []string {
	return []string{p.createSQL(),
		fmt.Sprintf("COMMENT ON PUBLICATION %s IS %s", pg.QuoteIdent(p.Name), pg.QuoteLiteral(ownerComment(spec)))}
}

func (p publicationPlan) createSQL() string {
	return fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s %s", pg.QuoteIdent(p.Name), p.tableList(), p.withClause())
}

func (p publicationPlan) alterSQL() []string {
	return []string{
		fmt.Sprintf("ALTER PUBLICATION %s SET TABLE %s", pg.QuoteIdent(p.Name), p.tableList()),
		fmt.Sprintf("ALTER PUBLICATION %s SET (%s)", pg.QuoteIdent(p.Name), strings.TrimSuffix(strings.TrimPrefix(p.withClause(), "WITH ("), ")")),
	}
}

func (s *publicationStep) desired(ctx context.Context, db pg.Querier) (publicationPlan, error) {
	tables, err := pg.SelectedTables(ctx, db, s.spec.Tables.Include, s.spec.Tables.Exclude)
	if err != nil {
		return publicationPlan{}, fmt.Errorf("blue: %w", err)
	}
	p := publicationPlan{Name: s.spec.PublicationName(), Tables: tables}
	for _, t := range tables {
		if t.Partitioned {
			p.Partitioned = true
		}
	}
	return p, nil
}

// diffTables returns the tables to add and to remove to go from have to want.
func diffTables(have, want []string) (add, remove []string) {
	h := map[string]bool{}
	for _, t := range have {
		h[t] = true
	}
	w := map[string]bool{}
	for _, t := range want {
		w[t] = true
		if !h[t] {
			add = append(add, t)
		}
	}
	for _, t := range have {
		if !w[t] {
			remove = append(remove, t)
		}
	}
	return add, remove
}

// mismatch lists, for an existing publication, what differs from the plan.
func (p publicationPlan) mismatch(st publicationState) []string {
	var out []string
	add, remove := diffTables(st.Tables, p.names())
	for _, t := range add {
		out = append(out, "+ table "+t)
	}
	for _, t := range remove {
		out = append(out, "- table "+t)
	}
	for _, t := range st.Filtered {
		out = append(out, "~ table "+t+": has a row filter or column list; pgshift replicates whole tables")
	}
	if st.Schemas > 0 {
		out = append(out, fmt.Sprintf("- %d FOR TABLES IN SCHEMA entries", st.Schemas))
	}
	if !st.AllActions {
		out = append(out, "~ publish: insert, update, delete, truncate")
	}
	if p.Partitioned && !st.ViaRoot {
		out = append(out, "~ publish_via_partition_root: false -> true")
	}
	return out
}

func (s *publicationStep) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	db, err := env.Source.Pool(ctx)
	if err != nil {
		return plans.Change{}, err
	}
	want, err := s.desired(ctx, db)
	if err != nil {
		return plans.Change{}, err
	}
	if len(want.Tables) == 0 {
		return plans.Change{Action: plans.ActionBlocker, Summary: "no table selected",
			Blockers: []string{"tables.include/exclude select no table on blue: widen tables.include"}}, nil
	}
	st, err := readPublication(ctx, db, want.Name, s.spec)
	if err != nil {
		return plans.Change{}, err
	}
	if !st.Exists {
		return plans.Change{
			Action:  plans.ActionCreate,
			Summary: fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE ... (%s)", pg.QuoteIdent(want.Name), words.Count(len(want.Tables), "table")),
			Details: []string{want.createSQL()},
		}, nil
	}
	if st.AllTables {
		return plans.Change{Action: plans.ActionBlocker, Summary: "publication " + pg.QuoteIdent(want.Name) + " exists FOR ALL TABLES",
			Blockers: []string{publicationAllTablesError(want.Name).Error()}}, nil
	}
	diff := want.mismatch(st)
	if len(diff) == 0 {
		return plans.Change{Action: plans.ActionNone,
			Summary: fmt.Sprintf("publication %s publishes the %d selected tables", pg.QuoteIdent(want.Name), len(want.Tables))}, nil
	}
	if !st.Ours {
		return plans.Change{Action: plans.ActionBlocker, Summary: "publication " + pg.QuoteIdent(want.Name) + " exists and differs",
			Details: diff, Blockers: []string{publicationNotOursError(want.Name).Error()}}, nil
	}
	return plans.Change{
		Action:  plans.ActionChange,
		Summary: fmt.Sprintf("publication %s: %d changes to its tables or options", pg.QuoteIdent(want.Name), len(diff)),
		Details: append(diff, want.alterSQL()...),
	}, nil
}

func publicationAllTablesError(name string) error {
	return fmt.Errorf("publication %q exists on blue FOR ALL TABLES; pgshift needs an explicit table list: drop it (DROP PUBLICATION %s) or set replication.publication to another name",
		name, pg.QuoteIdent(name))
}

func publicationNotOursError(name string) error {
	return fmt.Errorf("publication %q exists on blue, was not created by pgshift, and does not publish exactly the selected tables: drop it, set replication.publication to another name, or make it publish exactly those tables",
		name)
}

func (s *publicationStep) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	db, err := env.Source.Pool(ctx)
	if err != nil {
		return []plans.Precondition{{Name: "blue reachable", OK: false, Detail: err.Error()}}, nil
	}
	want, err := s.desired(ctx, db)
	if err != nil {
		return nil, err
	}
	pre := []plans.Precondition{{Name: "tables selected", OK: len(want.Tables) > 0,
		Detail: fmt.Sprintf("%s on blue match tables.include/exclude", words.Count(len(want.Tables), "table"))}}
	var missing []string
	for _, t := range want.Tables {
		if !t.HasReplicaIdentity() {
			missing = append(missing, t.QualifiedName())
		}
	}
	ri := plans.Precondition{Name: "replica identity on every published table", OK: len(missing) == 0}
	if len(missing) > 0 {
		// Publishing such a table makes UPDATE and DELETE on blue fail.
		ri.Detail = "no primary key or replica identity: " + strings.Join(missing, ", ") +
			" (add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL)"
	}
	pre = append(pre, ri)
	if want.Partitioned {
		major, err := pg.ServerMajor(ctx, db)
		if err != nil {
			return nil, err
		}
		pre = append(pre, plans.Precondition{Name: "publish_via_partition_root available", OK: major >= 13,
			Detail: fmt.Sprintf("blue runs PostgreSQL %d; partitioned tables replicate through their root from 13 on", major)})
	}
	return pre, nil
}

func (s *publicationStep) Apply(ctx context.Context, env *engine.Env) error {
	db, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	pre, err := s.Check(ctx, env)
	if err != nil {
		return err
	}
	for _, p := range pre {
		if !p.OK {
			return fmt.Errorf("publication: %s: %s", p.Name, p.Detail)
		}
	}
	want, err := s.desired(ctx, db)
	if err != nil {
		return err
	}
	st, err := readPublication(ctx, db, want.Name, s.spec)
	if err != nil {
		return err
	}
	var stmts []string
	switch {
	case !st.Exists:
		stmts = want.createMarkedSQL(s.spec)
	case st.AllTables:
		return publicationAllTablesError(want.Name)
	case len(want.mismatch(st)) == 0:
		env.Record("tables", fmt.Sprint(len(want.Tables)))
		return nil
	case !st.Ours:
		return publicationNotOursError(want.Name)
	default:
		stmts = want.alterSQL()
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publication %q on blue: %w", want.Name, err)
	}
	env.Log.Info("publication ready", "publication", want.Name, "tables", len(want.Tables), "via_partition_root", want.Partitioned)
	env.Record("tables", fmt.Sprint(len(want.Tables)))
	return nil
}

func (s *publicationStep) Rollback(ctx context.Context, env *engine.Env) error {
	db, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	return dropPublication(ctx, env, db, s.spec.PublicationName(), ownerComment(s.spec))
}

// dropPublication drops a publication pgshift created (marked by owner) and
// keeps any other, saying so.
func dropPublication(ctx context.Context, env *engine.Env, db pg.Querier, name, owner string) error {
	var comment string
	err := db.QueryRow(ctx, `SELECT coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_publication WHERE pubname = $1`, name).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read publication %q: %w", name, err)
	}
	if comment != owner {
		env.Log.Warn("publication kept: pgshift did not create it", "publication", name)
		return nil
	}
	if _, err := db.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pg.QuoteIdent(name)); err != nil {
		return fmt.Errorf("drop publication %q: %w", name, err)
	}
	env.Log.Info("publication dropped", "publication", name)
	return nil
}

// Describe is the offline plan line: the tables are only known live.
func (s *publicationStep) Describe() plans.Change {
	return plans.Change{Action: plans.ActionCreate,
		Summary: fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE <tables matching %s, excluding %s>",
			pg.QuoteIdent(s.spec.PublicationName()), strings.Join(s.spec.Tables.Include, " "), strings.Join(s.spec.Tables.Exclude, " "))}
}

func (s *publicationStep) DescribeRollback() string {
	return fmt.Sprintf("DROP PUBLICATION %s on blue (only when pgshift created it)", pg.QuoteIdent(s.spec.PublicationName()))
}
