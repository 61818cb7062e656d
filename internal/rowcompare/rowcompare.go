// Package rowcompare is an independent, row-by-row comparison of tables on
// two PostgreSQL servers, for end-to-end tests. It shares no code with
// pgshift's verify step: each table's rows, ordered by primary key (or by
// their whole text form when there is none), are dumped with
// COPY (SELECT ...) TO STDOUT on both sides, hashed with SHA-256 and
// compared. It reads every row through the client, so it is slow on large
// tables: a test oracle, not a tool.
package rowcompare

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Result is one table's comparison.
type Result struct {
	Table     string // schema.name
	Equal     bool
	BlueRows  int64
	GreenRows int64
	BlueSHA   string // hex SHA-256 of the ordered COPY output
	GreenSHA  string
}

func (r Result) String() string {
	verdict := "equal"
	if !r.Equal {
		verdict = "DIFFERENT"
	}
	return fmt.Sprintf("%s: %s (blue %d rows, green %d rows)", r.Table, verdict, r.BlueRows, r.GreenRows)
}

// settings make COPY's text output the same on both servers for the same
// data.
var settings = []string{
	"SET DateStyle = 'ISO, YMD'",
	"SET IntervalStyle = 'postgres'",
	"SET TimeZone = 'UTC'",
	"SET extra_float_digits = 3",
	"SET bytea_output = 'hex'",
	"SET lc_monetary = 'C'",
	"SET search_path = pg_catalog",
}

// Tables lists the user tables of conn's database that hold rows: plain
// tables and partitioned roots (partitions are read through their root).
func Tables(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `
SELECT n.nspname || '.' || c.relname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
 ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Compare compares each table ("schema.name") on blue and green, reading
// both sides at the same time. Each connection is used by one goroutine.
func Compare(ctx context.Context, blue, green *pgx.Conn, tables []string) ([]Result, error) {
	for _, c := range []*pgx.Conn{blue, green} {
		for _, s := range settings {
			if _, err := c.Exec(ctx, s); err != nil {
				return nil, fmt.Errorf("%s: %w", s, err)
			}
		}
	}
	var out []Result
	for _, name := range tables {
		schema, table, ok := strings.Cut(name, ".")
		if !ok {
			return nil, fmt.Errorf("table %q: want schema.name", name)
		}
		// The query is built from blue's catalog and run on both sides, so
		// both dump the same columns in the same order.
		q, err := dumpQuery(ctx, blue, schema, table)
		if err != nil {
			return nil, err
		}
		r := Result{Table: name}
		var berr, gerr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); r.GreenSHA, r.GreenRows, gerr = dump(ctx, green, q) }()
		r.BlueSHA, r.BlueRows, berr = dump(ctx, blue, q)
		wg.Wait()
		if berr != nil {
			return nil, fmt.Errorf("blue: %s: %w", name, berr)
		}
		if gerr != nil {
			return nil, fmt.Errorf("green: %s: %w", name, gerr)
		}
		r.Equal = r.BlueSHA == r.GreenSHA && r.BlueRows == r.GreenRows
		out = append(out, r)
	}
	return out, nil
}

// dumpQuery selects the table's columns ordered by primary key (each key
// column's place read with ORDINALITY: int2vector's array form starts at
// subscript 0, so array_position gave the first key column 0, taken for no
// key, and a two-column key sorted by its second column alone), collatable
// key columns in byte order (COLLATE "C") so that both servers sort alike
// whatever their collation libraries; with no primary key, by the row's
// text form in byte order.
func dumpQuery(ctx context.Context, conn *pgx.Conn, schema, table string) (string, error) {
	ident := pgx.Identifier{schema, table}.Sanitize()
	rows, err := conn.Query(ctx, `
SELECT a.attname::text, t.typcollation <> 0,
       coalesce((SELECT k.ord FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) WHERE k.attnum = a.attnum), 0)::int
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`, ident)
	if err != nil {
		return "", fmt.Errorf("blue: columns of %s.%s: %w", schema, table, err)
	}
	type col struct {
		name       string
		collatable bool
		keyPos     int
	}
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.name, &c.collatable, &c.keyPos); err != nil {
			rows.Close()
			return "", err
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("blue: columns of %s.%s: %w", schema, table, err)
	}
	if len(cols) == 0 {
		// A table without columns (a missing one failed the regclass cast
		// above): its rows are all alike, and COPY writes one empty line
		// for each, so the count is what compares.
		return "COPY (SELECT FROM " + ident + " t) TO STDOUT", nil
	}
	var sel []string
	key := map[int]string{}
	for _, c := range cols {
		ref := "t." + pgx.Identifier{c.name}.Sanitize()
		sel = append(sel, ref)
		if c.keyPos > 0 {
			if c.collatable {
				ref += ` COLLATE "C"`
			}
			key[c.keyPos] = ref
		}
	}
	var order []string
	for i := 1; i <= len(key); i++ {
		order = append(order, key[i])
	}
	if len(order) == 0 {
		order = []string{`(ROW(` + strings.Join(sel, ", ") + `)::text) COLLATE "C"`}
	}
	return "COPY (SELECT " + strings.Join(sel, ", ") + " FROM " + ident + " t ORDER BY " +
		strings.Join(order, ", ") + ") TO STDOUT", nil
}

// lineCounter hashes what COPY writes and counts its rows (text COPY ends
// every row with a newline and escapes newlines inside values).
type lineCounter struct {
	h     hash.Hash
	lines int64
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.lines += int64(bytes.Count(p, []byte{'\n'}))
	return l.h.Write(p)
}

func dump(ctx context.Context, conn *pgx.Conn, q string) (string, int64, error) {
	lc := &lineCounter{h: sha256.New()}
	if _, err := conn.PgConn().CopyTo(ctx, lc, q); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(lc.h.Sum(nil)), lc.lines, nil
}
