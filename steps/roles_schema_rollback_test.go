package steps

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// managedExtras: roles without a password, ordinary roles whose names start
// like a managed service's (rds_reader_app owns a table, rdsx is granted
// one), and RDS's and Cloud SQL's own roles as a managed blue has them.
const managedExtras = `
CREATE ROLE nopw_login LOGIN;
CREATE ROLE nopw_group NOLOGIN;
CREATE ROLE with_pw LOGIN PASSWORD 'with-pw-Secret1';
CREATE ROLE rds_reader_app LOGIN PASSWORD 'reader-Secret2';
CREATE ROLE rdsx NOLOGIN;
CREATE ROLE rdsadmin NOLOGIN;
CREATE ROLE cloudsqlsuperuser NOLOGIN;
GRANT rdsx TO rds_reader_app;
GRANT rds_reader_app TO nopw_login;
ALTER TABLE public.language OWNER TO rds_reader_app;
GRANT SELECT ON public.actor TO rdsx;
`

// objectExtras: what a schema dump creates beside tables, types and
// functions, in the schema public that green has before the restore (so
// that no DROP SCHEMA takes them along): collations, an operator and its
// class and family, text search objects, a cast, an event trigger, a
// foreign data wrapper and server.
const objectExtras = `
CREATE COLLATION public.bytes_libc (provider = libc, locale = 'C');
CREATE TABLE public.labels (id int PRIMARY KEY, name text COLLATE public.bytes_libc);
CREATE FUNCTION public.int_eq3(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 = $2';
CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.int_eq3);
CREATE OPERATOR CLASS public.int_hash3 FOR TYPE int USING hash AS OPERATOR 1 =, FUNCTION 1 hashint4(int);
CREATE TEXT SEARCH DICTIONARY public.simple_app (TEMPLATE = pg_catalog.simple);
CREATE TEXT SEARCH CONFIGURATION public.app_search (COPY = pg_catalog.english);
ALTER TEXT SEARCH CONFIGURATION public.app_search ALTER MAPPING FOR asciiword WITH public.simple_app;
CREATE TYPE public.mood AS ENUM ('sad', 'ok');
CREATE TYPE public.shade AS ENUM ('dark', 'light');
CREATE CAST (public.mood AS public.shade) WITH INOUT;
CREATE FUNCTION public.note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'ddl'; END$$;
CREATE EVENT TRIGGER app_note_ddl ON ddl_command_end EXECUTE FUNCTION public.note_ddl();
CREATE FOREIGN DATA WRAPPER app_fdw;
CREATE SERVER app_srv FOREIGN DATA WRAPPER app_fdw;
`

// objectCensusSQL counts green's objects in every catalog a schema dump
// writes to, outside extensions: after a rollback it must be what it was
// before the restore.
const objectCensusSQL = `
SELECT string_agg(c || '=' || n, ' ' ORDER BY c) FROM (
  SELECT x.classid::regclass::text AS c, count(*) AS n
    FROM (` + trackedObjectsSQL + `) x
   WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = x.classid AND d.objid = x.objid AND d.deptype = 'e')
   GROUP BY 1) s`

