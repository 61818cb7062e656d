package pg

import (
	"context"
	"fmt"
	"path"

	"github.com/jackc/pgx/v5"
)

// Table is one relation that replicates: an ordinary table, or the root of a
// partitioned table (published via its root, so rows land in green's own
// partitions whatever their layout).
type Table struct {
	Schema          string
	Name            string
	Partitioned     bool     // relkind 'p': rows live in its partitions
	ReplicaIdentity string   // d (default: the primary key), f (full), i (index), n (nothing)
	PrimaryKey      []string // primary key columns in key order; empty when none
	Bytes           int64    // total size on blue, partitions included
}

// QualifiedName is "schema.table" unquoted, as the spec's globs match it.
func (t Table) QualifiedName() string { return t.Schema + "." + t.Name }

// Ident is the table's quoted identifier for SQL.
func (t Table) Ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// HasReplicaIdentity says whether UPDATE and DELETE can replicate.
func (t Table) HasReplicaIdentity() bool {
	switch t.ReplicaIdentity {
	case "f", "i":
		return true
	case "d":
		return len(t.PrimaryKey) > 0
	}
	return false
}

// listTablesSQL lists user tables that are not partitions (a partition
// replicates through its root), with key columns and sizes.
const listTablesSQL = `
SELECT n.nspname, c.relname, c.relkind = 'p', c.relreplident::text,
       coalesce((SELECT array_agg(a.attname ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = c.oid AND i.indisprimary), '{}'::name[]),
       CASE WHEN c.relkind = 'p'
            THEN coalesce((SELECT sum(pg_total_relation_size(p.relid))::bigint
                             FROM pg_partition_tree(c.oid) p WHERE p.isleaf), 0)
            ELSE pg_total_relation_size(c.oid) END
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND NOT c.relispartition
   AND c.relpersistence = 'p'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_toast%'
   AND n.nspname NOT LIKE 'pg\_temp%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
 ORDER BY 1, 2`

// SelectedTables lists the tables on db that the include globs select and
// the exclude globs do not (tables.include and tables.exclude of the spec;
// no include means every table), ordered by schema and name. Unlogged tables and tables owned by
// extensions are never selected (logical replication does not carry them).
func SelectedTables(ctx context.Context, db Querier, include, exclude []string) ([]Table, error) {
	rows, err := db.Query(ctx, listTablesSQL)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var all []Table
	for rows.Next() {
		var t Table
		if err := rows.Scan(&t.Schema, &t.Name, &t.Partitioned, &t.ReplicaIdentity, &t.PrimaryKey, &t.Bytes); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list tables: %w", err)
		}
		all = append(all, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	if len(include) == 0 {
		include = []string{"*.*"}
	}
	var selected []Table
	for _, t := range all {
		if MatchAny(include, t.QualifiedName()) && !MatchAny(exclude, t.QualifiedName()) {
			selected = append(selected, t)
		}
	}
	return selected, nil
}

// matchAny reports whether name matches one of the globs. The loader has
// already checked that every glob compiles.
func MatchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// DisplayName is the table's name for messages (see DisplayName).
func (t Table) DisplayName() string { return DisplayName(t.Schema, t.Name) }

// ResolveTables finds the tables ("schema.table", as publications and
// subscriptions list them) in db's catalog, so that each is quoted from its
// own schema and name, never from the joined string. Names db does not hold
// are left out.
func ResolveTables(ctx context.Context, db Querier, names []string) ([]Table, error) {
	if len(names) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, `
SELECT n.nspname, c.relname, c.relkind = 'p'
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY ($1::text[])
 ORDER BY 1, 2`, names)
	if err != nil {
		return nil, fmt.Errorf("look up tables %v: %w", names, err)
	}
	var out []Table
	for rows.Next() {
		var t Table
		if err := rows.Scan(&t.Schema, &t.Name, &t.Partitioned); err != nil {
			rows.Close()
			return nil, fmt.Errorf("look up tables: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RowsCountedUpTo is how many rows CountRows counts at most: past it, a
// table is said to hold "more than" that many.
const RowsCountedUpTo = 100000

// FilledTable is a table that holds rows, with their count (at most
// RowsCountedUpTo+1: More says the count stopped there).
type FilledTable struct {
	Table
	Rows int64
	More bool
}

// RowsText is "5000 rows", or "more than 100000 rows".
func (f FilledTable) RowsText() string {
	if f.More {
		return fmt.Sprintf("more than %d rows", RowsCountedUpTo)
	}
	if f.Rows == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", f.Rows)
}

// TablesWithRows lists the tables of tables that hold at least one row on
// db, each with its row count up to RowsCountedUpTo (a partitioned table
// counts its partitions' rows). An empty table costs one probe; a
// full one reads at most RowsCountedUpTo+1 rows.
func TablesWithRows(ctx context.Context, db Querier, tables []Table) ([]FilledTable, error) {
	var out []FilledTable
	for _, t := range tables {
		var has bool
		if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t.Ident()+")").Scan(&has); err != nil {
			return nil, fmt.Errorf("read %s: %w", t.DisplayName(), err)
		}
		if !has {
			continue
		}
		f := FilledTable{Table: t}
		q := fmt.Sprintf("SELECT count(*) FROM (SELECT 1 FROM %s LIMIT %d) x", t.Ident(), RowsCountedUpTo+1)
		if err := db.QueryRow(ctx, q).Scan(&f.Rows); err != nil {
			return nil, fmt.Errorf("count rows of %s: %w", t.DisplayName(), err)
		}
		f.More = f.Rows > RowsCountedUpTo
		out = append(out, f)
	}
	return out, nil
}
