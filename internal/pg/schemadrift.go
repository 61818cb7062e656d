package pg

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DriftKind names one way green's copy of a replicated table differs from
// blue's.
type DriftKind string

const (
	DriftTableMissing      DriftKind = "table missing on green"
	DriftColumnMissing     DriftKind = "column missing on green"
	DriftColumnExtra       DriftKind = "column only on green"
	DriftColumnType        DriftKind = "column type differs"
	DriftColumnDefault     DriftKind = "column default differs"
	DriftColumnNotNull     DriftKind = "NOT NULL differs"
	DriftIndexMissing      DriftKind = "index missing on green"
	DriftIndexExtra        DriftKind = "index only on green"
	DriftIndexDiffers      DriftKind = "index differs"
	DriftConstraintMissing DriftKind = "constraint missing on green"
	DriftConstraintExtra   DriftKind = "constraint only on green"
)

// DriftItem is one difference between blue and green on a replicated table.
// Additive items are safe to apply on green while blue keeps writing (a new
// column, table or index, a default, a NOT NULL that only loosens or that
// blue already enforces): apply runs SQL on green. The others are named with
// SQL a person runs, in the order it says.
type DriftItem struct {
	Table    Table     // blue's table (for a table only on green, green's)
	Kind     DriftKind //
	Object   string    // the column, index or constraint; "" for the table
	Blue     string    // what blue has ("" when absent)
	Green    string    // what green has ("" when absent)
	Additive bool      // apply reconciles it on green
	// Blocks says a column only on green makes blue's rows fail there (NOT
	// NULL without a default); one that takes NULL or its default does not.
	Blocks bool
	SQL    string // for green; empty for DriftTableMissing (a pg_dump of the table creates it)
	Fix    string // what to do, for the items apply does not do
}

// String is the item as a plan line.
func (d DriftItem) String() string {
	what := d.Table.DisplayName()
	if d.Object != "" {
		what += "." + ShowIdent(d.Object)
	}
	s := fmt.Sprintf("%s: %s", what, d.Kind)
	switch {
	case d.Blue != "" && d.Green != "":
		s += fmt.Sprintf(" (blue %s, green %s)", d.Blue, d.Green)
	case d.Blue != "":
		s += " (blue " + d.Blue + ")"
	case d.Green != "":
		s += " (green " + d.Green + ")"
	}
	return s
}

// column is one column of a table as the catalog has it.
type column struct {
	Type      string // format_type, with its collation when not the type's default
	NotNull   bool
	Default   string // pg_get_expr of the default, or the identity / generation clause
	Generated bool   // GENERATED ALWAYS AS (...) STORED: green computes it, blue never sends it
}

// tableShape is what CompareSchemas reads of one table on one side.
type tableShape struct {
	columns     map[string]column
	order       []string          // column names in attnum order
	indexes     map[string]string // name -> definition (pg_get_indexdef, schema-qualified)
	constraints map[string]string // name -> pg_get_constraintdef
}

// CompareSchemas compares blue's and green's definitions of tables (blue's
// selection) and returns the differences, table by table in tables' order.
// Tables green holds that tables does not list are not looked at. Indexes
// that back constraints compare as their constraints.
func CompareSchemas(ctx context.Context, blue, green Querier, tables []Table) ([]DriftItem, error) {
	b, err := readShapes(ctx, blue, tables)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	g, err := readShapes(ctx, green, tables)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	var out []DriftItem
	for _, t := range tables {
		bs, gs := b[t.QualifiedName()], g[t.QualifiedName()]
		if bs == nil {
			continue // dropped on blue since the list was read
		}
		if gs == nil {
			out = append(out, DriftItem{Table: t, Kind: DriftTableMissing, Additive: true})
			continue
		}
		out = append(out, compareTable(t, bs, gs)...)
	}
	return out, nil
}

