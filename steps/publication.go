package steps

import (
	"context"
	"errors"
	"fmt"
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

func (s *publicationStep) ID() string { return stepid.Publication }

// Needs target.schema: a table joins the publication only once green holds
// it, or green's apply worker would stop at its first row ("target
// relation does not exist").
func (s *publicationStep) Needs() []string { return []string{stepid.Audit, stepid.Schema} }

// Converges: a change of tables.include/exclude, or a table created or
// dropped on blue, is applied to the done publication (ALTER PUBLICATION
// SET TABLE); target.subscription then refreshes.
func (s *publicationStep) Converges() {}

func (s *publicationStep) desired(ctx context.Context, db pg.Querier) (pg.PublicationPlan, error) {
	tables, err := pg.SelectedTables(ctx, db, s.spec.Tables.Include, s.spec.Tables.Exclude)
	if err != nil {
		return pg.PublicationPlan{}, fmt.Errorf("blue: %w", err)
	}
	p := pg.PublicationPlan{Name: s.spec.PublicationName(), Tables: tables}
	for _, t := range tables {
		if t.Partitioned {
			p.Partitioned = true
		}
	}
	return p, nil
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
	st, err := pg.ReadPublication(ctx, db, want.Name, s.spec.Name)
	if err != nil {
		return plans.Change{}, err
	}
	if !st.Exists {
		return plans.Change{
			Action:  plans.ActionCreate,
			Summary: fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE ... (%s)", pg.QuoteIdent(want.Name), words.Count(len(want.Tables), "table")),
			Details: []string{want.CreateSQL()},
		}, nil
	}
	if st.AllTables {
		return plans.Change{Action: plans.ActionBlocker, Summary: "publication " + pg.QuoteIdent(want.Name) + " exists FOR ALL TABLES",
			Blockers: []string{publicationAllTablesError(want.Name).Error()}}, nil
	}
	diff := want.Mismatch(st)
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
		Details: append(diff, want.AlterSQL()...),
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
	st, err := pg.ReadPublication(ctx, db, want.Name, s.spec.Name)
	if err != nil {
		return err
	}
	var stmts []string
	switch {
	case !st.Exists:
		stmts = want.CreateMarkedSQL(s.spec.Name)
	case st.AllTables:
		return publicationAllTablesError(want.Name)
	case len(want.Mismatch(st)) == 0:
		env.Record("tables", fmt.Sprint(len(want.Tables)))
		return nil
	case !st.Ours:
		return publicationNotOursError(want.Name)
	default:
		stmts = want.AlterSQL()
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
	return dropPublication(ctx, env, db, s.spec.PublicationName(), pg.OwnerMark(s.spec.Name))
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
