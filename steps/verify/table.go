package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Table names one replicated table (or partitioned root: querying the root
// covers every partition) and its primary key, if any.
type Table struct {
	Schema string
	Name   string
	Key    []string // primary key columns in key order; empty: compared as a multiset of rows
}

// String is "schema.name" for messages.
func (t Table) String() string { return t.Schema + "." + t.Name }

func (t Table) ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// column is one compared column as blue defines it.
type column struct {
	Name string
	Type string // format_type(): usable as a cast target
	// Sortable: the type has no collation or a byte-order one, so both sides
	// put its values in the same order whatever their collation libraries.
	Sortable bool
	Integer  bool // int2, int4 or int8
}

// tableInfo is what planning learns about a table from both sides.
type tableInfo struct {
	Table
	Columns     []column
	KeyCols     []column
	Bytes       int64   // heap and TOAST on blue, partitions included
	EstRows     float64 // pg_class.reltuples, partitions included (<= 0 when unknown)
	NoColumns   bool    // CREATE TABLE t (): compared by row count
	Partitioned bool    // a partitioned root: read through the root, which covers every partition
	Ordered     bool    // PK ranges apply (every key column is Sortable)
	Buckets     int64   // hash buckets when not Ordered (power of two)
	Segments    []segment
}

const columnsSQL = `
SELECT a.attname::text,
       pg_catalog.format_type(a.atttypid, a.atttypmod),
       -- Composites and ranges may hold text fields ordered by a collation.
       t.typtype NOT IN ('c', 'r', 'm') AND (t.typcollation = 0 OR a.attcollation IN (
            SELECT c.oid FROM pg_catalog.pg_collation c
             WHERE c.collname IN ('C', 'POSIX') AND c.collnamespace = 'pg_catalog'::regnamespace)),
       a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`

// sizeSQL reads the relkind and sums heap+TOAST size and row estimates over
// a table or, for a partitioned root, its partitions (pg_inherits works on
// every version; legacy inheritance children are tables of their own).
const sizeSQL = `
WITH RECURSIVE root AS (
  SELECT c.oid, c.relkind FROM pg_catalog.pg_class c WHERE c.oid = $1::text::regclass),
tree(oid) AS (
  SELECT oid FROM root
  UNION ALL
  SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent = tree.oid
   WHERE (SELECT relkind FROM root) = 'p')
SELECT (SELECT relkind = 'p' FROM root),
       coalesce(sum(pg_catalog.pg_table_size(r.oid)), 0)::int8,
       coalesce(sum(greatest(r.reltuples, 0)), 0)::float8
  FROM pg_catalog.pg_class r JOIN tree ON tree.oid = r.oid
 WHERE r.relkind = 'r'`

func readColumns(ctx context.Context, s *side, t Table) ([]column, error) {
	rows, err := s.conn.Query(ctx, columnsSQL, t.ident())
	if err != nil {
		return nil, fmt.Errorf("%s: read columns of %s: %w", s.name, t, err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.Name, &c.Type, &c.Sortable, &c.Integer)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: read columns of %s: %w", s.name, t, err)
	}
	return cols, nil
}

// describe reads a table's columns and size on blue and checks that green
// has every column blue has.
func describe(ctx context.Context, blue, green *side, t Table) (*tableInfo, error) {
	cols, err := readColumns(ctx, blue, t)
	if err != nil {
		return nil, err
	}
	gcols, err := readColumns(ctx, green, t)
	if err != nil {
		return nil, fmt.Errorf("%w (is the schema restored on green?)", err)
	}
	onGreen := map[string]bool{}
	for _, c := range gcols {
		onGreen[c.Name] = true
	}
	var missing []string
	for _, c := range cols {
		if !onGreen[c.Name] {
			missing = append(missing, c.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("green: table %s lacks column(s) %s that blue has: restore the same schema on green", t, strings.Join(missing, ", "))
	}
	// A table without columns (CREATE TABLE t ()) still holds rows, all
	// alike: it is compared by row count (see planSegments).
	info := &tableInfo{Table: t, Columns: cols, NoColumns: len(cols) == 0}
	byName := map[string]column{}
	for _, c := range cols {
		byName[c.Name] = c
	}
	info.Ordered = len(t.Key) > 0
	for _, k := range t.Key {
		c, ok := byName[k]
		if !ok {
			return nil, fmt.Errorf("blue: primary key column %q of %s not found", k, t)
		}
		info.KeyCols = append(info.KeyCols, c)
		info.Ordered = info.Ordered && c.Sortable
	}
	if err := blue.conn.QueryRow(ctx, sizeSQL, t.ident()).Scan(&info.Partitioned, &info.Bytes, &info.EstRows); err != nil {
		return nil, fmt.Errorf("blue: read size of %s: %w", t, err)
	}
	return info, nil
}
