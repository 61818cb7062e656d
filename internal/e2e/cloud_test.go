package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
func requirePassword(t *testing.T, c *pgtest.Cluster, roles ...string) {
	t.Helper()
	hba := filepath.Join(c.DataDir, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	line := ""
	for _, r := range append([]string{"app_admin"}, roles...) {
		line += "host all " + r + " 127.0.0.1/32 scram-sha-256\n"
	}
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

// TestPasswordFileKeepsSecretsOffTheCatalog: with the password in a
// password file on the servers' host (passfile= in the DSN, no
// password_env), pgshift and both subscriptions log in with it and no
// password lands in pg_subscription on either side, in the state or in any
// output. PostgreSQL allows this to subscriptions owned by a superuser
// only (for others CREATE SUBSCRIPTION demands password= in the string),
// which the precondition says for a non-superuser with a passfile.
func TestPasswordFileKeepsSecretsOffTheCatalog(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := pgtest.StartClusters(t, []int{16, 17})
	blue, green := cs[0], cs[1]
	const secret = "Repl-Secret-6Wd"
	for _, c := range cs {
		c.Exec(t, "postgres", cloudRoleGrants)
		c.Exec(t, "postgres", "CREATE ROLE repl_admin LOGIN SUPERUSER PASSWORD '"+secret+"'")
		c.Exec(t, "postgres", "ALTER ROLE app_admin PASSWORD '"+secret+"'")
		c.Exec(t, "postgres", "CREATE DATABASE app OWNER app_admin")
		requirePassword(t, c, "repl_admin")
		c.Exec(t, "app", `SET ROLE app_admin; CREATE TABLE public.orders (id bigserial PRIMARY KEY, note text)`)
	}
	blue.Exec(t, "app", `INSERT INTO public.orders (note) SELECT 'order ' || g FROM generate_series(1, 300) g`)
	// One file for both servers' hosts (one machine here), readable by the
	// servers' user, which reads it when the subscriptions connect.
	shared := sharedDir(t)
	passfile := filepath.Join(shared, "pgpass")
	lines := fmt.Sprintf("127.0.0.1:*:*:repl_admin:%s\n127.0.0.1:*:*:app_admin:%s\n", secret, secret)
	if err := os.WriteFile(passfile, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(blue.DataDir)
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Chown(passfile, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(role string) string {
		p := filepath.Join(dir, "passfile.yaml")
		spec := fmt.Sprintf(`version: 1
name: passfile
source:
  dsn: "postgres://%s@127.0.0.1:%d/app?passfile=%s"
target:
  dsn: "postgres://%s@127.0.0.1:%d/app?passfile=%s"
schema:
  copy: false
cutover:
  freeze: read-only
  reverse_replication: true
  switch:
    exec: {switch: ["true"], back: ["true"]}
`, role, blue.Port, passfile, role, green.Port, passfile)
		if err := os.WriteFile(p, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A non-superuser cannot own a subscription without password= in it.
	r := pgshift(t, dir, "apply", "-f", write("app_admin"))
	if r.code == 0 || !strings.Contains(r.stdout, "a passfile does not count") {
		t.Fatalf("apply as a non-superuser with only a passfile: want the precondition naming why\n%s", r)
	}
	if out, _, code := runRollback(t, dir, write("app_admin")); code != 0 {
		t.Fatalf("rollback:\n%s", out)
	}
	r = pgshift(t, dir, "apply", "-f", write("repl_admin"), "--approve-cutover")
	if r.code != 0 || !strings.Contains(r.stdout, "Apply complete") {
		t.Fatalf("apply with a password file:\n%s", r)
	}
	for _, c := range cs {
		ci := c.Scalar(t, "app", `SELECT string_agg(subconninfo, ' | ') FROM pg_subscription`)
		if strings.Contains(ci, secret) || strings.Contains(ci, "password=") || !strings.Contains(ci, "passfile=") {
			t.Errorf("PostgreSQL %d stores the subscription's connection as %q: want passfile= and no password", c.Major, strings.ReplaceAll(ci, secret, "<secret>"))
		}
	}
	state, _ := os.ReadFile(filepath.Join(dir, "passfile.pgshift-state.json"))
	if strings.Contains(r.stdout+r.stderr+string(state), secret) {
		t.Error("the password shows in apply's output or the state file")
	}
	compareAll(t, blue.DSN("app"), green.DSN("app"))
}

// runRollback rolls the whole spec back without asking.
func runRollback(t *testing.T, dir, spec string) (string, string, int) {
	t.Helper()
	r := pgshift(t, dir, "rollback", "-f", spec, "--yes", "--accept-spec-change")
	return r.stdout, r.stderr, r.code
}
