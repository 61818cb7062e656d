package querycompare

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// plan builds a plan tree from EXPLAIN's JSON, as the servers print it.
func plan(t *testing.T, js string) *Node {
	t.Helper()
	e, err := ParseExplain([]byte(`[{"Plan": ` + js + `}]`))
	if err != nil {
		t.Fatal(err)
	}
	return e.Plan
}

func TestShapeDifferences(t *testing.T) {
	indexJoin := plan(t, `{"Node Type": "Nested Loop", "Join Type": "Inner", "Plans": [
		{"Node Type": "Index Scan", "Relation Name": "customers", "Alias": "c", "Index Name": "customers_pkey"},
		{"Node Type": "Bitmap Heap Scan", "Relation Name": "orders", "Alias": "o", "Plans": [
			{"Node Type": "Bitmap Index Scan", "Index Name": "orders_customer_idx"}]}]}`)
	hashJoin := plan(t, `{"Node Type": "Hash Join", "Join Type": "Inner", "Plans": [
		{"Node Type": "Seq Scan", "Relation Name": "orders", "Alias": "o"},
		{"Node Type": "Hash", "Plans": [
			{"Node Type": "Index Scan", "Relation Name": "customers", "Alias": "c", "Index Name": "customers_pkey"}]}]}`)
	swapped := plan(t, `{"Node Type": "Nested Loop", "Join Type": "Inner", "Plans": [
		{"Node Type": "Bitmap Heap Scan", "Relation Name": "orders", "Alias": "o", "Plans": [
			{"Node Type": "Bitmap Index Scan", "Index Name": "orders_customer_idx"}]},
		{"Node Type": "Index Scan", "Relation Name": "customers", "Alias": "c", "Index Name": "customers_pkey"}]}`)
	// Estimates and times differ; the shape does not.
	sameWithOtherNumbers := plan(t, `{"Node Type": "Nested Loop", "Join Type": "Inner", "Total Cost": 99, "Actual Total Time": 12.5, "Plans": [
		{"Node Type": "Index Scan", "Relation Name": "customers", "Alias": "c", "Index Name": "customers_pkey", "Plan Rows": 7},
		{"Node Type": "Bitmap Heap Scan", "Relation Name": "orders", "Alias": "o", "Plans": [
			{"Node Type": "Bitmap Index Scan", "Index Name": "orders_customer_idx", "Actual Rows": 1000}]}]}`)

	if d := Differences(ShapeOf(indexJoin), ShapeOf(sameWithOtherNumbers)); d != nil {
		t.Errorf("same shape, other numbers: %q", d)
	}
	d := Differences(ShapeOf(indexJoin), ShapeOf(hashJoin))
	want := []string{
		"orders o: blue Bitmap Heap Scan using orders_customer_idx, green Seq Scan",
		"join order: blue customers c, orders o, green orders o, customers c",
		"indexes: blue uses customers_pkey, orders_customer_idx, green uses customers_pkey",
		"green adds Hash, Hash Join",
		"green drops Nested Loop",
	}
	if strings.Join(d, "\n") != strings.Join(want, "\n") {
		t.Errorf("index join -> hash join:\n%s\nwant\n%s", strings.Join(d, "\n"), strings.Join(want, "\n"))
	}
	d = Differences(ShapeOf(indexJoin), ShapeOf(swapped))
	if len(d) != 1 || d[0] != "join order: blue customers c, orders o, green orders o, customers c" {
		t.Errorf("swapped join: %q", d)
	}
}

func TestRegressionDecision(t *testing.T) {
	o := Defaults()
	for _, c := range []struct {
		blue, green float64
		regression  bool
		why         string
	}{
		{3, 3000, true, "1000x and 3 s slower"},
		{10, 14, false, "1.4x: under the ratio"},
		{10, 16, true, "1.6x and 6 ms slower"},
		{0.1, 0.9, false, "9x but 0.8 ms: under the minimum difference"},
		{0, 5, true, "blue rounds to 0 ms: the ratio stays finite and green is 5 ms slower"},
		{0, 0, false, "both 0"},
		{20, 5, false, "faster"},
	} {
		ratio, reg := Decide(c.blue, c.green, o)
		if reg != c.regression {
			t.Errorf("blue %g ms, green %g ms (%s): regression %v (ratio %.2f), want %v", c.blue, c.green, c.why, reg, ratio, c.regression)
		}
	}
	o.MaxRatio, o.MinDiff = 1.2, 100*time.Microsecond
	if _, reg := Decide(10, 13, o); !reg {
		t.Errorf("1.3x and 3 ms slower under max ratio 1.2, min diff 0.1 ms: not a regression")
	}
}

