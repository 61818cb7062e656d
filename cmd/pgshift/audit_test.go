package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestAuditCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	for _, c := range cs {
		c.CreateDatabase(t, "shop")
	}
	blue.Exec(t, "shop", "CREATE TABLE items (id int PRIMARY KEY, name text)")
	specPath := filepath.Join(t.TempDir(), "shop.yaml")
	sp := "version: 1\nname: shop-pg17\nsource:\n  dsn: \"" + blue.DSN("shop") + "\"\ntarget:\n  dsn: \"" + green.DSN("shop") +
		"\"\ncutover:\n  switch:\n    exec: {switch: [\"true\"], back: [\"true\"]}\n"
	if err := os.WriteFile(specPath, []byte(sp), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("nothing blocks: exit 0", func(t *testing.T) {
		out, errOut, code := runCLI(t, "", "audit", "-f", specPath)
		if code != exitOK {
			t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if !strings.HasPrefix(out, "pgshift audit: shop-pg17   blue PostgreSQL 13.") || !strings.Contains(out, "-> green PostgreSQL 17.") ||
			!strings.Contains(out, "! DDL is not replicated") || !strings.HasSuffix(out, "Audit: 0 blockers, 1 warning.\n") {
			t.Errorf("text report:\n%s", out)
		}
	})

	// A postfix operator (gone in 14) and 12 unlogged tables: a list longer
	// than the text folds.
	blue.Exec(t, "shop", `CREATE FUNCTION public.fact(bigint) RETURNS numeric LANGUAGE sql AS 'SELECT $1::numeric';
		CREATE OPERATOR public.!!! (LEFTARG = bigint, FUNCTION = public.fact)`)
	var unlogged []string
	for i := 1; i <= 12; i++ {
		name := fmt.Sprintf("public.scratch_%02d", i)
		unlogged = append(unlogged, name)
		blue.Exec(t, "shop", "CREATE UNLOGGED TABLE "+name+" (id int PRIMARY KEY)")
	}

	t.Run("a blocker: exit 1, named with its fix", func(t *testing.T) {
		out, errOut, code := runCLI(t, "", "audit", "-f", specPath)
		if code != exitError {
			t.Fatalf("exit %d, want 1; stdout:\n%s", code, out)
		}
		if !strings.Contains(out, "✗ blue has 1 postfix operator, which PostgreSQL 14 removed (green is 17)") ||
			!strings.Contains(out, "public.!!! (bigint, NONE): DROP OPERATOR public.!!! (bigint, NONE);") {
			t.Errorf("text lacks the postfix blocker:\n%s", out)
		}
		if !strings.Contains(out, "- public.scratch_10\n") || strings.Contains(out, "scratch_11") || !strings.Contains(out, "- and 2 more\n") {
			t.Errorf("text: want the unlogged list folded after 10:\n%s", out)
		}
		if !strings.Contains(errOut, "the audit has 1 blocker") || !strings.Contains(errOut, "pgshift audit -f "+specPath) {
			t.Errorf("stderr: %s", errOut)
		}
	})

	t.Run("json carries every object", func(t *testing.T) {
		out, _, code := runCLI(t, "", "audit", "-f", specPath, "--format", "json")
		if code != exitError {
			t.Fatalf("exit %d, want 1", code)
		}
		var r struct {
			FormatVersion int    `json:"format_version"`
			Name          string `json:"name"`
			Blue          struct{ Address, Version string }
			Blockers      []string `json:"blockers"`
			Warnings      []string `json:"warnings"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if r.FormatVersion != 1 || r.Name != "shop-pg17" || len(r.Blockers) != 1 || !strings.Contains(r.Blockers[0], "public.!!!") {
			t.Errorf("report: %+v", r)
		}
		if strings.Contains(r.Blue.Address, "password") || !strings.HasPrefix(r.Blue.Version, "13.") {
			t.Errorf("blue: %+v", r.Blue)
		}
		w := findingOf(r.Warnings, "unlogged")
		for _, n := range unlogged {
			if !strings.Contains(w, "- "+n) {
				t.Errorf("JSON warning lacks %s: %q", n, w)
			}
		}
		if strings.Contains(out, "more") {
			t.Errorf("JSON folds a list:\n%s", out)
		}
	})

	t.Run("markdown has its own marker", func(t *testing.T) {
		out, _, _ := runCLI(t, "", "audit", "-f", specPath, "--format", "markdown")
		if !strings.HasPrefix(out, "<!-- pgshift:audit name=shop-pg17 -->\n### pgshift audit: `shop-pg17`") ||
			!strings.Contains(out, "**Audit: 1 blocker, 2 warnings.**") {
			t.Errorf("markdown:\n%s", out)
		}
	})

	t.Run("usage errors exit 2", func(t *testing.T) {
		if _, _, code := runCLI(t, "", "audit", "-f", specPath, "--format", "yaml"); code != exitUsage {
			t.Errorf("--format yaml: exit %d, want 2", code)
		}
		if _, _, code := runCLI(t, "", "audit"); code != exitUsage {
			t.Errorf("no -f: exit %d, want 2", code)
		}
	})
}

func findingOf(lines []string, part string) string {
	for _, l := range lines {
		if strings.Contains(l, part) {
			return l
		}
	}
	return ""
}