func TestRolesManagedNamesAndSchemaRollback13To17(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	pgtest.RequireClientBin(t, "pg_dump")
	cs := pgtest.StartClusters(t, []int{13, 17})
	p := &prepPair{blue: cs[0], green: cs[1], log: &pgtest.LogBuffer{}}
	p.blue.CreateDatabase(t, "app")
	p.green.CreateDatabase(t, "app")
	p.blue.LoadSQLFile(t, "app", pgtest.PagilaFile(t, "pagila-schema.sql"))
	p.blue.Exec(t, "app", managedExtras+objectExtras)
	icu := p.blue.Scalar(t, "app", `SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i')`) == "t" &&
		p.green.Scalar(t, "app", `SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i')`) == "t"
	if icu {
		p.blue.Exec(t, "app", `CREATE COLLATION public.nocase_icu (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
			ALTER TABLE public.labels ADD COLUMN tag text COLLATE public.nocase_icu`)
	} else {
		t.Log("the servers are built without ICU: only the libc collation is tested")
	}
	// Green is a managed service's too: it has Cloud SQL's role, not RDS's.
	p.green.Exec(t, "postgres", `CREATE ROLE cloudsqlsuperuser NOLOGIN`)
	p.spec = &spec.Spec{
		Name:   "managed-pg17",
		Source: spec.Endpoint{DSN: p.blue.DSN("app")},
		Target: spec.Endpoint{DSN: p.green.DSN("app")},
		Schema: spec.SchemaSpec{Copy: true, Roles: true},
	}
	p.spec.SetDefaults()
	rolesStep := stepOf(t, p.spec, stepid.Roles)
	schema := stepOf(t, p.spec, stepid.Schema)

	t.Run("roles without a password are no unreadable pg_authid", func(t *testing.T) {
		c := p.observe(t, rolesStep)
		if c.Action != plans.ActionCreate {
			t.Fatalf("plan: %s %q %q", c.Action, c.Summary, c.Blockers)
		}
		all := strings.Join(append(append(append([]string{}, c.Details...), c.Warnings...), c.Blockers...), "\n")
		if strings.Contains(all, "pg_authid") {
			t.Errorf("a superuser reading blue is told pg_authid is unreadable:\n%s", all)
		}
		if len(c.Warnings) > 0 {
			t.Errorf("warnings for roles that simply have no password: %q", c.Warnings)
		}
		for _, name := range []string{"nopw_login", "nopw_group"} {
			if !hasLine(c.Details, `CREATE ROLE "`+name+`"`, "-- no password on blue") {
				t.Errorf("no line creating %s with \"no password on blue\": %q", name, c.Details)
			}
		}
		if !hasLine(c.Details, "note:", "nopw_login", "no password on blue") || hasLine(c.Details, "note:", "nopw_group") {
			t.Errorf("want a note naming the login role nopw_login only: %q", c.Details)
		}
		if !hasLine(c.Details, `CREATE ROLE "with_pw"`, "password hash copied from blue") {
			t.Errorf("with_pw: %q", c.Details)
		}
	})

	t.Run("only the managed services' own roles are skipped, each named", func(t *testing.T) {
		c := p.observe(t, rolesStep)
		for _, name := range []string{"rds_reader_app", "rdsx"} {
			if !hasLine(c.Details, `CREATE ROLE "`+name+`"`) {
				t.Errorf("ordinary role %s is not created: %q", name, c.Details)
			}
		}
		if !hasLine(c.Details, `GRANT "rdsx" TO "rds_reader_app"`) {
			t.Errorf("membership rdsx -> rds_reader_app: %q", c.Details)
		}
		if hasLine(c.Details, `CREATE ROLE "rdsadmin"`) || hasLine(c.Details, `CREATE ROLE "cloudsqlsuperuser"`) {
			t.Errorf("a managed service's role is created: %q", c.Details)
		}
		if !hasLine(c.Details, "not copied", "rdsadmin", "Amazon RDS", "green has no such role") ||
			!hasLine(c.Details, "not copied", "cloudsqlsuperuser", "Google Cloud SQL", "green has its own") ||
			!hasLine(c.Details, "not copied", "predefined roles", "pg_monitor") {
			t.Errorf("skipped roles are not named with why: %q", c.Details)
		}
	})

	t.Run("a skipped role blue's schema names blocks, with the fix", func(t *testing.T) {
		p.blue.Exec(t, "app", `GRANT SELECT ON public.actor TO rdsadmin`)
		c := p.observe(t, rolesStep)
		if c.Action != plans.ActionBlocker || !hasLine(c.Blockers, "role rdsadmin", "has privileges on table public.actor",
			"green has no such role", `REVOKE ... FROM "rdsadmin"`, `CREATE ROLE "rdsadmin" NOLOGIN`) {
			t.Errorf("want a blocker naming rdsadmin, public.actor and the fix, got %s %q", c.Action, c.Blockers)
		}
		if hasLine(c.Blockers, "cloudsqlsuperuser") {
			t.Errorf("a skipped role green has blocks: %q", c.Blockers)
		}
		if err := p.apply(t, p.env(t), rolesStep); err == nil || !strings.Contains(err.Error(), "rdsadmin") {
			t.Errorf("apply with the blocker: want an error naming rdsadmin, got %v", err)
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_roles WHERE rolname = 'rdsx'`); n != "0" {
			t.Errorf("apply refused but created roles")
		}
		p.blue.Exec(t, "app", `REVOKE SELECT ON public.actor FROM rdsadmin`)
		if c := p.observe(t, rolesStep); len(c.Blockers) > 0 {
			t.Errorf("blockers after the REVOKE: %q", c.Blockers)
		}
	})

	t.Run("apply creates ordinary roles and leaves passwords as on blue", func(t *testing.T) {
		if err := p.apply(t, p.env(t), rolesStep); err != nil {
			t.Fatal(err)
		}
		for q, want := range map[string]string{
			`SELECT count(*) FROM pg_roles WHERE rolname IN ('rds_reader_app', 'rdsx', 'nopw_login', 'nopw_group', 'with_pw')`: "5",
			`SELECT count(*) FROM pg_roles WHERE rolname = 'rdsadmin'`:                                                         "0",
			`SELECT count(*) FROM pg_authid WHERE rolname IN ('nopw_login', 'nopw_group') AND rolpassword IS NULL`:             "2",
			`SELECT pg_has_role('rds_reader_app', 'rdsx', 'MEMBER')`:                                                           "t",
		} {
			if got := p.green.Scalar(t, "app", q); got != want {
				t.Errorf("%s: %s, want %s", q, got, want)
			}
		}
		pw := `SELECT rolpassword FROM pg_authid WHERE rolname = 'with_pw'`
		if b, g := p.blue.Scalar(t, "app", pw), p.green.Scalar(t, "app", pw); b != g || g == "" {
			t.Errorf("with_pw's hash on green differs from blue's")
		}
	})

	t.Run("schema rollback drops every object the restore made, and the restore runs again", func(t *testing.T) {
		// Green's own collation in public must survive.
		p.green.Exec(t, "app", `CREATE COLLATION public.green_own (provider = libc, locale = 'C')`)
		before := p.green.Scalar(t, "app", objectCensusSQL)
		env := p.env(t)
		if err := p.apply(t, env, schema); err != nil {
			t.Fatalf("restore with roles named like RDS's: %v", err)
		}
		if got := p.green.Scalar(t, "app", `SELECT has_table_privilege('rdsx', 'public.actor', 'SELECT')::text || ' ' || relowner::regrole::text
			FROM pg_class WHERE oid = 'public.language'::regclass`); got != "true rds_reader_app" {
			t.Errorf("rdsx's privilege and rds_reader_app's table on green: %s", got)
		}
		restored := `SELECT (SELECT count(*) FROM pg_collation WHERE collname IN ('bytes_libc', 'nocase_icu'))
			+ (SELECT count(*) FROM pg_operator WHERE oprname = '===')
			+ (SELECT count(*) FROM pg_opclass WHERE opcname = 'int_hash3')
			+ (SELECT count(*) FROM pg_ts_config WHERE cfgname = 'app_search')
			+ (SELECT count(*) FROM pg_ts_dict WHERE dictname = 'simple_app')
			+ (SELECT count(*) FROM pg_cast WHERE castsource = 'public.mood'::regtype)
			+ (SELECT count(*) FROM pg_event_trigger WHERE evtname = 'app_note_ddl')
			+ (SELECT count(*) FROM pg_foreign_server WHERE srvname = 'app_srv')`
		want := "8"
		if icu {
			want = "9"
		}
		if got := p.green.Scalar(t, "app", restored); got != want {
			t.Fatalf("green holds %s of blue's %s extra objects after the restore", got, want)
		}
		for round := 1; round <= 2; round++ {
			if err := schema.Rollback(prepCtx(t), env.ForStep(stepid.Schema)); err != nil {
				t.Fatalf("rollback %d: %v", round, err)
			}
			if after := p.green.Scalar(t, "app", objectCensusSQL); after != before {
				t.Errorf("rollback %d left green's objects at\n  %s\nwant as before the restore\n  %s", round, after, before)
			}
			if got := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_collation WHERE collname = 'green_own'`); got != "1" {
				t.Errorf("rollback %d dropped green's own collation", round)
			}
			if err := p.apply(t, env, schema); err != nil {
				t.Fatalf("restore after rollback %d: %v", round, err)
			}
		}
		if err := schema.Rollback(prepCtx(t), env.ForStep(stepid.Schema)); err != nil {
			t.Fatal(err)
		}
		if err := rolesStep.Rollback(prepCtx(t), env.ForStep(stepid.Roles)); err != nil {
			t.Errorf("roles rollback after the schema's: %v", err)
		}
	})
}