func TestSummarize(t *testing.T) {
	tm := summarize([]run{{exec: 5, hit: 50}, {exec: 1, hit: 10}, {exec: 3, hit: 30}, {exec: 100, hit: 1000}, {exec: 4, hit: 40}})
	if tm.MedianMS != 4 || tm.MinMS != 1 || tm.MaxMS != 100 || tm.P90MS != 100 || tm.SharedHit != 40 {
		t.Errorf("timing: %+v", tm)
	}
	if tm := summarize([]run{{exec: 2}, {exec: 4}}); tm.MedianMS != 3 {
		t.Errorf("median of 2 and 4: %g", tm.MedianMS)
	}
}

func TestClassify(t *testing.T) {
	for sql, want := range map[string]Kind{
		"SELECT 1": KindRead,
		"  -- a comment\n/* another */ (SELECT 1)":              KindRead,
		"with x as (select 1) select * from x":                  KindRead,
		"VALUES (1)":                                            KindRead,
		"update t set a = 1":                                    KindWrite,
		"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE": KindWrite,
		"SET work_mem = '8MB'":                                  KindUtility,
		"COPY t TO STDOUT":                                      KindUtility,
		"CREATE TABLE t (a int)":                                KindUtility,
		"BEGIN":                                                 KindUtility,
		"":                                                      KindUtility,
	} {
		if got, _ := Classify(sql); got != want {
			t.Errorf("%q: kind %d, want %d", sql, got, want)
		}
	}
	for sql, want := range map[string]int{
		"SELECT * FROM t WHERE a = $1 AND b = $12": 12,
		"SELECT '$1', \"$2\", $$ $3 $$ -- $4\n":    0,
		"SELECT $tag$ $5 $tag$, $2 /* $9 */":       2,
		"SELECT price$1 FROM t":                    1, // an identifier with $ is the server's to refuse
	} {
		if got := Placeholders(sql); got != want {
			t.Errorf("%q: %d placeholders, want %d", sql, got, want)
		}
	}
	if f := SideEffect("SELECT pg_advisory_lock(1), x FROM t"); f != "pg_advisory_lock" {
		t.Errorf("side effect: %q", f)
	}
	if f := SideEffect("SELECT lock_status FROM t"); f != "" {
		t.Errorf("side effect in a column name: %q", f)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	y := write("q.yaml", `- name: orders of a customer
  sql: SELECT sum(amount) FROM orders WHERE customer_id = $1 AND day >= $2 AND note IS DISTINCT FROM $3
  params: [42, 2024-01-31, null]
- sql: SELECT count(*) FROM customers
`)
	st, err := LoadFile(y)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Name != "orders of a customer" || len(st[0].Params) != 3 || *st[0].Params[0] != "42" || *st[0].Params[1] != "2024-01-31" || st[0].Params[2] != nil ||
		st[1].Name != "q.yaml #2" || st[1].Origin != FromFile {
		t.Errorf("yaml: %+v", st)
	}
	s := write("q.sql", `-- name: orders of a customer
-- params: [42]
SELECT sum(amount) FROM orders
 WHERE customer_id = $1;

-- a plain comment
SELECT ';' AS semi, $$;$$ AS dollar;
SELECT 1`)
	st, err = LoadFile(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 || st[0].Name != "orders of a customer" || *st[0].Params[0] != "42" || st[0].SQL != "SELECT sum(amount) FROM orders\n WHERE customer_id = $1" ||
		st[1].SQL != "SELECT ';' AS semi, $$;$$ AS dollar" || st[2].SQL != "SELECT 1" {
		t.Errorf("sql: %#v", st)
	}
	for name, body := range map[string]string{
		"count.yaml":   "- {name: a, sql: 'SELECT $1, $2', params: [1]}\n",
		"unknown.yaml": "- {name: a, sql: 'SELECT 1', param: [1]}\n",
		"twice.yaml":   "- {name: a, sql: 'SELECT 1'}\n- {name: a, sql: 'SELECT 2'}\n",
		"nested.yaml":  "- {name: a, sql: 'SELECT $1', params: [[1, 2]]}\n",
		"empty.yaml":   "",
		"q.txt":        "SELECT 1;",
	} {
		if _, err := LoadFile(write(name, body)); err == nil {
			t.Errorf("%s: loaded, want an error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
