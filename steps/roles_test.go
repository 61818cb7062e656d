package steps

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

func TestRoleCreateSQLKeepsTheHashOutOfThePlan(t *testing.T) {
	hash := "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
	until := "2030-01-01 00:00:00+00"
	r := role{Name: `odd "name"`, Login: true, Inherit: true, ConnLimit: 7, ValidUntil: &until, password: &hash, Super: true}
	p := &rolesPlan{greenSuper: false, passwords: true}

	shown := r.shown(p)
	if strings.Contains(shown, hash) || strings.Contains(shown, "PASSWORD") {
		t.Fatalf("the shown statement carries the password: %s", shown)
	}
	for _, want := range []string{`CREATE ROLE "odd ""name"""`, "LOGIN", "CONNECTION LIMIT 7", "VALID UNTIL '2030-01-01 00:00:00+00'",
		"password hash copied from blue", "without SUPERUSER"} {
		if !strings.Contains(shown, want) {
			t.Errorf("shown statement lacks %q: %s", want, shown)
		}
	}
	if strings.Contains(shown, " SUPERUSER ") {
		t.Errorf("SUPERUSER given by a role that is not one: %s", shown)
	}

	run := r.createSQL(true, true)
	if !strings.Contains(run, "PASSWORD '"+hash+"'") || !strings.Contains(run, " SUPERUSER") {
		t.Errorf("executed statement: %s", run)
	}

	noPw := role{Name: "app", Login: true, ConnLimit: -1}
	if s := noPw.shown(&rolesPlan{}); !strings.Contains(s, "no password: blue's pg_authid is not readable") || strings.Contains(s, "CONNECTION LIMIT") {
		t.Errorf("role without a readable password: %s", s)
	}
	if s := noPw.shown(&rolesPlan{passwords: true}); !strings.Contains(s, "-- no password on blue") || strings.Contains(s, "pg_authid") {
		t.Errorf("role without a password on blue, whose pg_authid is readable: %s", s)
	}
}

func TestSkippedRoles(t *testing.T) {
	for name, skip := range map[string]bool{
		"pg_read_all_data": true, "rdsadmin": true, "rds_superuser": true, "cloudsqlsuperuser": true,
		"azure_pg_admin": true, "alloydbsuperuser": true, "azuresu": true, "rdstopmgr": true,
		"app": false, "postgres": false, "rdx": false, "rds_reader_app": false, "rdsx": false,
		"cloudsql_app": false, "azure_app": false, "alloydb_reports": false,
	} {
		if skippedRole(name) != skip {
			t.Errorf("skippedRole(%q) = %v", name, !skip)
		}
	}
}

// hashInLog finds a password hash as pg_authid stores it; hashKind says
// which kind it found, never any of the hash.
var hashInLog = regexp.MustCompile(`md5[0-9a-f]{32}|SCRAM-SHA-256\$`)

func hashKind(m string) string {
	if strings.HasPrefix(m, "md5") {
		return "md5"
	}
	return "SCRAM-SHA-256"
}

