package snapcopy

import (
	"fmt"
	"sort"
)

// Part is one unit of copy work: a whole table, or a range of its heap
// blocks [FromBlock, ToBlock). The first part of a split table has no lower
// bound and the last no upper bound, so rows in blocks added after the
// inventory are still copied.
type Part struct {
	Table     *Table
	Index     int   // 0-based within the table
	Of        int   // parts of the table; 1 means the whole table
	FromBlock int64 // inclusive; ignored for the first part
	ToBlock   int64 // exclusive; ignored for the last part
	Bytes     int64 // estimated share of the table's bytes, for ordering and ETA
}

// Split reports whether the part covers a block range rather than the whole table.
func (p *Part) Split() bool { return p.Of > 1 }

// String names the part for messages: "public.t" or "public.t part 2/4 (blocks 100-200)".
func (p *Part) String() string {
	if !p.Split() {
		return p.Table.Source.String()
	}
	from, to := fmt.Sprint(p.FromBlock), fmt.Sprint(p.ToBlock)
	if p.Index == 0 {
		from = "0"
	}
	if p.Index == p.Of-1 {
		to = "end"
	}
	return fmt.Sprintf("%s part %d/%d (blocks %s-%s)", p.Table.Source, p.Index+1, p.Of, from, to)
}

// PlanOptions shape the copy plan.
type PlanOptions struct {
	// SplitBytes: tables larger than this are split into parts of about this
	// size. 0 never splits.
	SplitBytes int64
	// Workers is the number of copy workers.
	Workers int
	// SourceMajor is blue's major version. Before 14, a ctid range is not an
	// index-like TID range scan but a sequential scan with a filter: every part
	// reads the whole heap. There, a table gets at most Workers parts, so that
	// the extra reads buy parallelism and nothing else.
	SourceMajor int
}

// PlanParts turns tables into parts, largest first (ties by name, so the
// plan is stable). Big tables are split so that one of them can keep every
// worker busy.
func PlanParts(tables []Table, opt PlanOptions) []Part {
	var parts []Part
	for i := range tables {
		t := &tables[i]
		n := partsFor(t, opt)
		if n <= 1 {
			parts = append(parts, Part{Table: t, Of: 1, Bytes: t.Bytes})
			continue
		}
		for k := 0; k < n; k++ {
			parts = append(parts, Part{
				Table:     t,
				Index:     k,
				Of:        n,
				FromBlock: t.Pages * int64(k) / int64(n),
				ToBlock:   t.Pages * int64(k+1) / int64(n),
				Bytes:     t.Bytes / int64(n),
			})
		}
	}
	sort.SliceStable(parts, func(i, j int) bool {
		a, b := parts[i], parts[j]
		if a.Bytes != b.Bytes {
			return a.Bytes > b.Bytes
		}
		if a.Table.Source != b.Table.Source {
			return a.Table.Source.String() < b.Table.Source.String()
		}
		return a.Index < b.Index
	})
	return parts
}

func partsFor(t *Table, opt PlanOptions) int {
	if opt.SplitBytes <= 0 || t.Bytes <= opt.SplitBytes || t.Pages < 2 {
		return 1
	}
	n := int((t.Bytes + opt.SplitBytes - 1) / opt.SplitBytes)
	if opt.SourceMajor > 0 && opt.SourceMajor < 14 && opt.Workers > 0 && n > opt.Workers {
		n = opt.Workers
	}
	if int64(n) > t.Pages {
		n = int(t.Pages)
	}
	return n
}

// copyOutSQL is the COPY TO statement that reads one part on blue.
func (p *Part) copyOutSQL(binary bool) string {
	format := ""
	if binary {
		format = " (FORMAT binary)"
	}
	t := p.Table
	if !p.Split() {
		// COPY of a table reads only that table's own rows (never its
		// partitions or children), straight from the heap.
		return fmt.Sprintf("COPY %s (%s) TO STDOUT%s", t.Source.Ident(), t.columnList(), format)
	}
	var where string
	switch {
	case p.Index == 0:
		where = fmt.Sprintf("ctid < '(%d,0)'::tid", p.ToBlock)
	case p.Index == p.Of-1:
		where = fmt.Sprintf("ctid >= '(%d,0)'::tid", p.FromBlock)
	default:
		where = fmt.Sprintf("ctid >= '(%d,0)'::tid AND ctid < '(%d,0)'::tid", p.FromBlock, p.ToBlock)
	}
	return fmt.Sprintf("COPY (SELECT %s FROM ONLY %s WHERE %s) TO STDOUT%s", t.columnList(), t.Source.Ident(), where, format)
}

// copyInSQL is the COPY FROM statement that writes one part on green.
func (p *Part) copyInSQL(binary bool) string {
	format := ""
	if binary {
		format = " (FORMAT binary)"
	}
	return fmt.Sprintf("COPY %s (%s) FROM STDIN%s", p.Table.Target.Ident(), p.Table.columnList(), format)
}