func compareTable(t Table, b, g *tableShape) []DriftItem {
	var out []DriftItem
	alter := "ALTER TABLE " + t.Ident() + " "
	for _, name := range b.order {
		bc := b.columns[name]
		gc, ok := g.columns[name]
		col := QuoteIdent(name)
		if !ok {
			d := DriftItem{Table: t, Kind: DriftColumnMissing, Object: name, Blue: bc.Type, Additive: !bc.Generated}
			d.SQL = alter + "ADD COLUMN " + col + " " + bc.Type
			if bc.Default != "" {
				d.SQL += " " + defaultClause(bc)
			}
			// Without a default, NOT NULL would fail on green's existing
			// rows; the rows blue sends carry the values.
			if bc.NotNull && bc.Default != "" {
				d.SQL += " NOT NULL"
			}
			switch {
			case bc.Generated:
				d.Fix = "add the generated column on green yourself (" + d.SQL + ")"
			case isIdentity(bc.Default) || strings.Contains(bc.Default, "("):
				// An identity, a sequence or a function fills green's
				// existing rows with green's own values, and blue never
				// sends those rows again: they would differ for good.
				d.Additive = false
				d.Fix = "its default (" + bc.Default + ") would give green's existing rows other values than blue's: add the column on green (" + d.SQL +
					"), then copy its values from blue for the existing rows (or roll the table back and apply again to copy it anew)"
			}
			out = append(out, d)
			continue
		}
		if bc.Type != gc.Type {
			out = append(out, DriftItem{Table: t, Kind: DriftColumnType, Object: name, Blue: bc.Type, Green: gc.Type,
				SQL: alter + "ALTER COLUMN " + col + " TYPE " + bc.Type,
				Fix: "run the same ALTER COLUMN ... TYPE on green (it rewrites the table; pgshift does not do it for you): when blue's type is wider, on green now; when narrower, on green before blue's rows need it"})
		}
		if bc.Default != gc.Default {
			d := DriftItem{Table: t, Kind: DriftColumnDefault, Object: name, Blue: orNone(bc.Default), Green: orNone(gc.Default)}
			switch {
			case bc.Generated || gc.Generated || isIdentity(bc.Default) || isIdentity(gc.Default):
				d.Fix = "make green's column the same as blue's by hand (identity and generated columns are not changed by pgshift)"
			case bc.Default == "":
				d.Additive, d.SQL = true, alter+"ALTER COLUMN "+col+" DROP DEFAULT"
			default:
				d.Additive, d.SQL = true, alter+"ALTER COLUMN "+col+" SET DEFAULT "+bc.Default
			}
			out = append(out, d)
		}
		if bc.NotNull != gc.NotNull {
			d := DriftItem{Table: t, Kind: DriftColumnNotNull, Object: name, Blue: nullability(bc.NotNull), Green: nullability(gc.NotNull), Additive: true}
			if bc.NotNull {
				// Blue enforces it, so every row green holds or receives
				// satisfies it.
				d.SQL = alter + "ALTER COLUMN " + col + " SET NOT NULL"
			} else {
				d.SQL = alter + "ALTER COLUMN " + col + " DROP NOT NULL"
			}
			out = append(out, d)
		}
	}
	for _, name := range g.order {
		if _, ok := b.columns[name]; ok {
			continue
		}
		gc := g.columns[name]
		d := DriftItem{Table: t, Kind: DriftColumnExtra, Object: name, Green: gc.Type,
			SQL: alter + "DROP COLUMN " + QuoteIdent(name)}
		if gc.NotNull && gc.Default == "" {
			d.Blocks = true
			d.Fix = "blue no longer has this column and green requires a value in it, so rows from blue fail on green: drop the column on green now (" + d.SQL + ")"
		} else {
			d.Fix = "blue no longer has this column; green fills it with its default: drop it on green (" + d.SQL + ") now or after the cutover"
		}
		out = append(out, d)
	}
	out = append(out, compareNamed(t, b.indexes, g.indexes, DriftIndexMissing, DriftIndexExtra, DriftIndexDiffers,
		func(name, def string) (string, bool) { return concurrently(def), true },
		func(name string) string { return "DROP INDEX " + pgx.Identifier{t.Schema, name}.Sanitize() })...)
	out = append(out, compareNamed(t, b.constraints, g.constraints, DriftConstraintMissing, DriftConstraintExtra, DriftConstraintMissing,
		func(name, def string) (string, bool) {
			return alter + "ADD CONSTRAINT " + QuoteIdent(name) + " " + def, false
		},
		func(name string) string { return alter + "DROP CONSTRAINT " + QuoteIdent(name) })...)
	return out
}

// compareNamed compares indexes or constraints by name. create gives the
// SQL that makes blue's on green and whether apply may run it.
func compareNamed(t Table, b, g map[string]string, missing, extra, differs DriftKind,
	create func(name, def string) (string, bool), drop func(name string) string) []DriftItem {
	var out []DriftItem
	for _, name := range sortedNames(b) {
		def, gdef := b[name], g[name]
		switch {
		case gdef == "":
			sql, additive := create(name, def)
			d := DriftItem{Table: t, Kind: missing, Object: name, Blue: def, SQL: sql, Additive: additive}
			if !additive {
				d.Fix = "blue's rows satisfy it, but adding it on green checks every row and may lock the table: run " + sql + " on green when convenient"
			}
			out = append(out, d)
		case gdef != def:
			sql, _ := create(name, def)
			out = append(out, DriftItem{Table: t, Kind: differs, Object: name, Blue: def, Green: gdef,
				SQL: drop(name) + "; " + sql, Fix: "recreate it on green like blue's: " + drop(name) + "; then " + sql})
		}
	}
	for _, name := range sortedNames(g) {
		if b[name] == "" {
			out = append(out, DriftItem{Table: t, Kind: extra, Object: name, Green: g[name], SQL: drop(name),
				Fix: "blue no longer has it: drop it on green (" + drop(name) + "); a unique one can make rows from blue fail"})
		}
	}
	return out
}