// TestRolePasswordsStayOutOfGreensLog: with log_statement = all on green,
// neither a CREATE ROLE that fails nor one that succeeds leaves the
// password hash in green's server log; a role on green that may not quiet
// the log is warned about, without the hash.
func TestRolePasswordsStayOutOfGreensLog(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	blue := pgtest.StartCluster(t, 13)
	// passwordcheck refuses a hash of a password equal to the role's name:
	// a CREATE ROLE that fails after the hash was sent.
	green := pgtest.StartCluster(t, 17, pgtest.ClusterOptions{Settings: map[string]string{
		"log_statement": "all", "shared_preload_libraries": "passwordcheck,pg_stat_statements",
		"pg_stat_statements.track_utility": "on"}})
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	green.Exec(t, "app", "CREATE EXTENSION pg_stat_statements")
	blue.Exec(t, "app", `CREATE ROLE leaky LOGIN PASSWORD 'leaky'; CREATE ROLE fine LOGIN PASSWORD 'fine-Secret1'`)
	greenLog := func() string {
		b, err := os.ReadFile(filepath.Join(green.DataDir, "server.log"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	noHash := func(what, log string) {
		t.Helper()
		if m := hashInLog.FindString(log); m != "" {
			t.Errorf("%s: green's log holds a password hash (%s)", what, hashKind(m))
		}
	}
	p := &prepPair{blue: blue, green: green, log: &pgtest.LogBuffer{}}
	p.spec = &spec.Spec{
		Name:   "roles-pg17",
		Source: spec.Endpoint{DSN: blue.DSN("app")},
		Target: spec.Endpoint{DSN: green.DSN("app")},
		Schema: spec.SchemaSpec{Roles: true},
	}
	p.spec.SetDefaults()
	rolesStep := stepOf(t, p.spec, stepid.Roles)

	t.Run("a CREATE ROLE that fails", func(t *testing.T) {
		err := p.apply(t, p.env(t), rolesStep)
		if err == nil || !strings.Contains(err.Error(), "create role leaky on green") {
			t.Fatalf("apply with passwordcheck refusing leaky's password: %v, want the error naming leaky", err)
		}
		log := greenLog()
		if !strings.Contains(log, "password must not equal user name") || !strings.Contains(log, "statement: begin") {
			t.Fatalf("green's log shows neither the failure nor log_statement at work:\n%s", log)
		}
		noHash("a failed CREATE ROLE", log)
		noHash("pgshift's log", p.log.String())
	})

	t.Run("CREATE ROLEs that succeed", func(t *testing.T) {
		blue.Exec(t, "app", `ALTER ROLE leaky PASSWORD 'leaky-Other2'`)
		if err := p.apply(t, p.env(t), rolesStep); err != nil {
			t.Fatal(err)
		}
		pw := `SELECT string_agg(rolpassword, ' ' ORDER BY rolname) FROM pg_authid WHERE rolname IN ('leaky', 'fine')`
		if b, g := blue.Scalar(t, "app", pw), green.Scalar(t, "app", pw); b != g || !strings.Contains(g, " ") {
			t.Fatalf("the hashes of leaky and fine on green are not blue's")
		}
		log := greenLog()
		if strings.Count(log, "statement: begin") != 2 {
			t.Fatalf("green's log does not show the second apply's transaction:\n%s", log)
		}
		noHash("CREATE ROLEs that succeeded", log)
		noHash("pgshift's log", p.log.String())
		// pg_stat_statements keeps utility statements' text too.
		if m := hashInLog.FindString(green.Scalar(t, "app", "SELECT coalesce(string_agg(query, E'\\n'), '') FROM pg_stat_statements")); m != "" {
			t.Errorf("green's pg_stat_statements holds a password hash (%s)", hashKind(m))
		}
		if n := green.Scalar(t, "app", "SELECT count(*) FROM pg_stat_statements WHERE query ILIKE 'begin%'"); n == "0" {
			t.Errorf("pg_stat_statements tracks no utility statement: the check above proves nothing")
		}
	})

	t.Run("a role on green that may not quiet the log is warned about", func(t *testing.T) {
		green.Exec(t, "postgres", `CREATE ROLE creator LOGIN CREATEROLE`)
		blue.Exec(t, "app", `CREATE ROLE later LOGIN PASSWORD 'later-Secret3'`)
		np := &prepPair{blue: blue, green: green, log: &pgtest.LogBuffer{}, spec: &spec.Spec{
			Name:   "roles-pg17",
			Source: spec.Endpoint{DSN: blue.DSN("app")},
			Target: spec.Endpoint{DSN: strings.Replace(green.DSN("app"), "postgres@", "creator@", 1)},
			Schema: spec.SchemaSpec{Roles: true},
		}}
		np.spec.SetDefaults()
		if err := np.apply(t, np.env(t), rolesStep); err != nil {
			t.Fatal(err)
		}
		out := np.log.String()
		for _, want := range []string{"may not set log_statement, log_min_error_statement", "password hash of role later", "log_statement is all or ddl", "Connect to green as a superuser"} {
			if !strings.Contains(out, want) {
				t.Errorf("pgshift's warning lacks %q:\n%s", want, out)
			}
		}
		if m := hashInLog.FindString(out); m != "" {
			t.Errorf("pgshift's log holds a password hash (%s)", hashKind(m))
		}
		// What the warning says: log_statement = all records it.
		if !hashInLog.MatchString(greenLog()) {
			t.Errorf("the warning says green's log may hold the hash, and with log_statement = all it does not")
		}
	})
}

// A quieting setting green's major does not have (log_min_duration_sample
// before 13; here a made-up name) is skipped, not an error, and the others
// still apply to the transaction.
func TestKeepStatementsOutOfLogSkipsMissingSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	green := pgtest.StartCluster(t, 13)
	ctx := prepCtx(t)
	tx, err := green.Conn(t, "postgres").Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	notSet, err := keepStatementsOutOfLog(ctx, tx, []quietSetting{{"log_setting_no_major_has", "-1"}, {"log_statement", "none"}})
	if err != nil || len(notSet) != 0 {
		t.Fatalf("keepStatementsOutOfLog with a missing setting = %v, %v; want it skipped", notSet, err)
	}
	var v string
	if err := tx.QueryRow(ctx, "SHOW log_statement").Scan(&v); err != nil || v != "none" {
		t.Fatalf("log_statement in the transaction = %q, %v; want none", v, err)
	}
}
