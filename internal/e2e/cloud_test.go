package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// cloudRoleGrants give a role what a managed cloud's admin role holds
// without SUPERUSER (RDS's rds_superuser member with rds_replication,
// Cloud SQL's cloudsqlsuperuser with REPLICATION, Azure's azure_pg_admin
// with REPLICATION): it owns the database and its tables, may replicate,
// create roles and subscriptions (pg_create_subscription, 16+), end other
// sessions (pg_signal_backend) and read statistics (pg_monitor).
const cloudRoleGrants = `CREATE ROLE app_admin LOGIN REPLICATION CREATEROLE CREATEDB PASSWORD 'cloud-Admin-4Tq';
GRANT pg_create_subscription, pg_signal_backend, pg_monitor TO app_admin;`

// requirePassword makes the cluster ask app_admin for its password over
// TCP, as a managed cloud does: a subscription owned by a non-superuser
// must authenticate with one (password_required).
func requirePassword(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	hba := filepath.Join(c.DataDir, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	line := "host all app_admin 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, append([]byte(line), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Exec(t, "postgres", "SELECT pg_reload_conf()")
}

// TestNonSuperuserPath runs the whole upgrade, preflight to cutover and
// back, connected to both sides as a role with a managed cloud's grants
// but no SUPERUSER, with pgbench writing through PgBouncer.
func TestNonSuperuserPath(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := pgtest.StartClusters(t, []int{16, 17})
	blue, green := cs[0], cs[1]
	for _, c := range cs {
		c.Exec(t, "postgres", cloudRoleGrants)
		c.Exec(t, "postgres", "CREATE DATABASE app OWNER app_admin")
		requirePassword(t, c)
	}
	// Green's schema is made by hand (schema.copy: false): the rig has no
	// pg_dump 16, which a restore from blue 16 would need. Blue 16 and
	// green 17 both have pg_create_subscription, so both directions of
	// replication run without SUPERUSER.
	for _, c := range cs {
		c.Exec(t, "app", `SET ROLE app_admin;
		CREATE TABLE public.orders (id bigserial PRIMARY KEY, note text, qty int)`)
	}
	blue.Exec(t, "app", `INSERT INTO public.orders (note, qty) SELECT 'order ' || g, g % 7 FROM generate_series(1, 1000) g`)
	bouncer := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Databases: map[string]string{
		"app": fmt.Sprintf("host=127.0.0.1 port=%d dbname=app", blue.Port),
	}})

	dsn := func(c *pgtest.Cluster) string {
		return fmt.Sprintf("postgres://app_admin@127.0.0.1:%d/app", c.Port)
	}
	dir := t.TempDir()
	specPath := filepath.Join(dir, "cloud.yaml")
	spec := fmt.Sprintf(`version: 1
name: cloud
source:
  dsn: %q
  password_env: BLUE_PASSWORD
target:
  dsn: %q
  password_env: GREEN_PASSWORD
schema:
  copy: false
cutover:
  freeze: pooler
  reverse_replication: true
  switch:
    pgbouncer:
      admin_dsn: %q
      config: %q
      database: app
  confirm:
    dsn: %q
`, dsn(blue), dsn(green), bouncer.AdminDSN, bouncer.ConfigPath, bouncer.DSN("app"))
	if err := os.WriteFile(specPath, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"BLUE_PASSWORD=cloud-Admin-4Tq", "GREEN_PASSWORD=cloud-Admin-4Tq"}

	r := pgshiftEnv(t, dir, env, "plan", "-f", specPath, "--no-color")
	t.Logf("plan as a non-superuser:\n%s", r)
	if r.code != 0 || strings.Contains(r.stdout, "✗") {
		t.Fatalf("plan as a non-superuser has blockers:\n%s", r)
	}
	bench := startPooledPgbench(t, bouncer, "INSERT INTO public.orders (note, qty) VALUES ('bench', 1);\n")
	r = pgshiftEnv(t, dir, env, "apply", "-f", specPath, "--approve-cutover")
	if r.code != 0 || !strings.Contains(r.stdout, "Apply complete") {
		t.Fatalf("apply as a non-superuser:\n%s", r)
	}
	bench.stop(t)
	greenConn := connect(t, green.DSN("app"))
	waitCaughtUp(t, greenConn, "pgshift_cloud_reverse")
	compareAll(t, blue.DSN("app"), green.DSN("app"))
}

