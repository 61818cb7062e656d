package pg

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// OwnerMark marks a publication pgshift created, so that rollback and
// cleanup never drop a publication the user made.
func OwnerMark(specName string) string { return "pgshift: created for " + specName }

// Publication is a publication on blue as the catalogs show it.
type Publication struct {
	Exists     bool
	AllTables  bool
	AllActions bool // publishes insert, update, delete and truncate
	ViaRoot    bool
	Ours       bool     // carries OwnerMark
	Tables     []string // schema.table, sorted
	Filtered   []string // tables with a row filter or column list (15+)
	Schemas    int      // FOR TABLES IN SCHEMA entries (15+)
}

func ReadPublication(ctx context.Context, db Querier, name, specName string) (Publication, error) {
	var st Publication
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
	st.Ours = comment == OwnerMark(specName)
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

// PublicationPlan is what the step wants on blue, from the live tables.
type PublicationPlan struct {
	Name        string
	Tables      []Table
	Partitioned bool
}

func (p PublicationPlan) Names() []string {
	out := make([]string, len(p.Tables))
	for i, t := range p.Tables {
		out[i] = t.QualifiedName()
	}
	sort.Strings(out)
	return out
}

func (p PublicationPlan) TableList() string {
	ids := make([]string, len(p.Tables))
	for i, t := range p.Tables {
		ids[i] = t.Ident()
	}
	return strings.Join(ids, ", ")
}

func (p PublicationPlan) WithClause() string {
	w := "publish = 'insert, update, delete, truncate'"
	if p.Partitioned {
		w += ", publish_via_partition_root = true"
	}
	return "WITH (" + w + ")"
}

// createMarkedSQL creates the publication with pgshift's owner mark; run
// in one transaction, so that a crash never leaves a publication that
// rollback would not recognise as pgshift's (and a rerun would refuse).
func (p PublicationPlan) CreateMarkedSQL(specName string) []string {
	return []string{p.CreateSQL(),
		fmt.Sprintf("COMMENT ON PUBLICATION %s IS %s", QuoteIdent(p.Name), QuoteLiteral(OwnerMark(specName)))}
}

func (p PublicationPlan) CreateSQL() string {
	return fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s %s", QuoteIdent(p.Name), p.TableList(), p.WithClause())
}

func (p PublicationPlan) AlterSQL() []string {
	return []string{
		fmt.Sprintf("ALTER PUBLICATION %s SET TABLE %s", QuoteIdent(p.Name), p.TableList()),
		fmt.Sprintf("ALTER PUBLICATION %s SET (%s)", QuoteIdent(p.Name), strings.TrimSuffix(strings.TrimPrefix(p.WithClause(), "WITH ("), ")")),
	}
}

// DiffTables returns the tables to add and to remove to go from have to want.
func DiffTables(have, want []string) (add, remove []string) {
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
func (p PublicationPlan) Mismatch(st Publication) []string {
	var out []string
	add, remove := DiffTables(st.Tables, p.Names())
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
