package steps

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

func TestSplitGUCListAndSetValue(t *testing.T) {
	for in, want := range map[string][]string{
		`"$user", public`:       {"$user", "public"},
		`app,public`:            {"app", "public"},
		` "Odd, ""Name""" , x `: {`Odd, "Name"`, "x"},
		``:                      nil,
	} {
		if got := splitGUCList(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitGUCList(%q) = %q, want %q", in, got, want)
		}
	}
	if got := setValueSQL("search_path", `"$user", public`); got != `'$user', 'public'` {
		t.Errorf("search_path: %s", got)
	}
	if got := setValueSQL("statement_timeout", "30s"); got != `'30s'` {
		t.Errorf("statement_timeout: %s", got)
	}
	if got := setValueSQL("application_name", `it's`); got != `'it''s'` {
		t.Errorf("quote: %s", got)
	}
}

func TestCanonicalAndShownValues(t *testing.T) {
	for _, c := range []struct{ value, unit, vartype, want string }{
		{"64MB", "kB", "integer", "6.7108864e+07"},
		{"65536", "kB", "integer", "6.7108864e+07"},
		{"8192", "8kB", "integer", "6.7108864e+07"},
		{"30s", "ms", "integer", "3e+07"},
		{"30000", "ms", "integer", "3e+07"},
		{"yes", "", "bool", "on"},
		{"OFF", "", "bool", "off"},
		{"Regress", "", "enum", "regress"},
		{"1.1", "", "real", "1.1"},
	} {
		if got := canonical(c.value, c.unit, c.vartype); got != c.want {
			t.Errorf("canonical(%q, %q) = %s, want %s", c.value, c.unit, got, c.want)
		}
	}
	for _, c := range []struct{ setting, unit, want string }{
		{"65536", "kB", "64MB"}, {"8192", "8kB", "64MB"}, {"30000", "ms", "30s"}, {"1500", "ms", "1500ms"},
		{"0", "ms", "0"}, {"-1", "kB", "-1"}, {"on", "", "on"}, {"2048", "MB", "2GB"},
	} {
		if got := shownValue(c.setting, c.unit); got != c.want {
			t.Errorf("shownValue(%s, %s) = %s, want %s", c.setting, c.unit, got, c.want)
		}
	}
}

func TestMapParamAcrossMajors(t *testing.T) {
	m, err := mapParam("wal_keep_segments", "64", 12, 17, 16<<20)
	if err != nil || m.name != "wal_keep_size" || m.value != "1024MB" || m.renamed != "wal_keep_segments" {
		t.Errorf("wal_keep_segments 12 -> 17: %+v, %v", m, err)
	}
	if m, _ := mapParam("force_parallel_mode", "on", 13, 17, 0); m.name != "debug_parallel_query" || m.value != "on" {
		t.Errorf("force_parallel_mode 13 -> 17: %+v", m)
	}
	if m, _ := mapParam("force_parallel_mode", "on", 13, 15, 0); m.name != "force_parallel_mode" || m.renamed != "" {
		t.Errorf("force_parallel_mode 13 -> 15 is not renamed yet: %+v", m)
	}
	if m, _ := mapParam("vacuum_defer_cleanup_age", "1000", 13, 17, 0); m.removedIn != 16 {
		t.Errorf("vacuum_defer_cleanup_age 13 -> 17: %+v", m)
	}
	if m, _ := mapParam("vacuum_defer_cleanup_age", "1000", 13, 15, 0); m.removedIn != 0 {
		t.Errorf("vacuum_defer_cleanup_age 13 -> 15 still exists: %+v", m)
	}
	if m, _ := mapParam("old_snapshot_threshold", "10min", 16, 17, 0); m.removedIn != 17 {
		t.Errorf("old_snapshot_threshold 16 -> 17: %+v", m)
	}
	if h := renameHint("wal_keep_segments", 17); !strings.Contains(h, "renamed to wal_keep_size in PostgreSQL 13") {
		t.Errorf("hint: %s", h)
	}
	if h := renameHint("work_mem", 17); h != "" {
		t.Errorf("hint for a kept parameter: %s", h)
	}
	for _, name := range []string{"primary_conninfo", "archive_command", "app.api_token", "myext.secret", "vault.key"} {
		if !secretParam(name) {
			t.Errorf("%s is not taken for a secret", name)
		}
	}
	if secretParam("work_mem") || secretParam("search_path") {
		t.Error("an ordinary parameter taken for a secret")
	}
}