// TestNonSuperuserBlue15 is the same role on blue 15, where PostgreSQL lets
// only superusers create subscriptions: the schema restore, the forward
// subscription (on green 17) and the sync run as the role, and the
// cutover with reverse replication is refused before any freeze, naming
// why and the fix; without reverse replication it goes through.
func TestNonSuperuserBlue15(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := pgtest.StartClusters(t, []int{15, 17})
	blue, green := cs[0], cs[1]
	for _, c := range cs {
		c.Exec(t, "postgres", strings.Replace(cloudRoleGrants, "GRANT pg_create_subscription, ", "GRANT ", 1))
		c.Exec(t, "postgres", "CREATE DATABASE app OWNER app_admin")
		requirePassword(t, c)
	}
	green.Exec(t, "postgres", "GRANT pg_create_subscription TO app_admin")
	blue.Exec(t, "app", `SET ROLE app_admin;
		CREATE ROLE app_reader LOGIN PASSWORD 'reader-Pw-8Hk';
		CREATE TABLE public.orders (id bigserial PRIMARY KEY, note text, qty int);
		GRANT SELECT ON public.orders TO app_reader;
		INSERT INTO public.orders (note, qty) SELECT 'order ' || g, g % 7 FROM generate_series(1, 500) g`)
	dir := t.TempDir()
	specPath := filepath.Join(dir, "cloud15.yaml")
	write := func(reverse bool) {
		spec := fmt.Sprintf(`version: 1
name: cloud15
source:
  dsn: "postgres://app_admin@127.0.0.1:%d/app"
  password_env: BLUE_PASSWORD
target:
  dsn: "postgres://app_admin@127.0.0.1:%d/app"
  password_env: GREEN_PASSWORD
cutover:
  freeze: read-only
  reverse_replication: %t
  switch:
    exec: {switch: ["true"], back: ["true"]}
`, blue.Port, green.Port, reverse)
		if err := os.WriteFile(specPath, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(true)
	env := []string{"BLUE_PASSWORD=cloud-Admin-4Tq", "GREEN_PASSWORD=cloud-Admin-4Tq"}
	r := pgshiftEnv(t, dir, env, "apply", "-f", specPath)
	if r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
		t.Fatalf("apply as a non-superuser up to the cutover:\n%s", r)
	}
	if got := green.Scalar(t, "app", `SELECT has_table_privilege('app_reader', 'public.orders', 'SELECT')`); got != "t" {
		t.Fatalf("green: app_reader may read public.orders: %s, want true (roles and grants copied by a non-superuser)", got)
	}
	r = pgshiftEnv(t, dir, env, "apply", "-f", specPath, "--approve-cutover")
	if r.code == 0 || !strings.Contains(r.stdout, "PostgreSQL 15 lets only superusers create subscriptions") || !strings.Contains(r.stdout, "reverse_replication: false") {
		t.Fatalf("cutover with reverse replication as a non-superuser on blue 15: want a refusal naming why\n%s", r)
	}
	if n := blue.Scalar(t, "postgres", `SELECT count(*) FROM pg_database WHERE datname = 'app' AND 'default_transaction_read_only=on' = ANY(coalesce((SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = pg_database.oid AND setrole = 0), '{}'))`); n != "0" {
		t.Fatal("the refused cutover left blue read-only")
	}
	// A superuser's session on blue's database: the read-only freeze could
	// not end it, so the cutover says so before freezing.
	su := connect(t, blue.DSN("app"))
	write(false)
	r = pgshiftEnv(t, dir, env, "apply", "-f", specPath, "--approve-cutover", "--accept-spec-change")
	if r.code == 0 || !strings.Contains(r.stdout, "may not end pid") || !strings.Contains(r.stdout, "role postgres") {
		t.Fatalf("cutover with a superuser session on blue, as a non-superuser: want a refusal naming the session\n%s", r)
	}
	su.Close(context.Background())
	r = pgshiftEnv(t, dir, env, "apply", "-f", specPath, "--approve-cutover")
	if r.code != 0 || !strings.Contains(r.stdout, "Apply complete") {
		t.Fatalf("cutover without reverse replication as a non-superuser:\n%s", r)
	}
	compareAll(t, blue.DSN("app"), green.DSN("app"))
}
