package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestCompareQueriesCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	bin, err := pgtest.ServerBinDir(13)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(bin), "lib", "postgresql", "pg_stat_statements.so")); err != nil {
		t.Fatalf("PostgreSQL 13 of the rig has no pg_stat_statements (%v): install the contrib modules into %s (run `make deps` again)", err, filepath.Dir(bin))
	}
	cs := pgtest.StartClusters(t, []int{13, 17}, pgtest.ClusterOptions{Settings: map[string]string{"shared_preload_libraries": "pg_stat_statements"}})
	blue, green := cs[0], cs[1]
	for _, c := range cs {
		c.CreateDatabase(t, "shop")
		c.Exec(t, "shop", `CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric NOT NULL);
			INSERT INTO orders SELECT g, g % 20000, g % 997 FROM generate_series(1, 300000) g;`)
	}
	// green's schema restore left out the index.
	blue.Exec(t, "shop", "CREATE INDEX orders_customer_idx ON orders (customer_id); ANALYZE orders")

	t.Setenv("PGSHIFT_TEST_BLUE_PW", "s3cret-blue")
	dir := t.TempDir()
	specPath := filepath.Join(dir, "shop.yaml")
	sp := "version: 1\nname: shop-pg17\nsource:\n  dsn: \"" + blue.DSN("shop") + "\"\n  password_env: PGSHIFT_TEST_BLUE_PW\ntarget:\n  dsn: \"" + green.DSN("shop") +
		"\"\ncutover:\n  switch:\n    exec: {switch: [\"true\"], back: [\"true\"]}\n"
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("shop.yaml", sp)
	clean := write("clean.yaml", "- name: an order\n  sql: SELECT amount FROM orders WHERE id = $1\n  params: [4242]\n")
	regress := write("regress.sql", "-- name: orders of a customer\n-- params: [42]\nSELECT sum(amount) FROM orders WHERE customer_id = $1;\n")

	t.Run("pg_stat_statements not installed: says how to enable it", func(t *testing.T) {
		out, errOut, code := runCLI(t, "", "compare-queries", "-f", specPath)
		if code != exitError {
			t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if !strings.Contains(errOut, "the extension is not installed in this database") || !strings.Contains(errOut, "shared_preload_libraries") ||
			!strings.Contains(errOut, "CREATE EXTENSION pg_stat_statements") {
			t.Errorf("stderr: %s", errOut)
		}
	})

	t.Run("unchanged plans: exit 0", func(t *testing.T) {
		out, errOut, code := runCLI(t, "", "compare-queries", "-f", specPath, "--queries", clean)
		if code != exitOK {
			t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if !strings.HasPrefix(out, "pgshift compare-queries: shop-pg17   blue PostgreSQL 13.") || !strings.Contains(out, "✓  an order") ||
			!strings.Contains(out, "pg_stat_statements not read: ") || !strings.Contains(out, "ANALYZEd on green first (never analyzed): public.orders") ||
			!strings.HasSuffix(out, "1 statements: 0 regressions, 1 ok; 0 plan changes.\n") {
			t.Errorf("text:\n%s", out)
		}
	})

	blue.Exec(t, "shop", "CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset()")
	for i := 0; i < 10; i++ {
		blue.Exec(t, "shop", "SELECT sum(amount) FROM orders WHERE customer_id = 7")
	}

	t.Run("a regression: exit 1, markdown with both plans folded", func(t *testing.T) {
		out, errOut, code := runCLI(t, "", "compare-queries", "-f", specPath, "--queries", regress, "--format", "markdown", "--rounds", "3")
		if code != exitError {
			t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if !strings.HasPrefix(out, "<!-- pgshift:compare-queries name=shop-pg17 -->\n### pgshift compare-queries: `shop-pg17`") ||
			!strings.Contains(out, "**") || !strings.Contains(out, "1 regression,") {
			t.Errorf("markdown head:\n%s", out)
		}
		first := strings.Index(out, "| ✗ | orders of a customer |")
		generic := strings.Index(out, "| ! | SELECT sum(amount) FROM orders WHERE customer_id = $1 |")
		if first < 0 || generic < 0 || first > generic {
			t.Errorf("want the timed regression first, then the generic plan change from pg_stat_statements:\n%s", out)
		}
		for _, want := range []string{"<details><summary>blue plan (EXPLAIN ANALYZE)</summary>", "<details><summary>green plan (EXPLAIN ANALYZE)</summary>",
			"Bitmap Index Scan using orders_customer_idx", "Seq Scan on orders", "- orders: blue Bitmap Heap Scan using orders_customer_idx, green "} {
			if !strings.Contains(out, want) {
				t.Errorf("markdown lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(errOut, "green runs 1 statement slower than blue beyond the thresholds") || !strings.Contains(errOut, "pgshift compare-queries -f "+specPath) {
			t.Errorf("stderr: %s", errOut)
		}
		if strings.Contains(out, "current_setting") {
			t.Errorf("pgshift's own queries of the first runs were read back from pg_stat_statements:\n%s", out)
		}
		if strings.Contains(out+errOut, "s3cret-blue") {
			t.Errorf("the password shows")
		}
	})

	t.Run("json carries the plans; thresholds from the flags", func(t *testing.T) {
		out, _, code := runCLI(t, "", "compare-queries", "-f", specPath, "--queries", regress, "--top", "0", "--format", "json", "--rounds", "1", "--max-ratio", "100000")
		if code != exitOK {
			t.Fatalf("exit %d with a ratio threshold no plan reaches, want 0:\n%s", code, out)
		}
		var r struct {
			FormatVersion int `json:"format_version"`
			Options       struct {
				MaxRatio float64 `json:"max_ratio"`
			}
			Statements []struct {
				Name        string
				Status      string
				PlanChanged bool `json:"plan_changed"`
				Blue, Green struct {
					Plan   json.RawMessage
					Timing struct {
						RunsMS []float64 `json:"runs_ms"`
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if r.FormatVersion != 1 || r.Options.MaxRatio != 100000 || len(r.Statements) != 1 {
			t.Fatalf("report: %+v", r)
		}
		s := r.Statements[0]
		if s.Status != "ok" || !s.PlanChanged || len(s.Green.Timing.RunsMS) != 1 || !strings.Contains(string(s.Green.Plan), `"Node Type": "Seq Scan"`) {
			t.Errorf("statement: %s %v %v %s", s.Status, s.PlanChanged, s.Green.Timing.RunsMS, s.Green.Plan)
		}
	})

	t.Run("usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{"--rounds", "0"},
			{"--format", "yaml"},
			{"--queries", filepath.Join(dir, "missing.yaml")},
			{"--top", "0"},
			{"--max-ratio", "0.5"},
		} {
			if _, errOut, code := runCLI(t, "", append([]string{"compare-queries", "-f", specPath}, args...)...); code != exitUsage {
				t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut)
			}
		}
	})
}
