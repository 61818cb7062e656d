package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestFleetApplyWaves drives a fleet of 6 real databases on 3 blue/green
// pairs (blue 13, 14 and 15, green 17; 2 databases a pair) through the CLI:
// a table without a replica identity in a canary database stops the fleet
// after the canary wave (exit 1, needs a person) and the other waves never
// start; with the fault fixed, --index (as a Kubernetes Indexed Job gives
// it) and --only run single entries, then the whole fleet converges to the
// cutover gate with 3 databases at once, the summary lists all 6, status
// prints the same table, a fleet rollback undoes everything, and a fleet
// cleanup then finds nothing to drop.
func TestFleetApplyWaves(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	began := time.Now()
	cs := pgtest.StartClusters(t, []int{13, 17, 14, 17, 15, 17})
	t.Logf("6 clusters started in %s", time.Since(began).Round(time.Millisecond))
	type pair struct{ blue, green *pgtest.Cluster }
	pairs := []pair{{cs[0], cs[1]}, {cs[2], cs[3]}, {cs[4], cs[5]}}

	dir := t.TempDir()
	specPath := filepath.Join(dir, "fleet.yaml")
	invPath := filepath.Join(dir, "fleet.inventory.yaml")
	os.WriteFile(specPath, []byte(`version: 1
name: "{{ .db }}-pg17"
vars:
  db: {description: "database to upgrade"}
  blue_port: {}
  green_port: {}
source:
  dsn: "postgres://postgres@127.0.0.1:{{ .blue_port }}/{{ .db }}?sslmode=disable"
target:
  dsn: "postgres://postgres@127.0.0.1:{{ .green_port }}/{{ .db }}?sslmode=disable"
cutover:
  switch:
    exec: {switch: ["true"], back: ["true"]}
`), 0o600)
	var inv strings.Builder
	dbs := []string{"shop1", "shop2", "shop3", "shop4", "shop5", "shop6"}
	where := map[string]pair{}
	for i, db := range dbs {
		p := pairs[i/2]
		where[db] = p
		fmt.Fprintf(&inv, "- {db: %s, blue_port: %d, green_port: %d}\n", db, p.blue.Port, p.green.Port)
		p.blue.CreateDatabase(t, db)
		p.green.CreateDatabase(t, db)
		p.blue.Exec(t, db, `CREATE TABLE items (id int PRIMARY KEY, name text);
			INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g`)
	}
	os.WriteFile(invPath, []byte(inv.String()), 0o600)
	// The fault: a table logical replication cannot carry updates of.
	where["shop1"].blue.Exec(t, "shop1", "CREATE TABLE audit_log (msg text); INSERT INTO audit_log VALUES ('x')")

	fleet := func(args ...string) (int, string, string) {
		t.Helper()
		start := time.Now()
		code, out, errOut := runSpecCommand(t, append(args[:1:1], append([]string{"-f", specPath, "--inventory", invPath}, args[1:]...)...)...)
		t.Logf("pgshift %s: exit %d in %s\n%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), out)
		return code, out, errOut
	}
	stateOf := func(db string) string { return filepath.Join(dir, db+"-pg17.pgshift-state.json") }
	hasState := func(db string) bool {
		_, err := os.Stat(stateOf(db))
		return !errors.Is(err, os.ErrNotExist)
	}
	subscriptions := func(db string) string {
		return where[db].green.Scalar(t, db, "SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
	}
	waves := []string{"apply", "--parallel-databases", "3", "--canary", "2", "--wave-size", "4"}

	// 1. The canary wave holds the fault: the next wave never starts.
	code, out, errOut := fleet(waves...)
	if code != exitError {
		t.Fatalf("exit %d, want %d (needs a person)\n%s", code, exitError, errOut)
	}
	for _, want := range []string{
		"6 databases of " + invPath + ", in 2 waves (a canary of 2, then 4), 3 at a time; a failed database stops the next waves.",
		"[shop1-pg17]   ✗ preflight.source failed",
		"audit_log",
		"shop2-pg17  verify",
		"waiting for approval: cutover",
		"not started: wave 1 had 1 failed database",
		"apply 6 databases: 1 succeeded, 1 needs a person, 4 not started",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("first run's output lacks %q", want)
		}
	}
	if !strings.Contains(tableLine(out, "shop1-pg17"), "preflight.source  failed") || !strings.Contains(tableLine(out, "shop1-pg17"), "needs a person: preflight.source:") {
		t.Errorf("shop1's line: %q", tableLine(out, "shop1-pg17"))
	}
	for _, db := range dbs[2:] {
		if hasState(db) || subscriptions(db) != "0" {
			t.Errorf("%s was started after the canary failed", db)
		}
	}
	if subscriptions("shop2") != "1" {
		t.Errorf("shop2, the canary that passed, has no subscription on green")
	}
	if !strings.Contains(errOut, "[shop1-pg17] ") || !strings.Contains(errOut, "[shop2-pg17] ") {
		t.Errorf("logs are not under the databases' names:\n%s", errOut)
	}

	// 2. Fixed; a pod of an Indexed Job runs its one entry.
	where["shop1"].blue.Exec(t, "shop1", "ALTER TABLE audit_log REPLICA IDENTITY FULL")
	t.Setenv(envJobIndex, "0")
	code, out, errOut = fleet("apply")
	if code != exitOK || !strings.Contains(out, "pgshift apply: 1 database of") || !strings.Contains(tableLine(out, "shop1-pg17"), "waiting for approval: cutover") {
		t.Fatalf("apply with %s=0: exit %d\n%s\n%s", envJobIndex, code, out, errOut)
	}
	if strings.Contains(out, "shop2-pg17") || hasState("shop3") {
		t.Errorf("the Job's index 0 ran more than shop1")
	}
	os.Unsetenv(envJobIndex)
	code, out, _ = fleet("status", "--index", "5")
	if code != exitOK || !strings.Contains(out, "pgshift status: shop6-pg17") || !strings.Contains(out, "No state file yet") {
		t.Errorf("status --index 5: exit %d\n%s", code, out)
	}
	code, out, errOut = fleet("apply", "--only", "shop3-pg17")
	if code != exitOK || !hasState("shop3") || hasState("shop4") || strings.Contains(out, "shop4-pg17") {
		t.Fatalf("apply --only shop3-pg17: exit %d\n%s\n%s", code, out, errOut)
	}

	// 3. The whole fleet converges, 3 databases at once.
	code, out, errOut = fleet(waves...)
	if code != exitOK {
		t.Fatalf("second run: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "apply 6 databases: 6 succeeded") {
		t.Errorf("second run's count line is missing")
	}
	for _, db := range dbs {
		line := tableLine(out, db+"-pg17")
		if !strings.Contains(line, "verify") || !strings.Contains(line, "done") || !strings.Contains(line, "waiting for approval: cutover") {
			t.Errorf("%s's line after the second run: %q", db, line)
		}
		if got := where[db].green.Scalar(t, db, "SELECT count(*) FROM items"); got != "200" {
			t.Errorf("%s: green has %s rows, want 200", db, got)
		}
	}
	code, out, _ = fleet("status")
	if code != exitOK || strings.Count(out, "waiting for approval: cutover") != 6 || !strings.Contains(out, "DATABASE    LAST STEP") {
		t.Errorf("status --inventory: exit %d\n%s", code, out)
	}

	// 4. A fleet rollback undoes every database.
	code, out, errOut = fleet("rollback", "--yes", "--parallel-databases", "3")
	if code != exitOK || !strings.Contains(out, "rollback 6 databases: 6 succeeded") {
		t.Fatalf("rollback --inventory: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, db := range dbs {
		if !strings.Contains(tableLine(out, db+"-pg17"), "rolled back") || subscriptions(db) != "0" {
			t.Errorf("%s not rolled back: %q, %s subscriptions", db, tableLine(out, db+"-pg17"), subscriptions(db))
		}
	}
	// Nothing is left for a fleet cleanup to drop.
	code, out, errOut = fleet("cleanup", "--yes", "--parallel-databases", "3")
	if code != exitOK || strings.Count(out, "No changes. No pgshift replication objects exist on blue or green.") != 6 {
		t.Errorf("cleanup --inventory after the rollback: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("whole test: %s", time.Since(began).Round(time.Millisecond))
}

// tableLine is the summary table's line of a database.
func tableLine(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}
