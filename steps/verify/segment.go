package verify

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Mode is what verification compares.
type Mode string

const (
	ModeCount    Mode = "count"    // row counts
	ModeChecksum Mode = "checksum" // an order-independent hash of every row
)

// segment is the unit of work: a primary-key range of an ordered table, or
// (some of) the hash buckets of a bucketed one.
type segment struct {
	info    *tableInfo
	lo, hi  []string // key bounds as text, lo inclusive, hi exclusive; nil: open
	buckets []int64  // bucketed tables: only these buckets (nil: all)
}

// from is the FROM item: ONLY for a plain table, so that legacy inheritance
// children (tables of their own) are not counted twice; a partitioned root
// is read as a whole, which covers every partition.
func (s segment) from() string {
	if s.info.Partitioned {
		return s.info.ident() + " t"
	}
	return "ONLY " + s.info.ident() + " t"
}

func colRef(name string) string { return "t." + pgx.Identifier{name}.Sanitize() }

func colList(cols []column) string {
	refs := make([]string, len(cols))
	for i, c := range cols {
		refs[i] = colRef(c.Name)
	}
	return strings.Join(refs, ", ")
}

// textHash is the 64-bit hash of an expression's text form. COLLATE "C"
// keeps hashtextextended on the plain byte hash whatever the database's
// default collation.
func textHash(expr string) string {
	return "pg_catalog.hashtextextended((" + expr + ")::text COLLATE \"C\", 0)"
}

// rowHash hashes every compared column, in blue's order, by name.
func (t *tableInfo) rowHash() string { return textHash("ROW(" + colList(t.Columns) + ")") }

// valueHash is what a row contributes to a segment's sum: its row hash in
// checksum mode, nothing in count mode.
func (t *tableInfo) valueHash(mode Mode) string {
	if mode == ModeChecksum {
		return t.rowHash()
	}
	return "0::int8"
}

// bucketExpr assigns a row to a hash bucket: by key hash when keyed, by row
// hash otherwise.
func (t *tableInfo) bucketExpr() string {
	if t.Buckets <= 1 {
		return "0::int8"
	}
	mask := fmt.Sprintf("%d", t.Buckets-1)
	if len(t.KeyCols) > 0 {
		return "(" + textHash("ROW("+colList(t.KeyCols)+")") + " & " + mask + ")"
	}
	return "(" + t.rowHash() + " & " + mask + ")"
}

// keyTuple is "t.a" or "(t.a, t.b)".
func (t *tableInfo) keyTuple() string {
	if len(t.KeyCols) == 1 {
		return colRef(t.KeyCols[0].Name)
	}
	return "(" + colList(t.KeyCols) + ")"
}

// boundTuple is the parameters of a key bound, cast from text to the key
// types: "$1::text::integer" or "($1::text::integer, $2::text::text)".
func (t *tableInfo) boundTuple(firstArg int) string {
	ps := make([]string, len(t.KeyCols))
	for i, c := range t.KeyCols {
		ps[i] = fmt.Sprintf("$%d::text::%s", firstArg+i, c.Type)
	}
	if len(ps) == 1 {
		return ps[0]
	}
	return "(" + strings.Join(ps, ", ") + ")"
}

// where is the segment's predicate (without WHERE) and its arguments, with
// parameters numbered from firstArg; "" when it covers the whole table.
func (s segment) where(firstArg int) (string, []any) {
	var conds []string
	var args []any
	if s.info.Ordered {
		if s.lo != nil {
			conds = append(conds, s.info.keyTuple()+" >= "+s.info.boundTuple(firstArg+len(args)))
			for _, v := range s.lo {
				args = append(args, v)
			}
		}
		if s.hi != nil {
			conds = append(conds, s.info.keyTuple()+" < "+s.info.boundTuple(firstArg+len(args)))
			for _, v := range s.hi {
				args = append(args, v)
			}
		}
	} else if s.buckets != nil {
		conds = append(conds, fmt.Sprintf("%s = ANY($%d::int8[])", s.info.bucketExpr(), firstArg+len(args)))
		args = append(args, s.buckets)
	}
	return strings.Join(conds, " AND "), args
}

func whereClause(pred string) string {
	if pred == "" {
		return ""
	}
	return " WHERE " + pred
}

// aggregateSQL returns one row per bucket: bucket, count(*), sum of row
// hashes as text (numeric: no overflow). Ordered segments are bucket 0.
func (s segment) aggregateSQL(mode Mode) (string, []any) {
	pred, args := s.where(1)
	t := s.info
	if t.Ordered || t.Buckets <= 1 {
		return "SELECT 0::int8, count(*), coalesce(sum(" + t.valueHash(mode) + "), 0)::text FROM " +
			s.from() + whereClause(pred), args
	}
	return "SELECT b, count(*), coalesce(sum(h), 0)::text FROM (SELECT " + t.bucketExpr() + " AS b, " +
		t.valueHash(mode) + " AS h FROM " + s.from() + whereClause(pred) + ") s GROUP BY b", args
}

