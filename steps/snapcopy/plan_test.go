package snapcopy

import (
	"strings"
	"testing"
)

func tbl(name string, bytes, pages int64) Table {
	r := Relation{Schema: "public", Name: name}
	return Table{Source: r, Target: r, Bytes: bytes, Pages: pages, Columns: []Column{{Name: "id"}}}
}

func TestPlanPartsSplitsLargestFirst(t *testing.T) {
	tables := []Table{tbl("small", 10, 2), tbl("big", 1000, 100), tbl("mid", 300, 30)}
	parts := PlanParts(tables, PlanOptions{SplitBytes: 250, Workers: 2, SourceMajor: 15})
	var got []string
	for _, p := range parts {
		got = append(got, p.String())
	}
	// big: 4 parts of 250 bytes, mid: 2 parts of 150, small: whole.
	wantOrder := []string{
		"public.big part 1/4 (blocks 0-25)",
		"public.big part 2/4 (blocks 25-50)",
		"public.big part 3/4 (blocks 50-75)",
		"public.big part 4/4 (blocks 75-end)",
		"public.mid part 1/2 (blocks 0-15)",
		"public.mid part 2/2 (blocks 15-end)",
		"public.small",
	}
	if strings.Join(got, "\n") != strings.Join(wantOrder, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantOrder, "\n"))
	}
	// Block ranges tile the heap: each part starts where the previous ended,
	// the first has no lower bound and the last no upper bound.
	if sql := parts[0].copyOutSQL(true); !strings.Contains(sql, `WHERE ctid < '(25,0)'::tid) TO STDOUT (FORMAT binary)`) {
		t.Errorf("first part: %s", sql)
	}
	if sql := parts[1].copyOutSQL(false); !strings.Contains(sql, `WHERE ctid >= '(25,0)'::tid AND ctid < '(50,0)'::tid) TO STDOUT`) || strings.Contains(sql, "binary") {
		t.Errorf("middle part: %s", sql)
	}
	if sql := parts[3].copyOutSQL(false); !strings.HasSuffix(sql, `WHERE ctid >= '(75,0)'::tid) TO STDOUT`) {
		t.Errorf("last part: %s", sql)
	}
	if sql := parts[6].copyOutSQL(false); sql != `COPY "public"."small" ("id") TO STDOUT` {
		t.Errorf("whole table: %s", sql)
	}
}

func TestPlanPartsOnPG13CapsPartsAtWorkers(t *testing.T) {
	// On 13 every ctid-range part scans the whole heap: no more parts than workers.
	parts := PlanParts([]Table{tbl("big", 1000, 100)}, PlanOptions{SplitBytes: 100, Workers: 3, SourceMajor: 13})
	if len(parts) != 3 || parts[0].Of != 3 {
		t.Fatalf("got %d parts, want 3", len(parts))
	}
	parts = PlanParts([]Table{tbl("big", 1000, 100)}, PlanOptions{SplitBytes: 100, Workers: 3, SourceMajor: 14})
	if len(parts) != 10 {
		t.Fatalf("on 14: got %d parts, want 10", len(parts))
	}
}

func TestPlanPartsNeverSplitsTinyHeaps(t *testing.T) {
	parts := PlanParts([]Table{tbl("t", 1000, 1), tbl("u", 1000, 3)}, PlanOptions{SplitBytes: 10, Workers: 4, SourceMajor: 17})
	if len(parts) != 4 { // t whole, u in 3 parts (one per block)
		t.Fatalf("got %d parts, want 4", len(parts))
	}
	parts = PlanParts([]Table{tbl("t", 1000, 100)}, PlanOptions{SplitBytes: 0})
	if len(parts) != 1 || parts[0].Split() {
		t.Fatalf("SplitBytes 0 must not split")
	}
}
