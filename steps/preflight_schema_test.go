package steps

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// blueExtras are what pagila lacks and the checks are about: a table
// without a key, an unlogged table, extensions (hstore differs in version
// between 13 and 17), roles with a password and a membership, and a table
// owned by one of them; and names that break SQL pasted together: a role
// o'brien, a schema we"ird, a table and columns with capitals and spaces.
const blueExtras = `
CREATE TABLE public.no_pk (id int, note text);
CREATE UNLOGGED TABLE public.scratch (id int PRIMARY KEY);
CREATE EXTENSION citext;
CREATE EXTENSION hstore;
CREATE ROLE app_reader NOLOGIN;
CREATE ROLE app_user LOGIN PASSWORD 'blue-secret-Pw1' CONNECTION LIMIT 7;
GRANT app_reader TO app_user;
GRANT SELECT ON public.actor TO app_reader;
CREATE TABLE public.owned_by_app (id int PRIMARY KEY, tags public.hstore);
ALTER TABLE public.owned_by_app OWNER TO app_user;
CREATE ROLE "o'brien" LOGIN PASSWORD 'o''brien-Pw2' VALID UNTIL '2031-02-01 00:00:00+00';
GRANT app_reader TO "o'brien";
CREATE SCHEMA "we""ird";
CREATE TABLE "we""ird"."Order Items" ("Item Id" int PRIMARY KEY, "Qty" int, note text);
ALTER TABLE "we""ird"."Order Items" OWNER TO "o'brien";
CREATE ROLE auditors NOLOGIN;
CREATE ROLE audit_bot NOLOGIN;
GRANT auditors TO audit_bot;
`

type prepPair struct {
	blue, green *pgtest.Cluster
	spec        *spec.Spec
	log         *pgtest.LogBuffer
}

// env is a fresh environment (fresh pools: a subtest may restart blue).
func (p *prepPair) env(t *testing.T) *engine.Env {
	t.Helper()
	env := engine.NewEnv(p.spec, hclog.New(&hclog.LoggerOptions{Output: p.log, Level: hclog.Debug}))
	t.Cleanup(env.Close)
	return env
}

func prepCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (p *prepPair) observe(t *testing.T, s engine.Step) plans.Change {
	t.Helper()
	c, err := s.Observe(prepCtx(t), p.env(t).ForStep(s.ID()))
	if err != nil {
		t.Fatalf("observe %s: %v", s.ID(), err)
	}
	return c
}

func (p *prepPair) apply(t *testing.T, env *engine.Env, s engine.Step) error {
	t.Helper()
	return s.Apply(prepCtx(t), env.ForStep(s.ID()))
}

func stepOf(t *testing.T, spec *spec.Spec, id string) engine.Step {
	t.Helper()
	for _, s := range For(spec) {
		if s.ID() == id {
			return s
		}
	}
	t.Fatalf("no step %s registered", id)
	return nil
}

