package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestPlanGreenDatabaseMissing: a database green lacks is preflight.target's
// blocker with the statement that makes it, not a raw driver error that
// stops the plan; the steps that would need it wait for it.
func TestPlanGreenDatabaseMissing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "shop")
	blue.Exec(t, "shop", "CREATE TABLE items (id int PRIMARY KEY)")
	specPath := filepath.Join(t.TempDir(), "shop.yaml")
	sp := fmt.Sprintf("version: 1\nname: shop\nsource:\n  dsn: %q\ntarget:\n  dsn: %q\ncutover:\n  switch:\n    exec: {switch: [\"true\"], back: [\"true\"]}\n",
		blue.DSN("shop"), green.DSN("shop"))
	if err := os.WriteFile(specPath, []byte(sp), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCLI(t, "", "plan", "-f", specPath, "--no-color")
	if code != exitError || !strings.Contains(out, "has no database shop") || !strings.Contains(out, "CREATE DATABASE") {
		t.Fatalf("plan with green's database missing: exit %d, want 1 with preflight.target's blocker\n%s\n%s", code, out, stderr)
	}
	if strings.Contains(out, "cannot inspect") || !strings.Contains(out, "waits for preflight.target") {
		t.Errorf("the steps after preflight.target should wait for it, not fail to inspect:\n%s", out)
	}
	if !strings.Contains(out, "blue PostgreSQL "+blue.Version) {
		t.Errorf("the plan's header lost blue's version:\n%s", out)
	}
}