// concurrently turns blue's CREATE [UNIQUE] INDEX into one that does not
// block writes on green. The definition comes from pg_get_indexdef.
func concurrently(def string) string {
	for _, p := range []string{"CREATE UNIQUE INDEX ", "CREATE INDEX "} {
		if strings.HasPrefix(def, p) {
			return p + "CONCURRENTLY IF NOT EXISTS " + def[len(p):]
		}
	}
	return def
}

func defaultClause(c column) string {
	if isIdentity(c.Default) || c.Generated {
		return c.Default
	}
	return "DEFAULT " + c.Default
}

func isIdentity(d string) bool { return strings.HasPrefix(d, "GENERATED ") }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func nullability(notNull bool) string {
	if notNull {
		return "NOT NULL"
	}
	return "nullable"
}

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The three catalog reads take the tables as two parallel text arrays
// (schemas, names), so no identifier is ever pasted into SQL.
const shapeColumnsSQL = `
SELECT n.nspname, c.relname, a.attname,
       format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                 THEN ' COLLATE ' || quote_ident(co.collname) ELSE '' END,
       a.attnotnull,
       CASE WHEN a.attidentity = 'a' THEN 'GENERATED ALWAYS AS IDENTITY'
            WHEN a.attidentity = 'd' THEN 'GENERATED BY DEFAULT AS IDENTITY'
            WHEN a.attgenerated = 's' THEN 'GENERATED ALWAYS AS (' || pg_get_expr(d.adbin, d.adrelid) || ') STORED'
            ELSE coalesce(pg_get_expr(d.adbin, d.adrelid), '') END,
       a.attgenerated <> ''
  FROM unnest($1::text[], $2::text[]) AS w(s, r)
  JOIN pg_namespace n ON n.nspname = w.s
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.r AND c.relkind IN ('r', 'p')
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 ORDER BY 1, 2, a.attnum`

const shapeIndexesSQL = `
SELECT n.nspname, c.relname, i.relname, pg_get_indexdef(i.oid)
  FROM unnest($1::text[], $2::text[]) AS w(s, r)
  JOIN pg_namespace n ON n.nspname = w.s
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.r
  JOIN pg_index x ON x.indrelid = c.oid
  JOIN pg_class i ON i.oid = x.indexrelid
 WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.oid AND k.conrelid = c.oid)`

const shapeConstraintsSQL = `
SELECT n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)
  FROM unnest($1::text[], $2::text[]) AS w(s, r)
  JOIN pg_namespace n ON n.nspname = w.s
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.r
  JOIN pg_constraint k ON k.conrelid = c.oid
 WHERE k.contype IN ('p', 'u', 'c', 'f', 'x') AND k.conparentid = 0`

func readShapes(ctx context.Context, db Querier, tables []Table) (map[string]*tableShape, error) {
	schemas, names := make([]string, len(tables)), make([]string, len(tables))
	for i, t := range tables {
		schemas[i], names[i] = t.Schema, t.Name
	}
	out := map[string]*tableShape{}
	shape := func(schema, name string) *tableShape {
		k := schema + "." + name
		if out[k] == nil {
			out[k] = &tableShape{columns: map[string]column{}, indexes: map[string]string{}, constraints: map[string]string{}}
		}
		return out[k]
	}
	rows, err := db.Query(ctx, shapeColumnsSQL, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	for rows.Next() {
		var schema, rel, name string
		var c column
		if err := rows.Scan(&schema, &rel, &name, &c.Type, &c.NotNull, &c.Default, &c.Generated); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns: %w", err)
		}
		s := shape(schema, rel)
		s.columns[name] = c
		s.order = append(s.order, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	for _, q := range []struct {
		sql  string
		into func(*tableShape) map[string]string
	}{
		{shapeIndexesSQL, func(s *tableShape) map[string]string { return s.indexes }},
		{shapeConstraintsSQL, func(s *tableShape) map[string]string { return s.constraints }},
	} {
		rows, err := db.Query(ctx, q.sql, schemas, names)
		if err != nil {
			return nil, fmt.Errorf("read indexes and constraints: %w", err)
		}
		for rows.Next() {
			var schema, rel, name, def string
			if err := rows.Scan(&schema, &rel, &name, &def); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read indexes and constraints: %w", err)
			}
			if s := out[schema+"."+rel]; s != nil {
				q.into(s)[name] = def
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read indexes and constraints: %w", err)
		}
	}
	return out, nil
}

// AdditiveDrift is the part of drift apply reconciles on green.
func AdditiveDrift(items []DriftItem) (additive, other []DriftItem) {
	for _, d := range items {
		if d.Additive {
			additive = append(additive, d)
		} else {
			other = append(other, d)
		}
	}
	return additive, other
}
