package verify

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSplitIntegerRange(t *testing.T) {
	cases := []struct {
		lo, hi, n int64
		want      []string
	}{
		{1, 100, 4, []string{"26", "51", "76"}},
		{1, 3, 10, []string{"2", "3"}}, // fewer keys than chunks: no empty ranges
		{5, 5, 4, nil},
		{1, 100, 1, nil},
		{-9223372036854775808, 9223372036854775807, 2, []string{"0"}}, // no overflow
	}
	for _, c := range cases {
		var got []string
		for _, b := range splitIntegerRange(c.lo, c.hi, c.n) {
			got = append(got, b[0])
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitIntegerRange(%d, %d, %d) = %v, want %v", c.lo, c.hi, c.n, got, c.want)
		}
	}
}

func TestQuantilesDistinctAndAscending(t *testing.T) {
	var sample [][]string
	for _, k := range []string{"a", "a", "a", "a", "a", "a", "b", "c"} {
		sample = append(sample, []string{k})
	}
	got := quantiles(sample, 4)
	want := [][]string{{"a"}, {"b"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("quantiles = %v, want %v (duplicates dropped)", got, want)
	}
	if quantiles(sample[:1], 4) != nil {
		t.Fatal("one sampled key cannot split a table")
	}
}

func TestSegmentsCoverEveryKey(t *testing.T) {
	ti := &tableInfo{Ordered: true, KeyCols: []column{{Name: "id", Type: "bigint", Sortable: true, Integer: true}}}
	segs := segmentsBetween(ti, [][]string{{"10"}, {"20"}})
	if len(segs) != 3 {
		t.Fatalf("got %d segments, want 3", len(segs))
	}
	if segs[0].lo != nil || segs[2].hi != nil {
		t.Fatal("first and last segments must be open so that keys outside the planned range are compared")
	}
	for i := 1; i < len(segs); i++ {
		if !reflect.DeepEqual(segs[i-1].hi, segs[i].lo) {
			t.Fatalf("segment %d ends at %v but %d starts at %v: a gap or overlap", i-1, segs[i-1].hi, i, segs[i].lo)
		}
	}
	if got := segs[1].String(); got != "id in [10, 20)" {
		t.Errorf("segment text %q", got)
	}
}

func TestCompositeKeyPredicateUsesRowComparison(t *testing.T) {
	ti := &tableInfo{
		Table:   Table{Schema: "app", Name: `we"ird`},
		Ordered: true,
		KeyCols: []column{{Name: "tenant", Type: "integer", Sortable: true}, {Name: "Day", Type: "date", Sortable: true}},
	}
	s := segment{info: ti, lo: []string{"1", "2024-01-01"}, hi: []string{"2", "2023-01-01"}}
	pred, args := s.where(1)
	want := `(t."tenant", t."Day") >= ($1::text::integer, $2::text::date) AND (t."tenant", t."Day") < ($3::text::integer, $4::text::date)`
	if pred != want {
		t.Fatalf("predicate\n got %s\nwant %s", pred, want)
	}
	if !reflect.DeepEqual(args, []any{"1", "2024-01-01", "2", "2023-01-01"}) {
		t.Fatalf("args %v", args)
	}
	if from := s.from(); from != `ONLY "app"."we""ird" t` {
		t.Fatalf("from %q: the identifier must be quoted", from)
	}
	q, _ := s.aggregateSQL(ModeChecksum)
	if !strings.Contains(q, `hashtextextended((ROW(`) || !strings.Contains(q, "count(*)") {
		t.Fatalf("checksum aggregate lacks the row hash or count: %s", q)
	}
	q, _ = s.aggregateSQL(ModeCount)
	if strings.Contains(q, "hashtextextended") {
		t.Fatalf("count mode must not hash rows: %s", q)
	}
}

func TestPartitionedRootIsReadWhole(t *testing.T) {
	ti := &tableInfo{Table: Table{Schema: "public", Name: "events"}, Partitioned: true}
	if got := (segment{info: ti}).from(); got != `"public"."events" t` {
		t.Fatalf("from %q: a partitioned root must be read without ONLY", got)
	}
}

func TestJudge(t *testing.T) {
	a, b, c := rowval{hash: 1, n: 1}, rowval{hash: 2, n: 1}, rowval{hash: 3, n: 1}
	missing := rowval{}
	cases := []struct {
		name      string
		b1, g, b2 rowval
		want      verdict
	}{
		{"equal", a, a, a, consistent},
		{"green still has blue's earlier value", a, a, b, consistent},
		{"green has blue's later value", a, b, b, consistent},
		{"blue held still, green differs", a, b, a, stable},
		{"row missing on green", a, missing, a, stable},
		{"row only on green", missing, a, missing, stable},
		{"blue moved, green between", a, b, c, moving},
	}
	for _, tc := range cases {
		if got := judge(tc.b1, tc.g, tc.b2); got != tc.want {
			t.Errorf("%s: judge = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMismatchedBuckets(t *testing.T) {
	blue := map[int64]agg{0: {1, "5"}, 1: {2, "7"}, 3: {1, "9"}}
	green := map[int64]agg{0: {1, "5"}, 1: {2, "8"}, 2: {1, "4"}}
	got := mismatchedBuckets(blue, green)
	if !reflect.DeepEqual(got, []int64{1, 2, 3}) {
		t.Fatalf("mismatched buckets %v, want [1 2 3]", got)
	}
	if got := mismatchedBuckets(map[int64]agg{0: {0, "0"}}, map[int64]agg{}); got != nil {
		t.Fatalf("an empty segment on one side and no row on the other are equal, got %v", got)
	}
}

func TestDifferingIDs(t *testing.T) {
	blue := map[string]rowval{"1": {1, 1}, "2": {2, 1}, "10": {3, 1}}
	green := map[string]rowval{"1": {1, 1}, "2": {9, 1}, "11": {4, 1}}
	got := differingIDs(blue, green)
	if !reflect.DeepEqual(got, []string{"2", "10", "11"}) {
		t.Fatalf("differing ids %v, want [2 10 11] in key order", got)
	}
}

func TestLessIDNumericThenText(t *testing.T) {
	if !lessID("9", "10") || lessID("10", "9") {
		t.Fatal("numbers must sort numerically")
	}
	if !lessID(joinID([]string{"1", "b"}), joinID([]string{"1", "c"})) {
		t.Fatal("composite keys sort part by part")
	}
	if !lessID("apple", "banana") {
		t.Fatal("text sorts as text")
	}
}

func TestDescribeKey(t *testing.T) {
	one := &tableInfo{KeyCols: []column{{Name: "id"}}}
	two := &tableInfo{KeyCols: []column{{Name: "a"}, {Name: "b"}}}
	none := &tableInfo{}
	if got := one.describeKey("42"); got != "id=42" {
		t.Errorf("got %q", got)
	}
	if got := two.describeKey(joinID([]string{"1", "x"})); got != "(a, b)=(1, x)" {
		t.Errorf("got %q", got)
	}
	if got := none.describeKey("-7"); got != "row with hash -7" {
		t.Errorf("got %q", got)
	}
}

func TestReportErrorNamesTableRangeAndKeys(t *testing.T) {
	r := &Report{Mode: ModeChecksum, Workers: 2, Duration: 2 * time.Second, Tables: []TableReport{
		{Table: "public.a", Rows: 100, Bytes: 2 << 20},
		{Table: "public.b", Rows: 50, Bytes: 1 << 20, Differences: []Difference{{
			Table: "public.b", Segment: "id in [10, 20)", KeyRange: "id=12 .. id=15",
			Changed: 1, OnlyBlue: 1, Keys: []string{"id=12 differs", "id=15 missing on green"},
		}}},
	}}
	if r.OK() {
		t.Fatal("a report with a difference is not OK")
	}
	msg := r.Error()
	for _, want := range []string{"public.b", "id in [10, 20)", "keys id=12 .. id=15: id=12 differs; id=15 missing on green", "1 changed", "1 missing on green"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "public.a") {
		t.Errorf("error names a table without differences:\n%s", msg)
	}
	if r.Rows() != 150 || r.MBPerSecond() != 1.5 {
		t.Errorf("rows %d, MB/s %v; want 150 and 1.5", r.Rows(), r.MBPerSecond())
	}
}

func TestGroupBucketsBoundsRows(t *testing.T) {
	rows := map[int64]int64{1: 100, 2: 100, 3: 300, 4: 50, 5: 50}
	got := groupBuckets([]int64{1, 2, 3, 4, 5}, rows, 250)
	want := [][]int64{{1, 2}, {3}, {4, 5}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("groups %v, want %v (a bucket over the limit stands alone)", got, want)
	}
}