func hasLine(lines []string, parts ...string) bool {
	for _, l := range lines {
		all := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func TestPreflightAuditRolesSchema13To17(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	pgtest.RequireClientBin(t, "pg_dump")
	cs := pgtest.StartClusters(t, []int{13, 17})
	p := &prepPair{blue: cs[0], green: cs[1], log: &pgtest.LogBuffer{}}
	p.blue.CreateDatabase(t, "app")
	p.green.CreateDatabase(t, "app")
	p.blue.LoadSQLFile(t, "app", pgtest.PagilaFile(t, "pagila-schema.sql"))
	p.blue.Exec(t, "app", blueExtras)
	// Both roles exist on green already, without the membership: granting
	// it leaves no mark on green, so rollback must remember it.
	p.green.Exec(t, "postgres", "CREATE ROLE auditors NOLOGIN; CREATE ROLE audit_bot NOLOGIN")
	p.spec = &spec.Spec{
		Name:   "pagila-pg17",
		Source: spec.Endpoint{DSN: p.blue.DSN("app")},
		Target: spec.Endpoint{DSN: p.green.DSN("app")},
		Schema: spec.SchemaSpec{Copy: true, Roles: true},
	}
	p.spec.SetDefaults()
	source := stepOf(t, p.spec, stepid.PreflightSource)
	target := stepOf(t, p.spec, stepid.PreflightTarget)
	auditStep := stepOf(t, p.spec, stepid.Audit)
	rolesStep := stepOf(t, p.spec, stepid.Roles)
	schema := stepOf(t, p.spec, stepid.Schema)
	var rolesOut map[string]string // target.roles' outputs, as the state file keeps them

	t.Run("a table without a key blocks until it has a replica identity", func(t *testing.T) {
		c := p.observe(t, source)
		if c.Action != plans.ActionBlocker || !hasLine(c.Blockers, "public.no_pk", "REPLICA IDENTITY FULL") {
			t.Fatalf("want a blocker naming public.no_pk and the fix, got %s %q %q", c.Action, c.Summary, c.Blockers)
		}
		if hasLine(c.Blockers, "public.actor") {
			t.Errorf("a table with a primary key is named as a blocker: %q", c.Blockers)
		}
		if err := p.apply(t, p.env(t), source); err == nil || !strings.Contains(err.Error(), "public.no_pk") {
			t.Fatalf("apply with a blocker: want an error naming public.no_pk, got %v", err)
		}
		p.blue.Exec(t, "app", `ALTER TABLE public.no_pk REPLICA IDENTITY FULL`)

		// A partition keeps its own replica identity: FULL on the root does
		// not reach it.
		p.blue.Exec(t, "app", `CREATE TABLE public.parted (id int, v text) PARTITION BY RANGE (id);
			CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
			ALTER TABLE public.parted REPLICA IDENTITY FULL`)
		c = p.observe(t, source)
		if !hasLine(c.Blockers, "public.parted_1") || hasLine(c.Blockers, "public.no_pk") {
			t.Fatalf("want a blocker naming the partition public.parted_1 only, got %q", c.Blockers)
		}
		p.blue.Exec(t, "app", `ALTER TABLE public.parted_1 REPLICA IDENTITY FULL`)
		c = p.observe(t, source)
		if len(c.Blockers) > 0 {
			t.Fatalf("blockers left after REPLICA IDENTITY FULL: %q", c.Blockers)
		}
		if !strings.Contains(c.Summary, "wal_level=logical") || !strings.Contains(c.Summary, "tables with replica identity") {
			t.Errorf("summary %q lacks wal_level and the replica identity count", c.Summary)
		}
		pre, err := source.Check(prepCtx(t), p.env(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range pre {
			if !c.OK {
				t.Errorf("precondition %s failed: %s", c.Name, c.Detail)
			}
		}
		if err := p.apply(t, p.env(t), source); err != nil {
			t.Fatalf("apply without blockers: %v", err)
		}
	})

	t.Run("roles without the privileges are told what to grant", func(t *testing.T) {
		p.blue.Exec(t, "postgres", `CREATE ROLE repl_only LOGIN REPLICATION`)
		p.green.Exec(t, "postgres", `CREATE ROLE plain LOGIN`)
		weak := *p.spec
		weak.Source.DSN = strings.Replace(p.spec.Source.DSN, "//postgres@", "//repl_only@", 1)
		weak.Target.DSN = strings.Replace(p.spec.Target.DSN, "//postgres@", "//plain@", 1)
		env := engine.NewEnv(&weak, nil)
		defer env.Close()
		c, err := source.Observe(prepCtx(t), env)
		if err != nil {
			t.Fatal(err)
		}
		if !hasLine(c.Blockers, "does not own", "public.actor", "owner or a superuser") ||
			!hasLine(c.Blockers, "may not read", "GRANT SELECT ON") ||
			!hasLine(c.Blockers, "may not read", `GRANT USAGE ON SCHEMA "we""ird" TO`) {
			t.Errorf("a replication role owning and reading nothing: %q", c.Blockers)
		}
		if hasLine(c.Blockers, "may not replicate") {
			t.Errorf("REPLICATION is reported missing: %q", c.Blockers)
		}
		c, err = target.Observe(prepCtx(t), env)
		if err != nil {
			t.Fatal(err)
		}
		if !hasLine(c.Blockers, "role plain on green may not create subscriptions", "GRANT pg_create_subscription TO plain") {
			t.Errorf("a plain role on green: %q", c.Blockers)
		}
		if !hasLine(c.Warnings, "neither SUPERUSER nor CREATEROLE") {
			t.Errorf("a plain role on green cannot copy roles: %q", c.Warnings)
		}
		c, err = rolesStep.Observe(prepCtx(t), env)
		if err != nil {
			t.Fatal(err)
		}
		if c.Action != plans.ActionBlocker || !hasLine(c.Blockers, "neither SUPERUSER nor CREATEROLE") ||
			!hasLine(c.Details, `CREATE ROLE "app_user"`, "no password: blue's pg_authid is not readable") ||
			!hasLine(c.Warnings, "app_user", "without a password") {
			t.Errorf("roles read by a role that may not see passwords, for a role that may not create them: %s %q %q %q",
				c.Action, c.Details, c.Warnings, c.Blockers)
		}
		p.green.Exec(t, "postgres", `GRANT pg_create_subscription TO plain; GRANT CREATE ON DATABASE app TO plain`)
		c, err = target.Observe(prepCtx(t), env)
		if err != nil {
			t.Fatal(err)
		}
		if hasLine(c.Blockers, "may not create subscriptions") {
			t.Errorf("pg_create_subscription and CREATE are enough on 17: %q", c.Blockers)
		}
	})

	t.Run("wal_level replica gives the blocker and the exact fix", func(t *testing.T) {
		p.blue.Exec(t, "postgres", `ALTER SYSTEM SET wal_level = replica`)
		p.blue.Restart(t)
		defer func() {
			p.blue.Exec(t, "postgres", `ALTER SYSTEM RESET wal_level`)
			p.blue.Restart(t)
		}()
		c := p.observe(t, source)
		if c.Action != plans.ActionBlocker || !hasLine(c.Blockers, "wal_level=replica", "ALTER SYSTEM SET wal_level = logical;", "restart blue") {
			t.Fatalf("want the wal_level blocker with its fix, got %s %q", c.Action, c.Blockers)
		}
		if err := p.apply(t, p.env(t), source); err == nil {
			t.Fatal("apply succeeded with wal_level=replica")
		}
	})

	t.Run("green must be newer than blue", func(t *testing.T) {
		c := p.observe(t, target)
		if len(c.Blockers) > 0 {
			t.Fatalf("blockers on an empty green 17: %q", c.Blockers)
		}
		if !strings.Contains(c.Summary, "PostgreSQL 17") || !strings.Contains(c.Summary, "green holds none of blue's tables") {
			t.Errorf("summary %q", c.Summary)
		}
		// Reverse replication needs green to publish: found now, not at the cutover.
		p.green.Exec(t, "postgres", `ALTER SYSTEM SET wal_level = replica`)
		p.green.Restart(t)
		reverse := *p.spec
		reverse.Cutover.ReverseReplication = true
		renv := engine.NewEnv(&reverse, nil)
		c, err := target.Observe(prepCtx(t), renv)
		renv.Close()
		p.green.Exec(t, "postgres", `ALTER SYSTEM RESET wal_level`)
		p.green.Restart(t)
		if err != nil {
			t.Fatal(err)
		}
		if !hasLine(c.Blockers, "green has wal_level=replica", "cutover.reverse_replication", "ALTER SYSTEM SET wal_level = logical;") {
			t.Errorf("reverse replication from a green without wal_level=logical: %q", c.Blockers)
		}

		swapped := *p.spec
		swapped.Source, swapped.Target = p.spec.Target, p.spec.Source
		env := engine.NewEnv(&swapped, nil)
		defer env.Close()
		c, err = target.Observe(prepCtx(t), env)
		if err != nil {
			t.Fatal(err)
		}
		if !hasLine(c.Blockers, "green runs PostgreSQL 13", "and blue 17") {
			t.Errorf("want a version blocker for green 13 under blue 17, got %q", c.Blockers)
		}
	})

	t.Run("audit reports what replication does not carry", func(t *testing.T) {
		c := p.observe(t, auditStep)
		if c.Action != plans.ActionWarning {
			t.Errorf("action %s, want warning (blockers %q)", c.Action, c.Blockers)
		}
		for _, want := range [][]string{
			{"public.rental_by_category", "refreshes"},
			{"unlogged", "public.scratch"},
			{"hstore", "1.7", "1.8"},
			{"DDL"},
		} {
			if !hasLine(c.Warnings, want...) {
				t.Errorf("no warning with %q in %q", want, c.Warnings)
			}
		}
		if !hasLine(c.Details, "extension citext", "available on green") {
			t.Errorf("details lack citext: %q", c.Details)
		}
		if !strings.Contains(c.Summary, "13 sequences synced at cutover") {
			t.Errorf("summary %q lacks the 13 sequences of pagila", c.Summary)
		}
		// adminpack left PostgreSQL in 17.
		p.blue.Exec(t, "app", `CREATE EXTENSION adminpack`)
		c = p.observe(t, auditStep)
		if c.Action != plans.ActionBlocker || !hasLine(c.Blockers, "extension adminpack no longer exists in PostgreSQL 17", "DROP EXTENSION adminpack;") {
			t.Errorf("an extension green lacks: want a blocker, got %s %q", c.Action, c.Blockers)
		}
		p.blue.Exec(t, "app", `DROP EXTENSION adminpack`)

		excluding := *p.spec
		excluding.Tables.Exclude = []string{"public.no_pk"}
		env := engine.NewEnv(&excluding, nil)
		defer env.Close()
		c, err := auditStep.Observe(prepCtx(t), env)
		if err != nil {
			t.Fatal(err)
		}
		if !hasLine(c.Warnings, "1 table excluded", "public.no_pk") {
			t.Errorf("an excluded table: %q", c.Warnings)
		}

		p.blue.Exec(t, "app", `SELECT lo_from_bytea(0, 'x')`)
		c = p.observe(t, auditStep)
		if c.Action != plans.ActionBlocker || !hasLine(c.Blockers, "1 large object") {
			t.Errorf("a large object: want a blocker, got %s %q", c.Action, c.Blockers)
		}
		p.blue.Exec(t, "app", `SELECT lo_unlink(oid) FROM pg_largeobject_metadata`)
		env = p.env(t)
		if err := p.apply(t, env, auditStep); err != nil {
			t.Fatalf("apply audit: %v", err)
		}
		if mv, _ := env.Output(stepid.Audit, AuditMaterializedViews); mv != "public.rental_by_category" {
			t.Errorf("recorded materialized views %q", mv)
		}
	})

	t.Run("schema.copy false needs the schema on green", func(t *testing.T) {
		noCopy := *p.spec
		noCopy.Schema.Copy = false
		env := engine.NewEnv(&noCopy, nil)
		defer env.Close()
		c, err := schema.Observe(prepCtx(t), env)
		if err != nil {
			t.Fatal(err)
		}
		if c.Action != plans.ActionBlocker || !hasLine(c.Blockers, "schema.copy is false but green lacks", "public.actor") {
			t.Errorf("%s %q", c.Action, c.Blockers)
		}
		if err := schema.Apply(prepCtx(t), env.ForStep(stepid.Schema)); err == nil {
			t.Error("apply with schema.copy false and no schema on green succeeded")
		}
	})

	t.Run("a failed restore leaves green untouched", func(t *testing.T) {
		// Roles are not copied yet: the owner app_user is missing on green.
		err := p.apply(t, p.env(t), schema)
		if err == nil || !strings.Contains(err.Error(), `role "app_user" does not exist`) || !strings.Contains(err.Error(), "schema.roles") {
			t.Fatalf("want the missing role and its fix, got %v", err)
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace`); n != "0" {
			t.Errorf("green holds %s relations after a failed restore", n)
		}
	})

	t.Run("roles are copied with their password, never shown", func(t *testing.T) {
		c := p.observe(t, rolesStep)
		if c.Action != plans.ActionCreate || !hasLine(c.Details, `CREATE ROLE "app_user"`, "CONNECTION LIMIT 7", "password hash copied") ||
			!hasLine(c.Details, `GRANT "app_reader" TO "app_user"`) {
			t.Fatalf("plan: %s %q %q", c.Action, c.Summary, c.Details)
		}
		hash := p.blue.Scalar(t, "app", `SELECT rolpassword FROM pg_authid WHERE rolname = 'app_user'`)
		if strings.Contains(strings.Join(c.Details, "\n"), hash) {
			t.Fatal("the plan shows the password hash")
		}
		// Blue's sessions print dates day first: VALID UNTIL must still
		// reach green as the same instant.
		p.blue.Exec(t, "app", `ALTER DATABASE app SET DateStyle = 'SQL, DMY'`)
		env := p.env(t)
		err := p.apply(t, env, rolesStep)
		p.blue.Exec(t, "app", `ALTER DATABASE app RESET DateStyle`)
		if err != nil {
			t.Fatal(err)
		}
		until := `SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = 'o''brien'`
		if b, g := p.blue.Scalar(t, "app", until), p.green.Scalar(t, "app", until); g != b {
			t.Errorf("o'brien's VALID UNTIL: green %s, blue %s (epoch)", g, b)
		}
		if got := p.green.Scalar(t, "app", `SELECT rolpassword FROM pg_authid WHERE rolname = 'app_user'`); got != hash {
			t.Errorf("green's password hash differs from blue's")
		}
		if got := p.green.Scalar(t, "app", `SELECT pg_has_role('app_user', 'app_reader', 'MEMBER')`); got != "t" {
			t.Errorf("app_user is not a member of app_reader on green")
		}
		odd := `SELECT rolpassword FROM pg_authid WHERE rolname = 'o''brien'`
		if b, g := p.blue.Scalar(t, "app", odd), p.green.Scalar(t, "app", odd); g != b || g == "" {
			t.Errorf("role o'brien on green: password hash %q, blue's %q", g, b)
		}
		if got := p.green.Scalar(t, "app", `SELECT pg_has_role('o''brien', 'app_reader', 'MEMBER')`); got != "t" {
			t.Errorf("o'brien is not a member of app_reader on green")
		}
		if got := p.green.Scalar(t, "app", `SELECT pg_has_role('audit_bot', 'auditors', 'MEMBER')`); got != "t" {
			t.Errorf("audit_bot is not a member of auditors on green")
		}
		if got, _ := env.Output(stepid.Roles, RolesGranted); got != `[["auditors","audit_bot"]]` {
			t.Errorf("recorded grants between existing roles: %q", got)
		}
		rolesOut = env.Outputs(stepid.Roles)
		if strings.Contains(p.log.String(), hash) || strings.Contains(p.log.String(), "blue-secret") {
			t.Error("the log shows the password")
		}
		if c := p.observe(t, rolesStep); c.Action != plans.ActionNone {
			t.Errorf("after apply: %s %q", c.Action, c.Details)
		}
		if err := p.apply(t, env, rolesStep); err != nil {
			t.Errorf("second apply: %v", err)
		}
	})

	t.Run("schema restores once, and rollback drops only what it restored", func(t *testing.T) {
		// One of blue's tables already on green: the restore would fail on it.
		p.green.Exec(t, "app", `CREATE TABLE public.scratch (id int)`)
		if c := p.observe(t, schema); c.Action != plans.ActionBlocker || !hasLine(c.Blockers, "public.scratch", "lacks public.actor") {
			t.Errorf("green holding one of blue's tables: %s %q", c.Action, c.Blockers)
		}
		if c := p.observe(t, target); !hasLine(c.Blockers, "public.scratch", "would fail") {
			t.Errorf("preflight.target with one of blue's tables on green: %q", c.Blockers)
		}
		if err := p.apply(t, p.env(t), schema); err == nil || !strings.Contains(err.Error(), "public.scratch") {
			t.Errorf("apply with one of blue's tables on green: %v", err)
		}
		p.green.Exec(t, "app", `DROP TABLE public.scratch`)

		// A schema and a table of green's own must survive the rollback.
		p.green.Exec(t, "app", `CREATE SCHEMA keep; CREATE TABLE keep.mine (id int PRIMARY KEY); CREATE TABLE public.green_own (id int);
			COMMENT ON DATABASE app IS 'green''s own note'`)
		c := p.observe(t, schema)
		if c.Action != plans.ActionCreate || !strings.Contains(c.Summary, "restore 28 tables, 13 sequences") ||
			!strings.Contains(c.Summary, "2 extensions") {
			t.Fatalf("plan: %s %q %q", c.Action, c.Summary, c.Blockers)
		}
		// Killed in the middle of the restore, as a killed apply would be:
		// an open transaction of the test holds the name public.actor, so
		// psql waits there with extensions and types already created.
		ctx := prepCtx(t)
		holder, err := pgx.Connect(ctx, p.green.DSN("app"))
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Close(context.Background())
		if _, err := holder.Exec(ctx, `BEGIN; CREATE TABLE public.actor (x int)`); err != nil {
			t.Fatal(err)
		}
		applyCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- schema.Apply(applyCtx, p.env(t).ForStep(stepid.Schema)) }()
		for {
			// Asked from another session: inside the holder's transaction
			// pg_stat_activity would stay the same snapshot.
			if p.green.Scalar(t, "app", `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			                                             WHERE application_name = 'psql' AND wait_event_type = 'Lock')`) == "t" {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("apply ended before the restore reached public.actor: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
		}
		cancel()
		if err := <-done; err == nil {
			t.Fatal("apply killed during the restore reported success")
		}
		if _, err := holder.Exec(ctx, `ROLLBACK`); err != nil {
			t.Fatal(err)
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`); n != "1" {
			t.Fatalf("after a killed restore green holds %s tables in public, want only green_own", n)
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_extension WHERE extname = 'citext'`); n != "0" {
			t.Fatal("after a killed restore green holds the extension it created")
		}
		if c := p.observe(t, schema); c.Action != plans.ActionCreate {
			t.Fatalf("after a killed restore: %s %q %q", c.Action, c.Summary, c.Blockers)
		}

		env := p.env(t)
		if err := p.apply(t, env, schema); err != nil {
			t.Fatal(err)
		}
		blueTables := p.blue.Scalar(t, "app", `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`)
		greenTables := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'green_own'`)
		if greenTables != blueTables {
			t.Errorf("green holds %s tables in public, blue %s", greenTables, blueTables)
		}
		for _, q := range []string{
			`SELECT count(*) FROM pg_matviews WHERE matviewname = 'rental_by_category'`,
			`SELECT count(*) FROM pg_trigger WHERE tgname = 'last_updated' AND tgrelid = 'public.actor'::regclass`,
			`SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.payment'::regclass`,
			`SELECT count(*) FROM pg_sequences WHERE schemaname = 'public'`,
		} {
			if b, g := p.blue.Scalar(t, "app", q), p.green.Scalar(t, "app", q); b != g || g == "0" {
				t.Errorf("%s: blue %s, green %s", q, b, g)
			}
		}
		if got := p.green.Scalar(t, "app", `SELECT relowner::regrole FROM pg_class WHERE oid = 'public.owned_by_app'::regclass`); got != "app_user" {
			t.Errorf("owner of public.owned_by_app on green: %s", got)
		}
		if got := p.green.Scalar(t, "app", `SELECT relowner::regrole FROM pg_class WHERE oid = '"we""ird"."Order Items"'::regclass`); got != `"o'brien"` {
			t.Errorf(`owner of "we""ird"."Order Items" on green: %s`, got)
		}

		if c := p.observe(t, schema); c.Action != plans.ActionNone {
			t.Errorf("after apply: %s %q", c.Action, c.Summary)
		}
		marker := p.green.Scalar(t, "app", `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'app'`)
		if err := p.apply(t, env, schema); err != nil {
			t.Fatalf("second apply: %v", err)
		}
		if again := p.green.Scalar(t, "app", `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'app'`); again != marker {
			t.Error("the second apply restored again")
		}

		// The snapshot method restores pre-data first and post-data after
		// the copy: the sections split where indexes and keys begin.
		dir := t.TempDir()
		pre, err := DumpSchema(prepCtx(t), env, dir, SectionPreData)
		if err != nil {
			t.Fatal(err)
		}
		post, err := DumpSchema(prepCtx(t), env, dir, SectionPostData)
		if err != nil {
			t.Fatal(err)
		}
		preSQL, _ := os.ReadFile(pre)
		postSQL, _ := os.ReadFile(post)
		if !bytes.Contains(preSQL, []byte("CREATE TABLE public.actor")) || bytes.Contains(preSQL, []byte("CREATE INDEX")) ||
			bytes.Contains(preSQL, []byte("actor_pkey PRIMARY KEY")) {
			t.Error("pre-data holds the wrong section")
		}
		if !bytes.Contains(postSQL, []byte("CREATE INDEX")) || !bytes.Contains(postSQL, []byte("actor_pkey PRIMARY KEY")) ||
			bytes.Contains(postSQL, []byte("CREATE TABLE")) {
			t.Error("post-data holds the wrong section")
		}

		// Preflight of green: the schema is ours and fine; rows are not.
		if c := p.observe(t, target); len(c.Blockers) > 0 || !strings.Contains(c.Summary, "green holds all") {
			t.Errorf("preflight.target after restore: %q %q", c.Summary, c.Blockers)
		}
		p.green.Exec(t, "app", `INSERT INTO public.language (name) VALUES ('Klingon')`)
		if c := p.observe(t, target); !hasLine(c.Blockers, "public.language", "rows", "TRUNCATE") {
			t.Errorf("rows on green: want a blocker naming public.language, got %q", c.Blockers)
		}
		p.green.Exec(t, "app", `DELETE FROM public.language`)

		// A view and a foreign key green made on restored tables would go
		// with them (CASCADE): the rollback refuses, naming them.
		p.green.Exec(t, "app", `CREATE VIEW keep.actor_names AS SELECT first_name FROM public.actor;
			CREATE TABLE keep."Refs" (actor_id int REFERENCES public.actor)`)
		err = schema.Rollback(prepCtx(t), env.ForStep(stepid.Schema))
		if err == nil || !strings.Contains(err.Error(), "view keep.actor_names") || !strings.Contains(err.Error(), `on keep."Refs"`) {
			t.Errorf("rollback with green's own objects on restored tables: %v, want a refusal naming both", err)
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`); n == "1" {
			t.Fatal("the refused rollback dropped the restored tables")
		}
		p.green.Exec(t, "app", `DROP VIEW keep.actor_names; DROP TABLE keep."Refs"`)

		for i := 0; i < 2; i++ { // rollback is idempotent
			if err := schema.Rollback(prepCtx(t), env.ForStep(stepid.Schema)); err != nil {
				t.Fatalf("rollback %d: %v", i+1, err)
			}
		}
		left := p.green.Scalar(t, "app", `
SELECT string_agg(n.nspname || '.' || c.relname, ',' ORDER BY 1) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('public', 'keep') AND c.relkind IN ('r', 'p', 'v', 'm', 'S')`)
		if left != "keep.mine,public.green_own" {
			t.Errorf("after rollback green holds %q, want only its own keep.mine,public.green_own", left)
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_namespace WHERE nspname = 'we"ird'`); n != "0" {
			t.Errorf(`schema "we""ird" left after rollback`)
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_type WHERE typname = 'mpaa_rating'`); n != "0" {
			t.Errorf("type mpaa_rating left after rollback")
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_extension WHERE extname IN ('citext', 'hstore')`); n != "0" {
			t.Errorf("%s extensions left after rollback", n)
		}
		if got := p.green.Scalar(t, "app", `SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = 'app'`); got != "green's own note" {
			t.Errorf("database comment after rollback: %q", got)
		}

		env.LoadOutputs(stepid.Roles, rolesOut)
		for i := 0; i < 2; i++ {
			if err := rolesStep.Rollback(prepCtx(t), env.ForStep(stepid.Roles)); err != nil {
				t.Fatalf("roles rollback %d: %v", i+1, err)
			}
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_roles WHERE rolname IN ('app_user', 'app_reader', 'o''brien')`); n != "0" {
			t.Errorf("%s copied roles left after rollback", n)
		}
		if n := p.green.Scalar(t, "app", `SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'`); n != "1" {
			t.Error("rollback dropped green's own superuser")
		}
		if got := p.green.Scalar(t, "app", `SELECT count(*) || ' ' || pg_has_role('audit_bot', 'auditors', 'MEMBER') FROM pg_roles WHERE rolname IN ('auditors', 'audit_bot')`); got != "2 false" {
			t.Errorf("green's own roles auditors and audit_bot after rollback: %s, want both kept and the membership revoked", got)
		}
	})
}