// Blue 13 with server, database and role settings, green 17: the plan
// names each difference (set, renamed, removed, differing, secret), apply
// sets them and reports the parameter that needs a restart, a second apply
// changes nothing, and rollback gives green back what it had.
func TestSettings13To17(t *testing.T) {
	requireIntegration(t)
	const secret = "s3cr3t-token-value"
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	for _, q := range []string{
		"ALTER SYSTEM SET work_mem = '64MB'",
		"ALTER SYSTEM SET maintenance_work_mem = '256MB'",
		"ALTER SYSTEM SET vacuum_defer_cleanup_age = 1000",
		"SELECT pg_reload_conf()",
	} {
		blue.Exec(t, "postgres", q)
	}
	blue.Exec(t, "app", `
CREATE ROLE app_owner LOGIN;
CREATE ROLE app_user LOGIN;
ALTER DATABASE app OWNER TO app_owner;
ALTER DATABASE app SET search_path = app, public;
ALTER DATABASE app SET statement_timeout = '30s';
ALTER DATABASE app SET force_parallel_mode = on;
ALTER DATABASE app SET app.tenant = 'blue';
ALTER ROLE app_user SET work_mem = '8MB';
ALTER ROLE app_user SET operator_precedence_warning = on;
ALTER ROLE app_user SET app.api_token = '`+secret+`';
ALTER ROLE app_user IN DATABASE app SET lock_timeout = '5s';
CREATE ROLE app_reader NOLOGIN;
ALTER ROLE app_reader SET work_mem = '16MB';
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
`)
	// Green already has values of its own where the step sets others:
	// rollback gives them back.
	green.Exec(t, "postgres", "ALTER SYSTEM SET work_mem = '1MB'")
	green.Exec(t, "postgres", "SELECT pg_reload_conf()")
	green.Exec(t, "app", `
CREATE ROLE app_owner LOGIN;
CREATE ROLE app_user LOGIN;
ALTER ROLE app_user SET work_mem = '2MB';
CREATE EXTENSION citext VERSION '1.5';
`)

	sp := &spec.Spec{
		Name:   "settings",
		Source: spec.Endpoint{DSN: blue.DSN("app")},
		Target: spec.Endpoint{DSN: green.DSN("app"), Settings: spec.Settings{"work_mem": "64MB", "max_connections": "150"}},
	}
	sp.SetDefaults()
	logs := &pgtest.LogBuffer{}
	env := engine.NewEnv(sp, hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}))
	t.Cleanup(env.Close)
	env = env.ForStep(stepid.Settings)
	ctx := testCtx(t)
	step := settingsStep{spec: sp}

	c, err := step.Observe(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan: %s %s\n%s\nwarnings:\n%s", c.Action, c.Summary, strings.Join(c.Details, "\n"), strings.Join(c.Warnings, "\n"))
	if c.Action != plans.ActionChange {
		t.Errorf("action %s (%s), want change; blockers %q", c.Action, c.Summary, c.Blockers)
	}
	has := func(lines []string, want ...string) bool {
		for _, l := range lines {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(l, w)
			}
			if ok {
				return true
			}
		}
		return false
	}
	for _, want := range [][]string{
		{`ALTER SYSTEM SET "work_mem" TO '64MB' -- green: 1MB`},
		{`ALTER SYSTEM SET "max_connections" TO '150' -- green: 100; needs a restart of green`},
		{`SELECT pg_catalog.pg_reload_conf()`},
		{`ALTER DATABASE "app" SET "search_path" TO 'app', 'public'`},
		{`ALTER DATABASE "app" SET "statement_timeout" TO '30s'`},
		{`ALTER DATABASE "app" SET "debug_parallel_query" TO 'on' -- blue's force_parallel_mode, renamed in PostgreSQL 16`},
		{`ALTER DATABASE "app" SET "app.tenant" TO 'blue'`},
		{`ALTER ROLE "app_user" SET "work_mem" TO '8MB' -- green: 2MB`},
		{`ALTER ROLE "app_user" IN DATABASE "app" SET "lock_timeout" TO '5s'`},
		{`ALTER DATABASE "app" OWNER TO "app_owner" -- green: postgres`},
		{`-- server: maintenance_work_mem: blue 256MB (configuration file), green 64MB (default)`},
		{`-- extension hstore: blue 1.7, the schema restore creates 1.8 on green (the default version green offers)`},
		{`-- extension citext: blue 1.6, green has 1.5 and offers 1.6`},
	} {
		if !has(c.Details, want...) {
			t.Errorf("the plan lacks %q", want)
		}
	}
	for _, want := range [][]string{
		{"vacuum_defer_cleanup_age = 1000", "removed in PostgreSQL 16", "drop it"},
		{"role app_user", "operator_precedence_warning", "removed in PostgreSQL 14", "not copied"},
		{"role app_user", "app.api_token", "secret", "set it on green yourself"},
		{"target.settings.max_connections = 150", "restart green"},
		{"1 server setting of blue differs from green's: maintenance_work_mem"},
		{"extension citext on green is 1.5 and green offers 1.6", "ALTER EXTENSION citext UPDATE"},
		{"role app_reader has settings on blue (work_mem) and green has no such role", "not copied"},
	} {
		if !has(c.Warnings, want...) {
			t.Errorf("the plan warns of no %q", want)
		}
	}
	if has(c.Details, "-- server: work_mem:") {
		t.Error("work_mem is in target.settings and still named as a difference")
	}
	// With schema.roles, target.roles creates app_reader before this step
	// applies: its settings are planned, not refused.
	sp.Schema.Roles = true
	withRoles, err := step.Observe(ctx, env)
	sp.Schema.Roles = false
	if err != nil {
		t.Fatal(err)
	}
	if !has(withRoles.Details, `ALTER ROLE "app_reader" SET "work_mem" TO '16MB'`) || has(withRoles.Warnings, "app_reader") {
		t.Errorf("with schema.roles the plan does not set app_reader's settings:\n%s\n%s", strings.Join(withRoles.Details, "\n"), strings.Join(withRoles.Warnings, "\n"))
	}

	greenState := func() string {
		settle := time.Now().Add(10 * time.Second)
		for {
			s := green.Scalar(t, "app", `
SELECT concat_ws(' | ',
  (SELECT string_agg(coalesce(r.rolname, '*') || '@' || s.setdatabase::int::bool::text || ':' || array_to_string(s.setconfig, ';'), ' ' ORDER BY 1)
     FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole),
  'owner=' || (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'),
  'auto=' || (SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_file_settings WHERE sourcefile LIKE '%auto.conf'),
  'work_mem=' || current_setting('work_mem'))`)
			// work_mem follows the file once the reload reached new sessions.
			if strings.Contains(s, "auto=max_connections=150,work_mem=64MB") == strings.Contains(s, "work_mem=64MB") || time.Now().After(settle) {
				return s
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	before := greenState()

	if err := step.Apply(ctx, env); err != nil {
		t.Fatalf("apply: %v", err)
	}
	applied := greenState()
	t.Logf("green after apply: %s", applied)
	for _, want := range []string{
		"*@true:app.tenant=blue;debug_parallel_query=on;search_path=app, public;statement_timeout=30s",
		"app_user@false:work_mem=8MB", "app_user@true:lock_timeout=5s",
		"owner=app_owner", "auto=max_connections=150,work_mem=64MB", "work_mem=64MB",
	} {
		if !strings.Contains(applied, want) {
			t.Errorf("green after apply lacks %q: %s", want, applied)
		}
	}
	if got := green.Scalar(t, "app", "SHOW search_path"); got != "app, public" {
		t.Errorf("a new session on green's database has search_path %q, want app, public", got)
	}
	if got, _ := env.Output(stepid.Settings, SettingsRestart); got != "max_connections" {
		t.Errorf("output %s = %q, want max_connections", SettingsRestart, got)
	}
	if got := green.Scalar(t, "app", "SELECT string_agg(name, ',') FROM pg_settings WHERE pending_restart"); got != "max_connections" {
		t.Errorf("green's pending restarts: %q, want max_connections", got)
	}
	if !strings.Contains(logs.String(), "restart green") {
		t.Errorf("apply did not log the restart it needs:\n%s", logs)
	}
	report, err := step.Report(ctx, env)
	if err != nil || len(report) != 1 || !strings.Contains(report[0], "max_connections") {
		t.Errorf("status: %q, %v", report, err)
	}

	// Applied: the plan has nothing to run, and still names the restart.
	c, err = step.Observe(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Action != plans.ActionWarning || has(c.Details, "ALTER ") || !has(c.Warnings, "max_connections", "restart green") {
		t.Errorf("after apply: %s %s\n%s\n%s", c.Action, c.Summary, strings.Join(c.Details, "\n"), strings.Join(c.Warnings, "\n"))
	}
	if err := step.Apply(ctx, env); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if again := greenState(); again != applied {
		t.Errorf("the second apply changed green:\n before %s\n after  %s", applied, again)
	}

	undo, _ := env.Output(stepid.Settings, SettingsUndo)
	var entries []settingsUndo
	if err := json.Unmarshal([]byte(undo), &entries); err != nil || len(entries) != 9 {
		t.Errorf("recorded %d changes (%v), want 9: %s", len(entries), err, undo)
	}
	for _, out := range []string{undo, logs.String(), strings.Join(c.Details, "\n"), strings.Join(c.Warnings, "\n")} {
		if strings.Contains(out, secret) {
			t.Fatalf("the secret setting's value leaked: %s", out)
		}
	}

	for i := 0; i < 2; i++ {
		if err := step.Rollback(ctx, env); err != nil {
			t.Fatalf("rollback %d: %v", i+1, err)
		}
		if after := greenState(); after != before {
			t.Errorf("rollback %d did not give green back its settings:\n before apply %s\n after        %s", i+1, before, after)
		}
	}
}

// target.settings naming a parameter green lacks, a renamed or removed
// one, or one that may hold a secret, blocks with the fix.
func TestSettingsSpecBlockers(t *testing.T) {
	requireIntegration(t)
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	sp := &spec.Spec{
		Name:   "settings",
		Source: spec.Endpoint{DSN: blue.DSN("postgres")},
		Target: spec.Endpoint{DSN: green.DSN("postgres"), Settings: spec.Settings{
			"wal_keep_segments": "64", "vacuum_defer_cleanup_age": "0", "primary_conninfo": "host=x password=p",
			"work_mme": "4MB", "server_version": "1", "pg_stat_statements.max": "100", "work_mem": "8MB",
		}},
	}
	sp.SetDefaults()
	env := engine.NewEnv(sp, nil).ForStep(stepid.Settings)
	t.Cleanup(env.Close)
	ctx := testCtx(t)
	step := settingsStep{spec: sp}
	c, err := step.Observe(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Action != plans.ActionBlocker || len(c.Blockers) != 6 {
		t.Errorf("action %s with %d blockers, want blocker with 6:\n%s", c.Action, len(c.Blockers), strings.Join(c.Blockers, "\n"))
	}
	joined := strings.Join(c.Blockers, "\n")
	for _, want := range []string{
		"target.settings.wal_keep_segments: green (PostgreSQL 17) has no parameter wal_keep_segments: renamed to wal_keep_size in PostgreSQL 13",
		"write wal_keep_size instead",
		"target.settings.vacuum_defer_cleanup_age: green (PostgreSQL 17) has no parameter vacuum_defer_cleanup_age: removed in PostgreSQL 16",
		"target.settings.primary_conninfo: parameter primary_conninfo may hold a secret",
		"target.settings.work_mme: green (PostgreSQL 17) has no parameter work_mme: check its spelling",
		"target.settings.server_version: server_version is fixed",
		"target.settings.pg_stat_statements.max: green (PostgreSQL 17) has no parameter pg_stat_statements.max: it belongs to an extension",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("blockers lack %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "password=p") {
		t.Errorf("a blocker shows the secret value: %s", joined)
	}
	if err := step.Apply(ctx, env); err == nil || !strings.Contains(err.Error(), "work_mme") {
		t.Errorf("apply: %v, want the blockers", err)
	}
	if got := green.Scalar(t, "postgres", "SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%auto.conf'"); got != "0" {
		t.Errorf("a refused apply wrote %s parameters with ALTER SYSTEM", got)
	}
}
