package snapcopy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pg"
)

// Relation names a table that replicates: an ordinary table or the root of
// a partitioned table. Its rows land in the table of the same name on green.
type Relation struct {
	Schema string
	Name   string
}

// Ident is the quoted identifier.
func (r Relation) Ident() string { return pgx.Identifier{r.Schema, r.Name}.Sanitize() }

// String is "schema.name", unquoted, for messages.
func (r Relation) String() string { return r.Schema + "." + r.Name }

// Column is one column the copy carries.
type Column struct {
	Name string
	Type string // format_type on blue, for messages
}

// Format is the COPY format of a table.
type Format string

const (
	FormatAuto   Format = ""       // binary when every column allows it, text otherwise
	FormatText   Format = "text"   // always text
	FormatBinary Format = "binary" // binary where allowed (same as auto)
)

// Table is one source table whose heap holds rows: a plain table, or one
// leaf partition of a partitioned table. Its rows go to Target on green.
type Table struct {
	Source  Relation // on blue: the plain table or the leaf partition
	Target  Relation // on green: the same table, or the partitioned root (which routes rows)
	Bytes   int64    // heap and TOAST on blue, for ordering and progress
	Pages   int64    // heap blocks on blue when inventoried, for splitting
	Columns []Column // in blue's order, generated columns left out
	Binary  bool     // every column's type has a builtin binary form on both sides
	// TextReason says why Binary is false (the first column that forbids it).
	TextReason string
}

// columnList is the quoted, comma-separated column list.
func (t *Table) columnList() string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	return strings.Join(names, ", ")
}

// leavesSQL lists the heap-holding relations of a table: itself when it is a
// plain table, its leaf partitions when it is partitioned.
const leavesSQL = `
WITH r AS (
  SELECT c.oid, c.relkind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
), leaf AS (
  SELECT r.oid FROM r WHERE r.relkind = 'r'
  UNION ALL
  SELECT t.relid FROM r, pg_partition_tree(r.oid) t
   WHERE r.relkind = 'p' AND t.isleaf
)
SELECT n.nspname, c.relname, c.relkind::text,
       pg_table_size(c.oid),
       pg_relation_size(c.oid) / current_setting('block_size')::bigint
  FROM leaf JOIN pg_class c ON c.oid = leaf.oid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' -- foreign partitions hold no rows here, and replication skips them too
 ORDER BY 1, 2`

// columnsSQL lists a table's live columns with what decides the COPY
// format: a type is binary-safe across majors when it is builtin (an oid
// below FirstNormalObjectId, 16384) and it and its element type have binary
// send and receive functions. User types (enums, composites, domains,
// extension types, arrays of them) travel as text.
const columnsSQL = `
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '',
       a.atttypid < 16384
         AND t.typsend <> 0 AND t.typreceive <> 0
         AND (t.typelem = 0 OR (a.atttypid < 16384 AND e.typsend <> 0 AND e.typreceive <> 0))
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type e ON e.oid = t.typelem
 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`

type columnInfo struct {
	name, typ        string
	generated, bsafe bool
}

func readColumns(ctx context.Context, db pg.Querier, r Relation) ([]columnInfo, error) {
	rows, err := db.Query(ctx, columnsSQL, r.Schema, r.Name)
	if err != nil {
		return nil, err
	}
	var cols []columnInfo
	for rows.Next() {
		var c columnInfo
		if err := rows.Scan(&c.name, &c.typ, &c.generated, &c.bsafe); err != nil {
			rows.Close()
			return nil, err
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// Inventory describes every heap the copy reads for the given relations:
// sizes and block counts on blue (the planner splits by blocks), the columns
// to carry (blue's non-generated columns, which green must have as ordinary
// columns; green's order does not matter) and the COPY format. blue and
// green are ordinary connections.
func Inventory(ctx context.Context, blue, green pg.Querier, rels []Relation) ([]Table, error) {
	var out []Table
	for _, rel := range rels {
		bcols, err := readColumns(ctx, blue, rel)
		if err != nil {
			return nil, fmt.Errorf("blue: read columns of %s: %w", rel, err)
		}
		if len(bcols) == 0 {
			return nil, fmt.Errorf("blue: table %s not found (or has no columns): check the table selection", rel)
		}
		gcols, err := readColumns(ctx, green, rel)
		if err != nil {
			return nil, fmt.Errorf("green: read columns of %s: %w", rel, err)
		}
		if len(gcols) == 0 {
			return nil, fmt.Errorf("green: table %s not found: restore the schema (pre-data section) on green before copying", rel)
		}
		onGreen := map[string]columnInfo{}
		for _, c := range gcols {
			onGreen[c.name] = c
		}
		var cols []Column
		binary, reason := true, ""
		for _, c := range bcols {
			if c.generated {
				continue // computed again on green
			}
			g, ok := onGreen[c.name]
			if !ok {
				return nil, fmt.Errorf("green: table %s has no column %q (%s on blue): make green's schema match blue's", rel, c.name, c.typ)
			}
			if g.generated {
				return nil, fmt.Errorf("green: column %q of %s is generated there but not on blue: make green's schema match blue's", c.name, rel)
			}
			if binary {
				switch {
				case !c.bsafe || !g.bsafe:
					binary, reason = false, fmt.Sprintf("column %q has type %s, not a builtin type with a binary form", c.name, c.typ)
				case c.typ != g.typ:
					binary, reason = false, fmt.Sprintf("column %q is %s on blue but %s on green", c.name, c.typ, g.typ)
				}
			}
			cols = append(cols, Column{Name: c.name, Type: c.typ})
		}
		if len(cols) == 0 {
			return nil, fmt.Errorf("blue: table %s has only generated columns: nothing to copy", rel)
		}
		leaves, err := readLeaves(ctx, blue, rel)
		if err != nil {
			return nil, err
		}
		for _, l := range leaves {
			l.Target = rel
			l.Columns = cols
			l.Binary, l.TextReason = binary, reason
			out = append(out, l)
		}
	}
	return out, nil
}

func readLeaves(ctx context.Context, blue pg.Querier, rel Relation) ([]Table, error) {
	rows, err := blue.Query(ctx, leavesSQL, rel.Schema, rel.Name)
	if err != nil {
		return nil, fmt.Errorf("blue: list partitions of %s: %w", rel, err)
	}
	var out []Table
	for rows.Next() {
		var t Table
		var kind string
		if err := rows.Scan(&t.Source.Schema, &t.Source.Name, &kind, &t.Bytes, &t.Pages); err != nil {
			rows.Close()
			return nil, fmt.Errorf("blue: list partitions of %s: %w", rel, err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("blue: list partitions of %s: %w", rel, err)
	}
	if len(out) == 0 {
		var partitioned bool
		err := blue.QueryRow(ctx, `SELECT true FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'p'`, rel.Schema, rel.Name).Scan(&partitioned)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("blue: %s is not a table", rel)
		}
		// A partitioned table without partitions holds no rows.
	}
	return out, nil
}