// rowsSQL lists a segment's rows for narrowing. Keyed tables: the key
// columns as text, then the row's hash (0 in count mode). Unkeyed tables: a
// row is known by its hash, so: hash, and how many rows have it.
func (s segment) rowsSQL(mode Mode) (string, []any) {
	pred, args := s.where(1)
	t := s.info
	if len(t.KeyCols) > 0 {
		return "SELECT " + keyTexts(t) + ", " + t.valueHash(mode) + " FROM " + s.from() + whereClause(pred), args
	}
	return "SELECT h, count(*) FROM (SELECT " + t.rowHash() + " AS h FROM " + s.from() + whereClause(pred) +
		") s GROUP BY h", args
}

// lookupSQL re-reads given rows: keyed tables by key (ids are the key texts),
// unkeyed ones by row hash within the segment.
func (s segment) lookupSQL(mode Mode, ids []string) (string, []any, error) {
	t := s.info
	if len(t.KeyCols) > 0 {
		cols := make([][]string, len(t.KeyCols))
		for _, id := range ids {
			parts := splitID(id)
			if len(parts) != len(cols) {
				return "", nil, fmt.Errorf("internal: key %q has %d parts, want %d", id, len(parts), len(cols))
			}
			for i, p := range parts {
				cols[i] = append(cols[i], p)
			}
		}
		var arrays, names, on []string
		var args []any
		for i, c := range t.KeyCols {
			arrays = append(arrays, fmt.Sprintf("$%d::text[]", i+1))
			names = append(names, fmt.Sprintf("c%d", i+1))
			on = append(on, fmt.Sprintf("%s = k.c%d::%s", colRef(c.Name), i+1, c.Type))
			args = append(args, cols[i])
		}
		q := "SELECT " + keyTexts(t) + ", " + t.valueHash(mode) + " FROM " + s.from() +
			" JOIN unnest(" + strings.Join(arrays, ", ") + ") AS k(" + strings.Join(names, ", ") + ") ON " +
			strings.Join(on, " AND ")
		return q, args, nil
	}
	hashes := make([]int64, 0, len(ids))
	for _, id := range ids {
		var h int64
		if _, err := fmt.Sscan(id, &h); err != nil {
			return "", nil, fmt.Errorf("internal: row hash %q: %w", id, err)
		}
		hashes = append(hashes, h)
	}
	pred, args := s.where(2)
	q := "SELECT h, count(*) FROM (SELECT " + t.rowHash() + " AS h FROM " + s.from() + whereClause(pred) +
		") s WHERE h = ANY($1::int8[]) GROUP BY h"
	return q, append([]any{hashes}, args...), nil
}

func keyTexts(t *tableInfo) string {
	parts := make([]string, len(t.KeyCols))
	for i, c := range t.KeyCols {
		parts[i] = colRef(c.Name) + "::text"
	}
	return strings.Join(parts, ", ")
}

// A row id is its key texts joined by NUL (which no text value holds), or,
// for unkeyed tables, its row hash in decimal.
func joinID(parts []string) string { return strings.Join(parts, "\x00") }
func splitID(id string) []string   { return strings.Split(id, "\x00") }

// String describes the segment for a report.
func (s segment) String() string {
	t := s.info
	if !t.Ordered {
		by := "row"
		if len(t.KeyCols) > 0 {
			by = "primary key"
		}
		if t.Buckets <= 1 {
			return "whole table"
		}
		switch len(s.buckets) {
		case 0:
			return fmt.Sprintf("%d hash buckets (by %s)", t.Buckets, by)
		case 1:
			return fmt.Sprintf("hash bucket %d of %d (by %s)", s.buckets[0], t.Buckets, by)
		}
		nums := make([]string, len(s.buckets))
		for i, b := range s.buckets {
			nums[i] = fmt.Sprint(b)
		}
		return fmt.Sprintf("hash buckets %s of %d (by %s)", strings.Join(nums, ", "), t.Buckets, by)
	}
	names := make([]string, len(t.KeyCols))
	for i, c := range t.KeyCols {
		names[i] = c.Name
	}
	key := strings.Join(names, ", ")
	tuple := func(v []string) string { return strings.Join(v, ", ") }
	if len(names) > 1 {
		key = "(" + key + ")"
		tuple = func(v []string) string { return "(" + strings.Join(v, ", ") + ")" }
	}
	switch {
	case s.lo == nil && s.hi == nil:
		return "whole table"
	case s.lo == nil:
		return key + " < " + tuple(s.hi)
	case s.hi == nil:
		return key + " >= " + tuple(s.lo)
	}
	return key + " in [" + tuple(s.lo) + ", " + tuple(s.hi) + ")"
}

// describeKey renders a row id for a report: "id=42", "(a, b)=(1, x)", or
// "row hash 123" for unkeyed tables.
func (t *tableInfo) describeKey(id string) string {
	if t.NoColumns {
		return "rows (the table has no columns)"
	}
	if len(t.KeyCols) == 0 {
		return "row with hash " + id
	}
	parts := splitID(id)
	if len(parts) == 1 {
		return t.KeyCols[0].Name + "=" + parts[0]
	}
	names := make([]string, len(t.KeyCols))
	for i, c := range t.KeyCols {
		names[i] = c.Name
	}
	return "(" + strings.Join(names, ", ") + ")=(" + strings.Join(parts, ", ") + ")"
}
