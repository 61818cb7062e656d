package e2e

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestWalLevelReplica: blue without wal_level=logical is a blocker whose
// fix is spelled out, and apply refuses without changing blue or green;
// with the fix applied as worded, the same apply goes through.
func TestWalLevelReplica(t *testing.T) {
	integration(t)
	t.Parallel()
	blue := pgtest.StartCluster(t, 13, pgtest.ClusterOptions{Settings: map[string]string{"wal_level": "replica"}})
	green := pgtest.StartCluster(t, 17)
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	blue.Exec(t, "app", `CREATE ROLE app_owner NOLOGIN;
		CREATE TABLE public.orders (id bigint PRIMARY KEY, note text);
		ALTER TABLE public.orders OWNER TO app_owner;
		INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 100) g`)
	dir, spec := writeSpec(t, specOptions{name: "app", blue: blue.DSN("app"), green: green.DSN("app")})
	blueConn, greenConn := connect(t, blue.DSN("app")), connect(t, green.DSN("app"))
	greenRoles := scalar[[]string](t, greenConn, `SELECT array_agg(rolname::text ORDER BY 1) FROM pg_roles`)

	r := pgshift(t, dir, "plan", "-f", spec, "--no-color")
	if r.code != 1 || !strings.Contains(r.stdout, "wal_level") || !strings.Contains(r.stdout, "ALTER SYSTEM SET wal_level = logical") ||
		!strings.Contains(strings.ToLower(r.stdout), "restart") {
		t.Fatalf("plan: want exit 1 with the wal_level blocker and its fix (ALTER SYSTEM SET wal_level = logical, restart)\n%s", r)
	}
	mark, line, _ := planLine(r.stdout, "preflight.source")
	if mark != "✗" {
		t.Errorf("preflight.source shows %q, want ✗: %q", mark, line)
	}
	t.Logf("plan:\n%s", r.stdout)

	r = pgshift(t, dir, "apply", "-f", spec)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "ALTER SYSTEM SET wal_level = logical") {
		t.Fatalf("apply: want a failure with the fix\n%s", r)
	}
	o := countObjects(t, blueConn, greenConn)
	if o.publications != 0 || o.slots != 0 || o.subscriptions != 0 {
		t.Fatalf("apply refused yet created objects: %+v", o)
	}
	if n := scalar[int](t, greenConn, `SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`); n != 0 {
		t.Fatalf("apply refused yet green holds %d relations", n)
	}
	if roles := scalar[[]string](t, greenConn, `SELECT array_agg(rolname::text ORDER BY 1) FROM pg_roles`); strings.Join(roles, ",") != strings.Join(greenRoles, ",") {
		t.Fatalf("apply refused yet green's roles changed: %v -> %v", greenRoles, roles)
	}
	if v := scalar[string](t, blueConn, `SHOW wal_level`); v != "replica" {
		t.Fatalf("blue's wal_level is %s", v)
	}

	// The fix as the blocker words it, then the same apply goes through.
	blue.Exec(t, "app", `ALTER SYSTEM SET wal_level = logical`)
	blue.Restart(t)
	r = pgshift(t, dir, "apply", "-f", spec)
	if r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
		t.Fatalf("apply after the fix:\n%s", r)
	}
	blueConn = connect(t, blue.DSN("app"))
	waitCaughtUp(t, blueConn, "pgshift_app")
	if res := compareAll(t, blue.DSN("app"), green.DSN("app")); res["public.orders"].GreenRows != 100 {
		t.Fatalf("public.orders on green: %s", res["public.orders"])
	}
}
